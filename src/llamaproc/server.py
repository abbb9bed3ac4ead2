"""LlamaServer: llama.cpp's HTTP server running on native threads inside this process."""

from __future__ import annotations

import asyncio
import atexit
import enum
import http.client
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import _logging, flags
from ._native import core
from .config import ServerConfig
from .errors import LlamaProcError, ServerNotRunningError, StartupError, attach_log_tail


class ServerStatus(enum.Enum):
    """Where a server is in its lifecycle."""

    STARTING = "starting"  #: bound and loading the model
    READY = "ready"  #: model loaded, serving requests
    STOPPING = "stopping"  #: stop() in progress
    STOPPED = "stopped"  #: stopped; threads joined, model freed
    FAILED = "failed"  #: startup failed, or the inference loop died


_STATUS_OF_STATE = {
    "created": ServerStatus.STARTING,
    "starting": ServerStatus.STARTING,
    "ready": ServerStatus.READY,
    "stopping": ServerStatus.STOPPING,
    "stopped": ServerStatus.STOPPED,
    "failed": ServerStatus.FAILED,
}


class HealthStatus(enum.Enum):
    """Outcome of :meth:`LlamaServer.health_check`."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True)
class HealthReport:
    """What :meth:`LlamaServer.health_check` found.

    Attributes:
        status: HEALTHY, DEGRADED or UNHEALTHY (rules in ``LlamaServer.health_check``).
        detail: One sentence saying why.
        slots_total: Request slots of the server (0 when unknown).
        slots_busy: Slots decoding a request.
        requests_waiting: Requests queued for a free slot.
        latency_s: Time the check took.
    """

    status: HealthStatus
    detail: str
    slots_total: int = 0
    slots_busy: int = 0
    requests_waiting: int = 0
    latency_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True unless UNHEALTHY: a DEGRADED server still answers, just later."""
        return self.status is not HealthStatus.UNHEALTHY


@dataclass(frozen=True)
class ServerMetrics:
    """Counters since the server started, as the inference loop reports them.

    ``prometheus`` holds the same in Prometheus' text format (what llama-server's /metrics
    endpoint serves when started with ``--metrics``).
    """

    slots_total: int
    slots_busy: int
    requests_waiting: int
    prompt_tokens: int
    prompt_seconds: float
    prompt_tokens_cached: int
    generated_tokens: int
    generation_seconds: float
    decode_calls: int
    prometheus: str

    @property
    def prompt_tokens_per_second(self) -> float:
        return self.prompt_tokens / self.prompt_seconds if self.prompt_seconds > 0 else 0.0

    @property
    def generation_tokens_per_second(self) -> float:
        return self.generated_tokens / self.generation_seconds if self.generation_seconds > 0 else 0.0


_live_servers: weakref.WeakSet[LlamaServer] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    # native threads must not outlive the interpreter: stop what the program left running
    for server in list(_live_servers):
        try:
            server.stop()
        except LlamaProcError:
            pass
    core._interpreter_exiting()


