// Errors raised by the core. The binding layer maps each kind to a Python exception class
// in llamaproc.errors; the core itself knows nothing of Python.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace llamaproc {

enum class ErrorKind {
    config,       // a config value or flag is invalid
    model_load,   // the model file is missing, unreadable, not GGUF, corrupt or unsupported
    startup,      // the server could not start: bind failure, port in use, ...
    resource,     // not enough memory for the requested configuration
    not_running,  // the operation needs a running server
    not_found,    // no model of that name (model pool)
    timeout,      // an operation did not finish within the time it was given
    internal,     // anything else that went wrong inside llama.cpp
};

// The kind's name as llamaproc.errors.error_of_kind() knows it ("config", "model_load", ...).
inline const char * error_kind_name(ErrorKind kind) {
    switch (kind) {
        case ErrorKind::config: return "config";
        case ErrorKind::model_load: return "model_load";
        case ErrorKind::startup: return "startup";
        case ErrorKind::resource: return "resource";
        case ErrorKind::not_running: return "not_running";
        case ErrorKind::not_found: return "not_found";
        case ErrorKind::timeout: return "timeout";
        case ErrorKind::internal: break;
    }
    return "internal";
}

class Error : public std::runtime_error {
public:
    Error(ErrorKind kind, const std::string & message, std::vector<std::string> log_tail = {})
        : std::runtime_error(message), kind_(kind), log_tail_(std::move(log_tail)) {}

    ErrorKind kind() const { return kind_; }
    // the last native log lines of the server that failed, for diagnosis
    const std::vector<std::string> & log_tail() const { return log_tail_; }

private:
    ErrorKind kind_;
    std::vector<std::string> log_tail_;
};

// Thrown from ggml's abort callback on threads that llamaproc guards (see native_log.h),
// so that a failed GGML_ASSERT unwinds to a catch site instead of killing the process.
// Deliberately not a std::exception: llama.cpp's own `catch (const std::exception &)` sites
// must not swallow it and carry on with a half-updated state. Only llamaproc's catch sites
// (which mark the server FAILED) see it.
class NativeAbort {
public:
    explicit NativeAbort(std::string message) : message_(std::move(message)) {}
    const char * what() const noexcept { return message_.c_str(); }

private:
    std::string message_;
};

}  // namespace llamaproc
