// Native log lines -> Python. Native threads never take the GIL to log: lines at or above the
// level Python asked for are queued natively (native_log.h), and a Python thread takes them
// with take_log_records() (GIL released while it waits) and hands them to the `llamaproc`
// logger. A slow or blocked log handler in the host therefore never stalls inference.
#include "bindings.h"

#include "native_log.h"

#include "log.h"

#include <nanobind/stl/string.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/vector.h>

void init_logging(nb::module_ & m) {
    // from import on, llama.cpp logs through us and a failed GGML_ASSERT on a guarded thread throws
    llamaproc::install_native_log_hooks();
    m.def("set_log_level", [](int level) { llamaproc::set_log_min_level(static_cast<llamaproc::LogLevel>(level)); },
          nb::arg("min_level"), "Queue native lines at `min_level` (a logging level number) or above.");
    m.def("wait_for_log_records", &llamaproc::wait_for_log_records, nb::call_guard<nb::gil_scoped_release>(),
          nb::arg("timeout"), "Wait up to `timeout` s for queued native log lines; True if there are some.");
    m.def(
        "take_log_records",
        [] {
            std::vector<std::pair<int, std::string>> out;
            for (auto & r : llamaproc::take_log_records()) {
                out.emplace_back(static_cast<int>(r.level), std::move(r.line));
            }
            return out;
        },
        "The queued native log lines as (level, line) pairs (never waits).");
    m.def("wake_log_consumers", &llamaproc::wake_log_consumers, nb::call_guard<nb::gil_scoped_release>(),
          "Wake every take_log_records() waiter.");
    m.def("dropped_log_records", &llamaproc::dropped_log_records,
          "Native log lines dropped because nobody took them in time (the queue holds 20000).");
    m.def(
        "set_native_verbosity", [](bool debug) { common_log_set_verbosity_thold(debug ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO); },
        nb::arg("debug"),
        "Whether llama.cpp formats its debug lines at all (process-wide; follows the llamaproc logger).");
    m.def("process_log_tail", &llamaproc::process_log_tail, nb::arg("max_lines") = 40,
          "The last native log lines of the whole process, whatever their level.");
}