class LlamaServer:
    """An embedded llama.cpp server: the OpenAI-compatible HTTP API, served from this process.

    Create one with :meth:`start` (or ``await`` :meth:`astart`)::

        with LlamaServer.start(ServerConfig(model_path="model.gguf")) as server:
            print(server.url)  # http://127.0.0.1:<port>, /v1/chat/completions etc.

    Several servers can run at once, each with its own model and port. The GIL is released
    while models load, while requests are served and while stopping. No signal handlers are
    installed: Ctrl-C raises KeyboardInterrupt as usual and ``with`` stops the server.
    """

    def __init__(self, config: ServerConfig) -> None:
        """Prepare a server without starting it; most code calls :meth:`start` instead."""
        if not isinstance(config, ServerConfig):
            raise TypeError(f"config must be a ServerConfig, got {type(config).__name__}")
        self._prepare(config.to_argv(), config=config, use_env=False, memory_limit=config.memory_limit or 0,
                      port=config.port, host=config.host)

    def _prepare(self, argv: list[str], *, config: ServerConfig | None, use_env: bool, memory_limit: int,
                 port: int, host: str) -> None:
        self._config = config
        self._argv = argv
        self._use_env = use_env
        self._memory_limit = memory_limit
        self._native: core.EmbeddedServer | None = None
        self._port = port
        self._host = host
        self._lock = threading.RLock()

    @classmethod
    def from_args(cls, args: Sequence[str], *, use_env: bool = True, timeout: float = 600.0,
                  progress: Callable[[float], None] | None = None) -> LlamaServer:
        """Start a server from a llama-server command line (flags only, no program name).

        An existing ``llama-server -m model.gguf --port 8080 ...`` works unchanged as
        ``LlamaServer.from_args(["-m", "model.gguf", "--port", "8080", ...])``. With
        ``use_env`` (the default, as for llama-server) ``LLAMA_ARG_*`` environment variables
        supply defaults. Raises like :meth:`start`.
        """
        argv, log_level = flags.split_process_flags([str(a) for a in args], use_env=use_env)
        core.validate_server_args(argv, use_env)
        server = cls.__new__(cls)
        server._prepare(argv, config=None, use_env=use_env, memory_limit=0, port=0, host="127.0.0.1")
        server._log_level = log_level  # -v / -lv N: applied to the `llamaproc` logger by _start()
        server._start(timeout=timeout, progress=progress)
        return server

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def start(cls, config: ServerConfig, *, timeout: float = 600.0,
              progress: Callable[[float], None] | None = None) -> LlamaServer:
        """Start a server and return it once /health answers 200.

        Args:
            config: What to serve.
            timeout: Seconds to wait for the model to load before giving up.
            progress: Called with the load fraction (0..1) while the model loads.

        Raises:
            ConfigError: a flag or value is invalid.
            ModelLoadError: the model file is missing, not GGUF, corrupt or unsupported.
            StartupError: the address cannot be bound (port in use) or the timeout passed.
            ResourceError: the configuration needs more than ``config.memory_limit`` bytes.
        """
        server = cls(config)
        server._start(timeout=timeout, progress=progress)
        return server

    def _start(self, *, timeout: float, progress: Callable[[float], None] | None) -> None:
        with self._lock:
            if self._native is not None and self.status in (ServerStatus.STARTING, ServerStatus.READY):
                raise LlamaProcError("the server is already running")
            flags.apply_log_level(self._config.log_level if self._config is not None else self._log_level)
            _logging.sync_log_level()
            argv = list(self._argv)
            if self._port:
                argv += ["--port", str(self._port)]  # the last --port wins: restart() keeps the port
            native = core.EmbeddedServer(argv, use_env=self._use_env, memory_limit=self._memory_limit)
            native.start()  # raises ConfigError / ModelLoadError / StartupError right away
            self._native = native
            _live_servers.add(self)
            try:
                deadline = time.monotonic() + timeout
                # short waits: Ctrl-C (KeyboardInterrupt) gets through while the model loads
                while not native.wait_ready(0.1):
                    if progress is not None:
                        progress(native.load_progress)
                    if time.monotonic() > deadline:
                        raise attach_log_tail(
                            StartupError(f"the model did not load within {timeout:g} s. "
                                         "Hint: raise the timeout for large models or slow disks"),
                            native.log_tail())
                if progress is not None:
                    progress(1.0)
            except BaseException:
                native.stop()
                raise
            self._port = native.port  # restart() binds the same port again
            self._host = native.host

    def stop(self) -> None:
        """Stop serving: in-flight requests end (streams close cleanly), every native thread is
        joined and the model and KV cache are freed. Idempotent; bounded by about one second
        plus the time of the decode step in progress."""
        with self._lock:
            native = self._native
            if native is not None:
                native.stop()
            _live_servers.discard(self)

    def restart(self, *, timeout: float = 600.0) -> None:
        """Stop, then start again with the same configuration on the same port."""
        with self._lock:
            self.stop()
            self._start(timeout=timeout, progress=None)

    def __enter__(self) -> LlamaServer:
        if self.status is not ServerStatus.READY:
            self._start(timeout=600.0, progress=None)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<LlamaServer {self.status.value} {self.url}>"

    # -- state ----------------------------------------------------------------------------

    @property
    def config(self) -> ServerConfig | None:
        """The configuration given to :meth:`start`; None for :meth:`from_args` servers."""
        return self._config

    @property
    def args(self) -> list[str]:
        """The llama-server flags this server runs with."""
        return list(self._argv)

    @property
    def status(self) -> ServerStatus:
        native = self._native
        if native is None:
            return ServerStatus.STOPPED
        return _STATUS_OF_STATE[native.state]

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when the config asked for port 0)."""
        return self._port

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self._host

    @property
    def url(self) -> str:
        """Base URL for clients, e.g. ``http://127.0.0.1:8080``."""
        return f"http://{_client_host(self._host)}:{self._port}"

    def log_tail(self, max_lines: int = 40) -> list[str]:
        """The last native log lines of this server, whatever the logging level."""
        native = self._native
        return native.log_tail(max_lines) if native is not None else []

    def _require_ready(self) -> core.EmbeddedServer:
        native = self._native
        if native is None or native.state != "ready":
            raise ServerNotRunningError(f"the server is {self.status.value}; start() it first")
        return native

    # -- health and metrics ---------------------------------------------------------------

    def health_check(self, timeout: float = 2.0) -> HealthReport:
        """Check the server the way a client and an operator would.

        Rules:
            * UNHEALTHY: not started, stopped, failed, the inference loop is not running, or
              ``GET /health`` does not answer 200 within ``timeout``.
            * DEGRADED: /health answers, but every slot is busy and requests are waiting for
              one, or the inference loop did not answer a status query within ``timeout``
              (it answers between decode steps; a long prompt batch delays it).
            * HEALTHY: otherwise.
        Never raises for an unhealthy server; the report says why.
        """
        started = time.monotonic()

        def report(status: HealthStatus, detail: str, load: dict | None = None) -> HealthReport:
            load = load or {}
            return HealthReport(status, detail, load.get("n_slots", 0), load.get("n_processing", 0),
                                load.get("n_deferred", 0), time.monotonic() - started)

        native = self._native
        status = self.status
        if native is None or status is not ServerStatus.READY:
            return report(HealthStatus.UNHEALTHY, f"server is {status.value}")
        if not native.loop_running:
            return report(HealthStatus.UNHEALTHY, "the inference loop is not running")
        _logging.sync_log_level()
        try:
            code = _http_status(_client_host(self._host), self._port, "/health", timeout)
        except OSError as exc:
            return report(HealthStatus.UNHEALTHY, f"GET /health failed: {exc}")
        if code != 200:
            return report(HealthStatus.UNHEALTHY, f"GET /health answered HTTP {code}")
        load = native.query_load(timeout)
        if load is None:
            if self.status is not ServerStatus.READY:
                return report(HealthStatus.UNHEALTHY, f"server is {self.status.value}")
            return report(HealthStatus.DEGRADED, f"the inference loop did not answer within {timeout:g} s")
        if load["n_processing"] >= load["n_slots"] and load["n_deferred"] > 0:
            return report(HealthStatus.DEGRADED,
                          f"all {load['n_slots']} slots busy, {load['n_deferred']} requests waiting", load)
        return report(HealthStatus.HEALTHY,
                      f"serving; {load['n_processing']} of {load['n_slots']} slots busy", load)

    def metrics(self, timeout: float = 5.0) -> ServerMetrics:
        """Token counts and timings since start, from the inference loop.

        Raises:
            ServerNotRunningError: the server is not READY.
            LlamaProcError: the loop did not answer within ``timeout``.
        """
        native = self._require_ready()
        _logging.sync_log_level()
        m = native.query_metrics(timeout)
        if m is None:
            raise LlamaProcError(f"the inference loop did not answer within {timeout:g} s")
        load = m["load"]
        return ServerMetrics(load["n_slots"], load["n_processing"], load["n_deferred"], m["prompt_tokens"],
                             m["prompt_seconds"], m["prompt_tokens_cached"], m["generated_tokens"],
                             m["generation_seconds"], m["decode_calls"], m["prometheus"])

    # -- asyncio twins --------------------------------------------------------------------

    @classmethod
    async def astart(cls, config: ServerConfig, *, timeout: float = 600.0) -> LlamaServer:
        """:meth:`start` without blocking the event loop."""
        return await asyncio.to_thread(cls.start, config, timeout=timeout)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def arestart(self, *, timeout: float = 600.0) -> None:
        await asyncio.to_thread(self.restart, timeout=timeout)

    async def ahealth_check(self, timeout: float = 2.0) -> HealthReport:
        return await asyncio.to_thread(self.health_check, timeout)

    async def ametrics(self, timeout: float = 5.0) -> ServerMetrics:
        return await asyncio.to_thread(self.metrics, timeout)

    async def __aenter__(self) -> LlamaServer:
        if self.status is not ServerStatus.READY:
            await asyncio.to_thread(self._start, timeout=600.0, progress=None)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.astop()


def _client_host(host: str) -> str:
    """Where a client on this machine reaches a server listening on ``host``."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "[::1]"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def _http_status(host: str, port: int, path: str, timeout: float) -> int:
    conn = http.client.HTTPConnection(host.strip("[]"), port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


__all__ = ["LlamaServer", "ServerStatus", "HealthStatus", "HealthReport", "ServerMetrics", "StartupError"]
