"""Errors raised by llamaproc.

Every error is a :class:`LlamaProcError`; the subclasses say what the user can do about it.
Errors raised while a server starts carry the tail of the native log in ``log_tail`` (a list
of lines), also attached as an exception note so tracebacks show it.
"""

from __future__ import annotations


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
    """The configuration needs more memory than allowed (``ServerConfig.memory_limit``)."""


class ServerNotRunningError(LlamaProcError):
    """The operation needs a running server."""


class NativeError(LlamaProcError):
    """llama.cpp failed in a way that fits none of the other classes (e.g. a failed assertion)."""


class BuildError(LlamaProcError):
    """The native extension is missing or was built without a needed feature."""


def attach_log_tail(error: LlamaProcError, lines: list[str]) -> LlamaProcError:
    """Record ``lines`` on ``error`` and add them as a note shown in tracebacks."""
    if lines and not error.log_tail:
        error.log_tail = list(lines)
    if error.log_tail and hasattr(error, "add_note"):
        error.add_note("native log (last lines):\n  " + "\n  ".join(error.log_tail))
    return error


__all__ = [
    "LlamaProcError",
    "ConfigError",
    "ModelLoadError",
    "StartupError",
    "ResourceError",
    "ServerNotRunningError",
    "NativeError",
    "BuildError",
]
