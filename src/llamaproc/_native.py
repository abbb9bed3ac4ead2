"""Import of the native extension with a clear error when it is missing."""

from __future__ import annotations

from .errors import BuildError
from .messages import message

try:
    from . import _core as core
except ImportError as exc:  # pragma: no cover - depends on how the package was installed
    raise BuildError(message("native.import_failed", error=exc)) from exc

from .memory import default_measurements_file  # noqa: E402 - after the extension, which it configures
from .webui import web_ui_dir  # noqa: E402

_measurements = default_measurements_file()
core.set_memory_measurements_file("" if _measurements is None else str(_measurements))

# the chat page and the dashboard (llamaproc/webui/), served at / unless --no-webui or --path
core.set_web_ui_dir(str(web_ui_dir()))

__all__ = ["core"]
