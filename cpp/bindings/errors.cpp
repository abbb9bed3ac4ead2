// C++ errors -> the exception classes of llamaproc.errors (a pure-Python module).
#include "bindings.h"
#include "convert.h"

#include "errors.h"
#include "native_log.h"

#include "ggml.h"

#include <exception>

#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

namespace {

// The class of each error kind is chosen in one place: llamaproc.errors.error_of_kind().
void raise_python(const llamaproc::Error & e) {
    nb::object errors = nb::module_::import_("llamaproc.errors");
    nb::object exc = errors.attr("error_of_kind")(error_kind_name(e.kind()), llamaproc::valid_utf8(e.what()));
    errors.attr("attach_log_tail")(exc, nb::cast(e.log_tail()));
    PyErr_SetObject(reinterpret_cast<PyObject *>(Py_TYPE(exc.ptr())), exc.ptr());
}

}  // namespace

void init_errors(nb::module_ & m) {
    m.def(
        "_trigger_ggml_abort",
        [](const std::string & message) -> std::string {
            // exercises the abort guard: a GGML_ABORT on a guarded thread must unwind, not abort(),
            // and must pass through a `catch (const std::exception &)` as llama.cpp has ~20 of
            llamaproc::ThreadLogScope scope(std::make_shared<llamaproc::LogTail>());
            try {
                ggml_abort(__FILE__, __LINE__, "%s", message.c_str());
            } catch (const std::exception & e) {
                return std::string("swallowed by a std::exception handler: ") + e.what();
            }
        },
        nb::call_guard<nb::gil_scoped_release>(), nb::arg("message"),
        "Test hook: call ggml_abort() on a guarded thread inside a catch (std::exception&) block; "
        "raises NativeError instead of aborting.");
    m.def(
        "_valid_utf8", [](nb::bytes raw) { return llamaproc::valid_utf8(std::string(raw.c_str(), raw.size())); },
        nb::arg("raw"), "Test hook: what a native log line or error message with these bytes becomes in Python.");
    m.def(
        "_trigger_terminate", [] { std::terminate(); },
        "Test hook: call std::terminate() (ends the process: run it in a child process only).");
    nb::register_exception_translator([](const std::exception_ptr & p, void *) {
        try {
            std::rethrow_exception(p);
        } catch (const llamaproc::Error & e) {
            raise_python(e);
        } catch (const llamaproc::NativeAbort & e) {
            raise_python(llamaproc::Error(llamaproc::ErrorKind::internal,
                                          std::string("llama.cpp hit a failed assertion: ") + e.what()));
        }
    });
}
