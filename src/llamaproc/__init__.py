"""llamaproc: llama.cpp's HTTP server running inside your Python process.

    from llamaproc import LlamaServer, ServerConfig

    with LlamaServer.start(ServerConfig(model_path="model.gguf")) as server:
        ...  # OpenAI-compatible API at server.url

No child process and no binary to find: the server runs on native threads of this process,
and ``stop()``, ``restart()``, ``health_check()``, ``status`` and ``metrics()`` are methods.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import errors
from ._logging import flush_logs, sync_log_level
from .config import ServerConfig
from .evaluation import Evaluator, QualityStats
from .gguf_info import ModelInfo, inspect
from .quant_types import QuantType
from .quantization import QuantizeResult, quantize
from .recovery import EventKind, RestartPolicy, ServerEvent
from .server import HealthReport, HealthStatus, LlamaServer, ServerMetrics, ServerStatus

try:
    __version__ = version("llamaproc")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

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
    "__version__",
]
