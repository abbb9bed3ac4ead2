"""Quantization: llama.cpp's quantizer as a function, with progress, cancellation and
atomic output (a failed or cancelled run leaves nothing at ``dst``)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._native import core
from ..errors import ConfigError
from ..messages import message
from .model_info import ModelInfo, inspect_model
from .types import QuantType

__all__ = ["QuantType", "QuantizeResult", "quantize"]


@dataclass(frozen=True)
class QuantizeResult:
    """What :func:`quantize` produced."""

    source: Path
    destination: Path
    qtype: QuantType
    source_bytes: int
    destination_bytes: int
    seconds: float
    info: ModelInfo  #: the new file, as :func:`inspect_model` reads it (tensor type mix included)

    @property
    def ratio(self) -> float:
        """Destination size over source size."""
        return self.destination_bytes / self.source_bytes if self.source_bytes else 0.0


def quantize(src: str | os.PathLike[str], dst: str | os.PathLike[str], qtype: str | QuantType, *,
             threads: int | None = None, allow_requantize: bool = False,
             imatrix: str | os.PathLike[str] | None = None, overwrite: bool = False,
             progress: Callable[[int, int, str], object] | None = None) -> QuantizeResult:
    """Quantize the GGUF model ``src`` to ``qtype``, writing ``dst``.

    The GIL is released while llama.cpp works. ``progress(done, total, tensor_name)`` is called
    after each tensor (it may return False to cancel); Ctrl-C cancels too. Output goes to a
    temporary file next to ``dst`` that replaces ``dst`` only when complete.

    Args:
        src: Source model (F32/F16/BF16, or any type with ``allow_requantize``).
        dst: Output path.
        qtype: Target type, e.g. ``"Q4_K_M"`` or ``QuantType.Q8_0``.
        threads: Quantization threads (default: one per hardware thread).
        allow_requantize: Allow a source whose tensors are already quantized (quality suffers:
            the result is a re-quantized copy).
        imatrix: Importance matrix file (from llama.cpp's imatrix tool) for better low-bit types.
        overwrite: Replace an existing ``dst``.
        progress: Per-tensor callback, see above.

    Raises:
        ConfigError: unknown type, ``dst`` exists (without overwrite), ``src == dst``, a type that
            needs an importance matrix without one, or bad ``threads``.
        ModelLoadError: the source is missing, not GGUF, corrupt, or cannot be quantized.
    """
    qt = QuantType.parse(qtype)
    src_path, dst_path = Path(src), Path(dst)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(message("quant.threads", value=threads))
    if dst_path.exists() and src_path.resolve() == dst_path.resolve():
        raise ConfigError(message("quant.same_file", path=src_path))
    if dst_path.exists() and not overwrite:
        raise ConfigError(message("quant.exists", path=dst_path))
    if qt.needs_imatrix and imatrix is None:
        raise ConfigError(message("quant.needs_imatrix", qtype=qt.name))
    if imatrix is not None and not Path(imatrix).is_file():
        raise ConfigError(message("quant.imatrix_missing", path=imatrix))
    dst_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst_path.name}.", suffix=".partial", dir=dst_path.parent)
    os.close(fd)
    started = time.perf_counter()
    try:
        core.quantize(str(src_path), tmp_name, qt, threads or 0, allow_requantize,
                      "" if imatrix is None else str(imatrix), progress)
        os.replace(tmp_name, dst_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - started
    return QuantizeResult(src_path, dst_path, qt, src_path.stat().st_size, dst_path.stat().st_size, seconds,
                          inspect_model(dst_path))
