// Direct calls: a server route called in-process. Python pulls results with wait() in short
// slices (GIL released while waiting), so Ctrl-C, timeouts and asyncio cancellation work,
// and no Python code ever runs on the native worker.
#include "bindings.h"

#include "direct/direct_call.h"

#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

namespace {

const char * end_name(llamaproc::CallEnd end) {
    switch (end) {
        case llamaproc::CallEnd::complete: return "complete";
        case llamaproc::CallEnd::cancelled: return "cancelled";
        case llamaproc::CallEnd::interrupted: return "interrupted";
        default: return "running";
    }
}

}  // namespace

void init_direct(nb::module_ & m) {
    nb::class_<llamaproc::DirectCall>(m, "DirectCall", "One in-process call of a server route.")
        .def(
            "wait",
            [](llamaproc::DirectCall & call, double timeout) {
                llamaproc::CallBatch batch;
                {
                    nb::gil_scoped_release release;
                    batch = call.wait(timeout);
                }
                return std::make_tuple(std::move(batch.payloads), batch.done, batch.status, batch.stream,
                                       std::string(end_name(batch.end)));
            },
            nb::arg("timeout"),
            "(payloads, done, status, stream, end): the JSON texts queued since the last wait (waiting up to "
            "`timeout` s for one), whether the call is over, its HTTP status, whether it streams, and how it ended.")
        .def("cancel", &llamaproc::DirectCall::cancel, nb::call_guard<nb::gil_scoped_release>(),
             "End the call as soon as possible (returns at once; the slot frees after the decode step in progress).");
}
