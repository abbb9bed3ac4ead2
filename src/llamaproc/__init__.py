"""llamaproc: llama.cpp's HTTP server running inside your Python process.

    from llamaproc import LlamaServer, ServerConfig

    with LlamaServer.start(ServerConfig(model_path="model.gguf")) as server:
        ...  # OpenAI-compatible API at server.url

No child process and no binary to find: the server runs on native threads of this process,
and ``stop()``, ``restart()``, ``health_check()``, ``status`` and ``metrics()`` are methods.
Several models behind one port: :class:`ModelPool` (llama-server's router mode, in-process).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from . import errors

try:
    __version__ = version("llamaproc")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

# The public names below live in modules that load the native extension (`_core`). They are
# imported on first use (PEP 562), so that `import llamaproc.build` (hardware detection, build
# configuration) works before the extension exists. A missing extension still raises
# errors.BuildError with the fix, at the first use of a native name.
_LAZY = {
    "LlamaServer": "server", "ServerStatus": "server", "HealthStatus": "server",
    "HealthReport": "server", "ServerMetrics": "server",
    "ServerConfig": "config",
    "RestartPolicy": "recovery", "ServerEvent": "recovery", "EventKind": "recovery",
    "quantize": "quantization", "QuantizeResult": "quantization",
    "QuantType": "quant_types",
    "inspect": "gguf_info", "ModelInfo": "gguf_info",
    "Evaluator": "evaluation", "QualityStats": "evaluation",
    "sync_log_level": "_logging", "flush_logs": "_logging",
    "DeviceMetrics": "devices",
    "estimate_memory": "memory", "MemoryEstimate": "memory",
    "ModelPool": "pool.pool", "PoolConfig": "pool.config", "ModelSpec": "pool.config", "ModelStatus": "pool.pool",
    "PoolModelInfo": "pool.pool", "SwapReport": "pool.pool", "ModelEvent": "pool.pool", "serve_from_args": "pool.pool",
    "RpcWorker": "rpc.worker",
}

if TYPE_CHECKING:
    from ._logging import flush_logs, sync_log_level
    from .config import ServerConfig
    from .devices import DeviceMetrics
    from .evaluation import Evaluator, QualityStats
    from .memory import MemoryEstimate, estimate_memory
    from .gguf_info import ModelInfo, inspect
    from .pool import ModelEvent, ModelPool, ModelSpec, ModelStatus, PoolConfig, PoolModelInfo, SwapReport, serve_from_args
    from .quant_types import QuantType
    from .quantization import QuantizeResult, quantize
    from .recovery import EventKind, RestartPolicy, ServerEvent
    from .rpc import RpcWorker
    from .server import HealthReport, HealthStatus, LlamaServer, ServerMetrics, ServerStatus


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "LlamaServer",
    "ServerConfig",
    "ServerStatus",
    "HealthStatus",
    "HealthReport",
    "ServerMetrics",
    "RestartPolicy",
    "ServerEvent",
    "EventKind",
    "errors",
    "quantize",
    "QuantType",
    "QuantizeResult",
    "inspect",
    "ModelInfo",
    "Evaluator",
    "QualityStats",
    "sync_log_level",
    "flush_logs",
    "ModelPool",
    "PoolConfig",
    "ModelSpec",
    "ModelStatus",
    "PoolModelInfo",
    "RpcWorker",
    "SwapReport",
    "ModelEvent",
    "serve_from_args",
    "DeviceMetrics",
    "estimate_memory",
    "MemoryEstimate",
    "__version__",
]
