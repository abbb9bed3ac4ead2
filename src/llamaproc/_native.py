"""Import of the native extension with a clear error when it is missing."""

from __future__ import annotations

from .errors import BuildError

try:
    from . import _core as core
except ImportError as exc:  # pragma: no cover - depends on how the package was installed
    raise BuildError(
        f"llamaproc's native extension could not be imported ({exc}). "
        "Hint: build it with `pip install --no-build-isolation -ve .` from the source tree."
    ) from exc

from .memory import default_measurements_file  # noqa: E402 - after the extension, which it configures

_measurements = default_measurements_file()
core.set_memory_measurements_file("" if _measurements is None else str(_measurements))

__all__ = ["core"]
