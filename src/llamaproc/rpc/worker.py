"""RpcWorker: ggml's RPC server on a native thread of this process."""

from __future__ import annotations

import os
from types import TracebackType

from .._native import core

DEFAULT_PORT = 50052  # llama.cpp's rpc-server default


def rpc_supported() -> bool:
    """True if this build has ggml's RPC backend (``GGML_RPC``, on by default)."""
    return bool(core.rpc_supported())


class RpcWorker:
    """A worker that llama-servers reach with ``--rpc host:port``.

    ``start()`` returns once it accepts connections; ``stop()`` closes it, and a server that
    was using it then fails with a typed error (its layers lived on this worker) while the
    process and every other server carry on. Use it as a context manager::

        with RpcWorker(port=50052) as worker:
            ...  # servers started with --rpc 127.0.0.1:50052 place layers here

    Args:
        host: IPv4 address to listen on; loopback unless ``allow_remote``.
        port: TCP port (llama.cpp's rpc-server uses 50052).
        threads: CPU threads for computing; default one per physical core but one.
        cache_dir: keep tensors the servers sent in this directory, so that a server loading
            the same model again sends only their hashes (rpc-server ``-c``).
        allow_remote: listen on a non-loopback address. The RPC protocol has no
            authentication: anyone who reaches the port can use this machine's memory and
            compute, so only do this on a trusted network.

    Raises (from ``start()``): ``ConfigError`` for a bad host or port, or a remote address
    without ``allow_remote``; ``StartupError`` when the port is taken.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, threads: int | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, allow_remote: bool = False) -> None:
        self._native = core.RpcWorker(host, int(port), threads or 0, os.fspath(cache_dir) if cache_dir else "",
                                      allow_remote)

    def start(self) -> RpcWorker:
        self._native.start()
        return self

    def stop(self) -> None:
        """Stop accepting, drop the connected server (it fails, not this process), join the thread."""
        self._native.stop()

    @property
    def endpoint(self) -> str:
        """``host:port``, as ``--rpc`` takes it."""
        return str(self._native.endpoint)

    @property
    def running(self) -> bool:
        return bool(self._native.running)

    @property
    def connections(self) -> int:
        """Servers (connections) accepted so far."""
        return int(self._native.connections)

    @property
    def devices(self) -> str:
        """The devices this worker serves, e.g. ``CPU (Intel Xeon ...)``."""
        return str(self._native.devices)

    @property
    def failure(self) -> str | None:
        """Why the worker ended without ``stop()``; None if it did not."""
        return self._native.failure or None

    def __enter__(self) -> RpcWorker:
        return self.start() if not self.running else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RpcWorker({self.endpoint}, {'running' if self.running else 'stopped'})"
