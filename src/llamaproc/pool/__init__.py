"""Several models behind one port, in this process: :class:`ModelPool` (llama-server's router
mode, without child processes). See :mod:`llamaproc.pool.pool` for the overview."""

from .config import ModelSpec, PoolConfig
from .pool import ModelEvent, ModelPool, ModelStatus, PoolModelInfo, SourcesReload, SwapReport, serve_from_args

__all__ = ["ModelPool", "PoolConfig", "ModelSpec", "ModelStatus", "PoolModelInfo", "SwapReport", "SourcesReload", "ModelEvent",
           "serve_from_args"]
