"""Several models behind one port, in this process: :class:`ModelPool` (llama-server's router
mode, without child processes). See :mod:`llamaproc.pool.pool` for the overview;
``pool.server(name)`` is one model seen as a server (:mod:`llamaproc.pool.pooled_server`)."""

from .config import ModelSpec, PoolConfig
from .pool import (ModelEvent, ModelEventKind, ModelPool, ModelStatus, PoolModelInfo, SourcesReload, SwapMode,
                   SwapReport, serve_from_args)
from .pooled_server import PooledServer

__all__ = ["ModelPool", "PoolConfig", "ModelSpec", "ModelStatus", "PoolModelInfo", "SwapReport", "SwapMode",
           "SourcesReload", "ModelEvent", "ModelEventKind", "PooledServer", "serve_from_args"]
