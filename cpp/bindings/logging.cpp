// Native log lines -> a Python callable (the `llamaproc` logger). Lines come from native
// threads: take the GIL only here, only while the interpreter is alive, and only for lines at
// or above the level Python asked for, so the inference loop rarely waits on the GIL.
#include "bindings.h"

#include "native_log.h"

#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <atomic>
#include <cstdio>

namespace {

std::atomic<bool> g_python_alive{true};

bool interpreter_usable() {
#if PY_VERSION_HEX >= 0x030D0000
    return g_python_alive.load() && Py_IsInitialized() && !Py_IsFinalizing();
#else
    return g_python_alive.load() && Py_IsInitialized() && !_Py_IsFinalizing();
#endif
}

// The callable outlives any C++ copy of the sink; it is released under the GIL, or leaked if
// the interpreter is already gone.
struct PythonCallable {
    PyObject * fn;
    explicit PythonCallable(nb::callable f) : fn(f.release().ptr()) {}
    ~PythonCallable() {
        if (interpreter_usable()) {
            nb::gil_scoped_acquire gil;
            Py_DECREF(fn);
        }
    }
};

void set_sink(nb::object fn, int min_level) {
    if (fn.is_none()) {
        nb::gil_scoped_release release;  // the old sink's holder takes the GIL itself
        llamaproc::set_log_sink(nullptr, static_cast<llamaproc::LogLevel>(min_level));
        return;
    }
    auto holder = std::make_shared<PythonCallable>(nb::borrow<nb::callable>(fn));
    llamaproc::LogSink sink = [holder](llamaproc::LogLevel level, const std::string & line) {
        if (!interpreter_usable()) {
            std::fprintf(stderr, "llamaproc: %s\n", line.c_str());
            return;
        }
        nb::gil_scoped_acquire gil;
        try {
            nb::handle(holder->fn)(static_cast<int>(level), line);
        } catch (nb::python_error & e) {
            e.discard_as_unraisable("llamaproc log sink");
        }
    };
    nb::gil_scoped_release release;
    llamaproc::set_log_sink(std::move(sink), static_cast<llamaproc::LogLevel>(min_level));
}

}  // namespace

void init_logging(nb::module_ & m) {
    // from import on, llama.cpp logs through us and a failed GGML_ASSERT on a guarded thread throws
    llamaproc::install_native_log_hooks();
    m.def("set_log_sink", &set_sink, nb::arg("sink").none(), nb::arg("min_level"),
          "Send native log lines at `min_level` (a logging level number) or above to `sink(level, line)`;"
          " None discards them.");
    m.def("set_log_level", [](int level) { llamaproc::set_log_min_level(static_cast<llamaproc::LogLevel>(level)); },
          nb::arg("min_level"));
    m.def("process_log_tail", &llamaproc::process_log_tail, nb::arg("max_lines") = 40,
          "The last native log lines of the whole process, whatever their level.");
    m.def("_interpreter_exiting", [] { g_python_alive = false; },
          "Called at exit: from now on native log lines go to stderr, not Python.");
}
