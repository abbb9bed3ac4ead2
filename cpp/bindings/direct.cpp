// Direct calls: a server route called in-process. Python pulls results with wait() in short
// slices (GIL released while waiting), so Ctrl-C, timeouts and asyncio cancellation work,
// and no Python code ever runs on the native worker.
#include "bindings.h"

#include "direct/direct_call.h"

#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
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
    nb::class_<llamaproc::CallBatch>(m, "CallBatch", "What one wait() of a direct call brings.")
        .def_ro("payloads", &llamaproc::CallBatch::payloads, "JSON texts queued since the last wait.")
        .def_ro("done", &llamaproc::CallBatch::done, "Nothing will follow.")
        .def_ro("status", &llamaproc::CallBatch::status, "The response's HTTP status (0 until known).")
        .def_ro("stream", &llamaproc::CallBatch::stream, "The response streams.")
        .def_prop_ro(
            "end", [](const llamaproc::CallBatch & b) { return std::string(end_name(b.end)); },
            "\"running\", \"complete\", \"cancelled\" or \"interrupted\".");
    nb::class_<llamaproc::DirectCall>(m, "DirectCall", "One in-process call of a server route.")
        .def(
            "wait",
            [](llamaproc::DirectCall & call, double timeout) {
                nb::gil_scoped_release release;
                return call.wait(timeout);
            },
            nb::arg("timeout"),
            "The JSON texts queued since the last wait (waiting up to `timeout` s for one) and the call's state, "
            "as a CallBatch.")
        .def("cancel", &llamaproc::DirectCall::cancel, nb::call_guard<nb::gil_scoped_release>(),
             "End the call as soon as possible (returns at once; the slot frees after the decode step in progress).");
}
