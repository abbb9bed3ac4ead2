"""What a model configuration will hold in memory, before it is loaded.

    from llamaproc import ServerConfig, estimate_memory

    est = estimate_memory(ServerConfig(model_path="model.gguf", context_size=8192))
    print(est.expected_bytes, est.source)   # e.g. 254 MiB, "estimate" or "measured"

Two figures stand behind every memory limit (``ServerConfig.memory_limit``) and pool budget
(``PoolConfig.memory_budget``):

* **the estimate**: llama.cpp's own dry run of the model and of the context the server will
  create (only the GGUF header is read): weights, including the copies that the CPU backend
  repacks for AMX or AVX2/AVX-512 kernels, the KV cache, and the compute buffers for the output
  rows the server really reserves (one per slot);
* **the measurement**: what an earlier load of the *same file* (path, size, modification time)
  with the *same memory-relevant flags* on the *same build and CPU variant* really held. Every
  load records one. They are kept for the process and in a small file
  (``memory-measurements.txt`` in the cache folder, see :func:`measurements_file`), so a restart,
  a pool's second model on the same file and the next process are judged by what was held.

A load is admitted on the measurement where there is one, else on the estimate; after the load,
what it holds corrects the reservation (a server reloads with a smaller prompt cache, a pool
unloads idle models). Metrics say which figure was used (``ServerMetrics.memory_expected_source``,
``PoolModelInfo.memory_measured``), and so do refusals (:class:`~llamaproc.errors.ResourceError`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .messages import message

#: The environment variable naming the measurements file; empty or ``off`` keeps
#: measurements in the process only.
MEASUREMENTS_ENV = "LLAMAPROC_MEMORY_MEASUREMENTS"


@dataclass(frozen=True)
class MemoryEstimate:
    """What a configuration will hold, in bytes, before it is loaded (without the prompt
    cache, which grows up to its cap: ``--cache-ram``)."""

    model_bytes: int  #: weights, repacked copies included (at least the file's size)
    context_bytes: int  #: KV cache and other per-context state
    compute_bytes: int  #: compute buffers
    #: what an earlier load of the same file and flags on this build and CPU held, if any
    measured_bytes: int | None = None

    @property
    def estimated_bytes(self) -> int:
        """llama.cpp's dry-run figure: weights + context + compute."""
        return self.model_bytes + self.context_bytes + self.compute_bytes

    @property
    def expected_bytes(self) -> int:
        """The figure a memory limit or budget is checked against: the measurement where
        there is one, else the estimate."""
        return self.measured_bytes if self.measured_bytes is not None else self.estimated_bytes

    @property
    def source(self) -> str:
        """``"measured"`` or ``"estimate"``: where :attr:`expected_bytes` comes from."""
        return "measured" if self.measured_bytes is not None else "estimate"


def estimate_memory(config: object) -> MemoryEstimate:
    """What loading ``config`` will hold: a :class:`~llamaproc.ServerConfig`, a pool's
    :class:`~llamaproc.ModelSpec`, or llama-server flags (``["-m", "model.gguf", "-c", "8192"]``).

    Raises:
        ConfigError: the flags are invalid.
        ModelLoadError: the model file cannot be read.
    """
    if isinstance(config, Sequence) and not isinstance(config, (str, bytes)):
        argv = [str(a) for a in config]
    else:
        to_argv = getattr(config, "to_argv", None)
        if to_argv is None:
            raise TypeError(message("memory.bad_argument", type=type(config).__name__))
        argv = list(to_argv())
    from ._native import core

    d: dict[str, Any] = core.expected_memory(argv)
    measured = d["measured"]
    return MemoryEstimate(int(d["model"]), int(d["context"]), int(d["compute"]),
                          None if measured is None else int(measured))


def default_measurements_file() -> Path | None:
    """``$LLAMAPROC_MEMORY_MEASUREMENTS`` if set (None if empty or ``off``), else
    ``memory-measurements.txt`` in llamaproc's cache folder (:func:`llamaproc.default_model.cache_dir`)."""
    explicit = os.environ.get(MEASUREMENTS_ENV)
    if explicit is not None:
        return None if explicit.strip().lower() in ("", "off") else Path(explicit)
    from .default_model import cache_dir

    return cache_dir() / "memory-measurements.txt"


def measurements_file() -> Path | None:
    """The file measurements persist in (None: this process only)."""
    from ._native import core

    path = core.memory_measurements_file()
    return Path(path) if path else None


def set_measurements_file(path: str | os.PathLike[str] | None) -> None:
    """Keep measurements in ``path`` (None: in this process only). Entries already in the file
    are used at once; a file that cannot be written is logged and ignored."""
    from ._native import core

    core.set_memory_measurements_file("" if path is None else os.fspath(path))


def forget_measurements() -> None:
    """Forget this process's measurements: later loads are judged by the estimate until they
    measure again (the measurements file, if any, is read again on the next look-up)."""
    from ._native import core

    core.forget_memory_measurements()
