"""Errors raised by llamaproc.

Every error is a :class:`LlamaProcError`; the subclasses say what the user can do about it.
Errors raised while a server starts carry the tail of the native log in ``log_tail`` (a list
of lines), also attached as an exception note so tracebacks show it.
"""

from __future__ import annotations

from typing import Any

from .messages import message


class LlamaProcError(Exception):
    """Base class of every llamaproc error."""

    #: The last native (llama.cpp) log lines of the server concerned, when there are any.
    log_tail: list[str]

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.log_tail = []


class ConfigError(LlamaProcError, ValueError):
    """A configuration value or llama-server flag is invalid."""


class ModelLoadError(LlamaProcError):
    """The model file is missing, unreadable, not GGUF, corrupt, or of an unsupported architecture."""


class StartupError(LlamaProcError):
    """The server could not start: the port is in use, the address cannot be bound, or it timed out."""


class ResourceError(LlamaProcError):
    """The configuration needs more memory than allowed (``ServerConfig.memory_limit``, or a model
    pool's ``memory_budget``)."""


class ServerNotRunningError(LlamaProcError):
    """The operation needs a running server."""


class ModelNotFoundError(LlamaProcError, KeyError):
    """A model pool has no model (or alias) of that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WaitTimeoutError(LlamaProcError, TimeoutError):
    """An operation (loading a model, a swap, a drain) did not finish within its ``timeout``."""


class NativeError(LlamaProcError):
    """llama.cpp failed in a way that fits none of the other classes (e.g. a failed assertion)."""


class BuildError(LlamaProcError):
    """The native extension is missing or was built without a needed feature, or building it failed."""


class CompilationError(BuildError):
    """The compiler failed. ``first_error`` is its first error line; the whole output is at ``log_path``."""

    def __init__(self, message: str, *, first_error: str = "", log_path: str | None = None) -> None:
        super().__init__(message)
        self.first_error = first_error
        self.log_path = log_path


class DependencyMissingError(BuildError):
    """Something the build needs is not installed: ``missing`` says what, ``install_hint`` how."""

    def __init__(self, message: str, *, missing: str = "", install_hint: str = "", log_path: str | None = None) -> None:
        super().__init__(message)
        self.missing = missing
        self.install_hint = install_hint
        self.log_path = log_path


class BuildConfigurationError(BuildError, ValueError):
    """The build configuration contradicts the machine (e.g. Metal on Linux)."""


class UnsupportedPlatformError(BuildError):
    """llamaproc cannot be built on this platform."""


class RequestError(LlamaProcError):
    """A request the server answered with an error (direct calls; the same body HTTP gets).

    Attributes:
        status_code: The HTTP status the server answered with.
        type: llama.cpp's error type, e.g. ``invalid_request_error``.
        message: The server's message.
        body: The whole error body (a dict).
    """

    def __init__(self, message: str, *, status_code: int = 0, type: str = "",
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.type = type
        self.message = message
        self.body = body or {}


class BadRequestError(RequestError, ValueError):
    """The request is invalid (HTTP 400): a bad parameter, malformed messages, ..."""


class ContextSizeExceededError(BadRequestError):
    """The prompt does not fit the context (``n_prompt_tokens`` and ``n_ctx`` are in ``body``)."""


class AuthenticationError(RequestError):
    """HTTP 401."""


class PermissionDeniedError(RequestError):
    """HTTP 403: the feature is disabled on this server."""


class NotFoundError(RequestError):
    """HTTP 404: no such route (or resource)."""


class NotSupportedError(RequestError):
    """HTTP 501: the server was not started for this (e.g. embeddings without ``embeddings=True``)."""


class UnavailableError(RequestError):
    """HTTP 503: the model is loading, failed, or the server is stopping."""


class InternalServerError(RequestError):
    """HTTP 500: the server failed while answering (e.g. a native assertion, now FAILED)."""


class RequestTimeoutError(RequestError, TimeoutError):
    """The call did not finish within its ``timeout``; it was cancelled."""


_REQUEST_ERROR_OF_TYPE: dict[str, type[RequestError]] = {
    "invalid_request_error": BadRequestError,
    "exceed_context_size_error": ContextSizeExceededError,
    "authentication_error": AuthenticationError,
    "permission_error": PermissionDeniedError,
    "feature_disabled": PermissionDeniedError,
    "not_found_error": NotFoundError,
    "not_supported_error": NotSupportedError,
    "unavailable_error": UnavailableError,
    "server_error": InternalServerError,
}
_REQUEST_ERROR_OF_STATUS: dict[int, type[RequestError]] = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    500: InternalServerError, 501: NotSupportedError, 503: UnavailableError,
}


def request_error(status_code: int, body: object) -> RequestError:
    """The typed error for an error body the server answered with ``status_code``."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        err = {"message": str(body)}
    kind = str(err.get("type", ""))
    cls = _REQUEST_ERROR_OF_TYPE.get(kind) or _REQUEST_ERROR_OF_STATUS.get(status_code, RequestError)
    code = err.get("code", status_code)
    return cls(str(err.get("message", "")), status_code=int(code) if isinstance(code, int) else status_code,
               type=kind, body=body if isinstance(body, dict) else {"error": err})


_ERROR_OF_KIND: dict[str, type[LlamaProcError]] = {
    "config": ConfigError,
    "model_load": ModelLoadError,
    "startup": StartupError,
    "resource": ResourceError,
    "not_running": ServerNotRunningError,
    "not_found": ModelNotFoundError,
    "timeout": WaitTimeoutError,
    "internal": NativeError,
}


def error_of_kind(kind: str, message: str) -> LlamaProcError:
    """The error for a failure the native core reports as (``kind``, ``message``)."""
    return _ERROR_OF_KIND.get(kind, NativeError)(message)


def attach_log_tail(error: LlamaProcError, lines: list[str]) -> LlamaProcError:
    """Record ``lines`` on ``error`` and add them as a note shown in tracebacks."""
    if lines and not error.log_tail:
        error.log_tail = list(lines)
    if error.log_tail and hasattr(error, "add_note"):
        error.add_note(message("errors.native_log_tail", lines="\n  ".join(error.log_tail)))
    return error


__all__ = [
    "LlamaProcError",
    "ConfigError",
    "ModelLoadError",
    "StartupError",
    "ResourceError",
    "ServerNotRunningError",
    "ModelNotFoundError",
    "WaitTimeoutError",
    "NativeError",
    "BuildError",
    "CompilationError",
    "DependencyMissingError",
    "BuildConfigurationError",
    "UnsupportedPlatformError",
    "RequestError",
    "BadRequestError",
    "ContextSizeExceededError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "NotSupportedError",
    "UnavailableError",
    "InternalServerError",
    "RequestTimeoutError",
]
