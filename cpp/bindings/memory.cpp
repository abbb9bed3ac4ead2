// What a configuration will hold before it loads, and the store of what loads really held.
#include "bindings.h"

#include "argv_parser.h"
#include "memory_estimate.h"
#include "native_log.h"
#include "server/instance_params.h"

#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <memory>

void init_memory(nb::module_ & m) {
    m.def(
        "expected_memory",
        [](const std::vector<std::string> & args, bool use_env) {
            llamaproc::ExpectedMemory expected;
            {
                nb::gil_scoped_release release;
                // a failed GGML_ASSERT in the dry run raises instead of ending the process
                llamaproc::ThreadLogScope scope(std::make_shared<llamaproc::LogTail>());
                common_params params = llamaproc::parse_server_args(args, use_env);
                llamaproc::prepare_instance_params(params, args, use_env);
                expected = llamaproc::expected_memory(params);
            }
            nb::dict d;
            d["model"] = expected.estimate.model_bytes;
            d["context"] = expected.estimate.context_bytes;
            d["compute"] = expected.estimate.compute_bytes;
            d["measured"] = expected.measured ? nb::cast(*expected.measured) : nb::none();
            return d;
        },
        nb::arg("args"), nb::arg("use_env") = false,
        nb::sig("def expected_memory(args: collections.abc.Sequence[str], use_env: bool = False) -> "
                "dict[str, int | None]"),
        "llama.cpp's dry-run estimate of the server these llama-server flags describe "
        "(model, context, compute bytes) and what an earlier load of it measured (or None).");
    m.def(
        "set_memory_measurements_file",
        [](const std::string & path) { llamaproc::MeasuredMemory::process().set_file(path); },
        nb::call_guard<nb::gil_scoped_release>(), nb::arg("path"),
        "Where the measurements of loads persist across processes (\"\": this process only).");
    m.def(
        "memory_measurements_file", [] { return llamaproc::MeasuredMemory::process().file(); },
        "The file set by set_memory_measurements_file (\"\" if none).");
    m.def(
        "forget_memory_measurements", [] { llamaproc::MeasuredMemory::process().clear(); },
        nb::call_guard<nb::gil_scoped_release>(),
        "Forgets this process's measurements (the file, if any, is read again on the next look-up).");
}
