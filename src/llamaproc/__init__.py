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
import warnings
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from . import errors
from .messages import message

try:
    __version__ = version("llamaproc")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

# The public names below live in modules that load the native extension (`_core`). They are
# imported on first use (PEP 562), so that `import llamaproc.build` (hardware detection, build
# configuration) works before the extension exists. A missing extension still raises
# errors.BuildError with the fix, at the first use of a native name.
_LAZY = {
    "LlamaServer": "server",
    "ServerStatus": "contract", "HealthStatus": "contract", "HealthReport": "contract",
    "ServerMetrics": "contract", "ServerLike": "contract",
    "ServerConfig": "config",
    "RestartPolicy": "recovery", "ServerEvent": "recovery", "EventKind": "recovery",
    "Fault": "faults", "FaultKind": "faults",
    "quantize": "quant.quantize_file", "QuantizeResult": "quant.quantize_file", "QuantType": "quant.types",
    "inspect_model": "quant.model_info", "ModelInfo": "quant.model_info",
    "Evaluator": "quant.evaluate", "QualityStats": "quant.evaluate",
    "sync_log_level": "_logging", "flush_logs": "_logging",
    "DeviceMetrics": "devices",
    "estimate_memory": "memory", "MemoryEstimate": "memory",
    "ModelPool": "pool.pool", "PoolConfig": "pool.config", "ModelSpec": "pool.config", "ModelStatus": "pool.pool",
    "PoolModelInfo": "pool.pool", "SwapReport": "pool.pool", "SwapMode": "pool.pool", "ModelEvent": "pool.pool",
    "ModelEventKind": "pool.pool", "PooledServer": "pool.pooled_server", "serve_from_args": "pool.pool",
    "RpcWorker": "rpc.worker",
}

if TYPE_CHECKING:
    from ._logging import flush_logs, sync_log_level
    from .config import ServerConfig
    from .contract import HealthReport, HealthStatus, ServerLike, ServerMetrics, ServerStatus
    from .devices import DeviceMetrics
    from .faults import Fault, FaultKind
    from .memory import MemoryEstimate, estimate_memory
    from .pool import (ModelEvent, ModelEventKind, ModelPool, ModelSpec, ModelStatus, PoolConfig, PooledServer,
                       PoolModelInfo, SwapMode, SwapReport, serve_from_args)
    from .quant import Evaluator, ModelInfo, QualityStats, QuantizeResult, QuantType, inspect_model, quantize
    from .recovery import EventKind, RestartPolicy, ServerEvent
    from .rpc import RpcWorker
    from .server import LlamaServer

#: Old names kept for one release (see CHANGELOG.md): old name -> (module, new name).
_DEPRECATED = {"inspect": ("quant.model_info", "inspect_model")}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        module_name, new_name = _DEPRECATED[name]
        warnings.warn(message("package.renamed", name=name, new_name=new_name), DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(f"{__name__}.{module_name}"), new_name)
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
    "ServerLike",
    "RestartPolicy",
    "ServerEvent",
    "EventKind",
    "errors",
    "quantize",
    "QuantType",
    "QuantizeResult",
    "inspect_model",
    "ModelInfo",
    "Fault",
    "FaultKind",
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
    "SwapMode",
    "ModelEvent",
    "ModelEventKind",
    "PooledServer",
    "serve_from_args",
    "DeviceMetrics",
    "estimate_memory",
    "MemoryEstimate",
    "__version__",
]
