"""LlamaServer: llama.cpp's HTTP server running on native threads inside this process."""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import functools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

from . import _logging, errors, flags
from ._native import core
from .config import ServerConfig, check_isolation
from .contract import (DerivedSurface, HealthReport, HealthStatus, ServerMetrics, ServerStatus, client_host, http_status,
                       recent_rates)
from .devices import device_metrics
from .errors import ConfigError, LlamaProcError, ServerNotRunningError, StartupError, WaitTimeoutError, attach_log_tail
from .faults import Fault, FaultKind, arm_native, as_fault
from .messages import message
from .recovery import EventKind, RestartPolicy, ServerEvent, Supervisor, deliver


_State = core.NativeState
_STATUS_OF_STATE = {
    _State.created: ServerStatus.STARTING,
    _State.starting: ServerStatus.STARTING,
    _State.ready: ServerStatus.READY,
    _State.stopping: ServerStatus.STOPPING,
    _State.stopped: ServerStatus.STOPPED,
    _State.failed: ServerStatus.FAILED,
}


def _record(value: object) -> dict[str, Any] | None:
    """A native record (a dict of plain values, or None), typed for the code that reads it."""
    return cast("dict[str, Any] | None", value)


def metrics_from_native(m: dict[str, Any], memory: dict[str, Any], **extra: Any) -> ServerMetrics:
    """The metrics from a native loop's counters ``m`` and an instance's ``memory`` record;
    ``extra`` sets the remaining fields (request counts, rates, restarts)."""
    load = m["load"]
    expected = memory.get("expected")
    return ServerMetrics(
        load["n_slots"], load["n_processing"], load["n_deferred"], m["prompt_tokens"], m["prompt_seconds"],
        m["prompt_tokens_cached"], m["generated_tokens"], m["generation_seconds"], m["decode_calls"],
        m["prometheus"], rss_bytes=_rss_bytes(), model_bytes=memory.get("model", 0),
        kv_cache_bytes=memory.get("context", 0), compute_bytes=memory.get("compute", 0),
        prompt_cache_limit_bytes=memory.get("prompt_cache_limit", 0), memory_expected_bytes=expected,
        memory_expected_source=(None if expected is None else "measured" if memory.get("expected_measured")
                                else "estimate"),
        devices=device_metrics(memory.get("devices")), decode_threads=m.get("decode_threads", 0),
        decode_threads_reason=m.get("decode_reason", ""), host_cpus=core.cpu_governor_status()["host_cpus"],
        draft_tokens=m.get("draft_tokens", 0), draft_accepted=m.get("draft_accepted", 0),
        **extra)


_live_servers: weakref.WeakSet[LlamaServer] = weakref.WeakSet()
_log = logging.getLogger("llamaproc")



@atexit.register
def _stop_all_at_exit() -> None:
    # native threads must not outlive the interpreter: stop what the program left running,
    # every one of them, whatever goes wrong with one
    for server in list(_live_servers):
        try:
            server.stop()
        except BaseException:  # noqa: BLE001 - at exit, keep going
            pass


def child_process_metrics(native: object) -> dict[str, Any]:
    """The child's pid and resident memory for an isolated server's metrics (else nothing)."""
    pid = getattr(native, "child_pid", None)
    if not hasattr(native, "child_rss_bytes"):
        return {}
    return {"child_pid": pid, "child_rss_bytes": native.child_rss_bytes()}


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource  # not on Windows; peak instead of current elsewhere

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class _Run:
    """One start of a server: its native object, its watchdog and its samples."""

    def __init__(self, native: core.EmbeddedServer) -> None:
        self.native = native
        self.stop_event = threading.Event()
        self.watchdog: threading.Thread | None = None
        # (monotonic time, requests answered, generated tokens) once a second, for rates
        self.samples: deque[tuple[float, int, int]] = deque(maxlen=600)
        self.last_metrics: ServerMetrics | None = None  # what metrics() answers when not READY


def _join_started(thread: threading.Thread, start_grace_s: float = 1.0) -> None:
    """Joins ``thread``, also when a signal (Ctrl-C) interrupted its ``start()``: the thread may
    be running without ``start()`` having seen it begin, and ``join()`` refuses such a thread."""
    deadline = time.monotonic() + start_grace_s
    while True:
        try:
            thread.join()
            return
        except RuntimeError:  # "cannot join thread before it is started"
            if time.monotonic() > deadline:
                return  # never started: nothing to join
            time.sleep(0.01)


class LlamaServer(DerivedSurface):
    """An embedded llama.cpp server: the OpenAI-compatible HTTP API, served from this process.

    Create one with :meth:`start` (or ``await`` :meth:`astart`)::

        with LlamaServer.start(ServerConfig(model_path="model.gguf")) as server:
            print(server.url)  # http://127.0.0.1:<port>, /v1/chat/completions etc.

    Several servers can run at once, each with its own model and port. The GIL is released
    while models load, while requests are served and while stopping. No signal handlers are
    installed: Ctrl-C raises KeyboardInterrupt as usual and ``with`` stops the server.

    Every method may be called from any thread; ``stop()`` is bounded in every state (during
    a load it cancels the load). If the model fails after the server was ready, the server goes
    FAILED and, with ``ServerConfig.restart`` set, restarts itself (see :mod:`llamaproc.recovery`).
    """

    def __init__(self, config: ServerConfig, *, on_event: Callable[[ServerEvent], None] | None = None) -> None:
        """Prepare a server without starting it; most code calls :meth:`start` instead."""
        if not isinstance(config, ServerConfig):
            raise TypeError(message("server.config_type", type=type(config).__name__))
        self._prepare(config.to_argv(), config=config, use_env=False, memory_limit=config.memory_limit or 0,
                      port=config.port, host=config.host, restart=config.restart, on_event=on_event,
                      allow_unauthenticated_remote=config.allow_unauthenticated_remote,
                      max_request_bytes=config.max_request_bytes, isolation=config.isolation,
                      hard_memory_limit=config.hard_memory_limit)

    def _prepare(self, argv: list[str], *, config: ServerConfig | None, use_env: bool, memory_limit: int,
                 port: int, host: str, restart: RestartPolicy | None,
                 on_event: Callable[[ServerEvent], None] | None, allow_unauthenticated_remote: bool = False,
                 max_request_bytes: int = 32 * 2**20, isolation: str = "none",
                 hard_memory_limit: bool = False) -> None:
        if restart is not None and not isinstance(restart, RestartPolicy):
            raise TypeError(message("server.restart_type", type=type(restart).__name__))
        check_isolation(isolation)
        self._isolation = isolation
        self._hard_memory_limit = hard_memory_limit
        self._config = config
        self._argv = argv
        self._use_env = use_env
        self._memory_limit = memory_limit
        self._allow_unauthenticated_remote = allow_unauthenticated_remote
        self._max_request_bytes = max_request_bytes
        self._port = port
        self._host = host
        self._restart_policy = restart
        self._on_event = on_event
        self._lock = threading.Lock()  # guards _run; never held while loading, waiting or stopping
        self._run: _Run | None = None
        self._events: deque[ServerEvent] = deque(maxlen=1000)
        self._pending_faults: list[Fault] = []  # load faults armed while stopped: for the next start
        self._log_level: int | None = None  # from -v / -lv N in from_args()
        self._verbosity: int | None = None  # llama.cpp's number for them (> 9: responses carry __verbose)
        self._supervisor = Supervisor(restart, self._emit)

    @classmethod
    def from_args(cls, args: Sequence[str], *, use_env: bool = True, timeout: float = 600.0,
                  progress: Callable[[float], None] | None = None, restart: RestartPolicy | None = None,
                  on_event: Callable[[ServerEvent], None] | None = None,
                  allow_unauthenticated_remote: bool = False, max_request_bytes: int = 32 * 2**20,
                  isolation: str = "none") -> LlamaServer:
        """Start a server from a llama-server command line (flags only, no program name).

        An existing ``llama-server -m model.gguf --port 8080 ...`` works unchanged as
        ``LlamaServer.from_args(["-m", "model.gguf", "--port", "8080", ...])``. With
        ``use_env`` (the default, as for llama-server) ``LLAMA_ARG_*`` environment variables
        supply defaults. ``restart`` and ``on_event`` are as for :meth:`start`;
        ``allow_unauthenticated_remote``, ``max_request_bytes`` and ``isolation`` as in
        :class:`ServerConfig`.
        Raises like :meth:`start`. Flags without a model (llama-server's router mode:
        ``--models-dir``, ``--models-preset``) are a :class:`~llamaproc.ModelPool`'s:
        ``ModelPool.from_args``, or :func:`llamaproc.serve_from_args` for either.
        """
        given = [str(a) for a in args]
        argv, log_level = flags.split_process_flags(given, use_env=use_env)
        core.validate_server_args(argv, use_env)
        server = cls.__new__(cls)
        server._prepare(argv, config=None, use_env=use_env, memory_limit=0, port=0, host="127.0.0.1",
                        restart=restart, on_event=on_event, allow_unauthenticated_remote=allow_unauthenticated_remote,
                        max_request_bytes=max_request_bytes, isolation=isolation)
        server._log_level = log_level  # -v / -lv N: applied to the `llamaproc` logger by _start()
        server._verbosity = flags.llama_verbosity(given, use_env=use_env)  # and to the server: __verbose
        server._start(timeout=timeout, progress=progress)
        return server

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def start(cls, config: ServerConfig, *, timeout: float = 600.0,
              progress: Callable[[float], None] | None = None,
              on_event: Callable[[ServerEvent], None] | None = None) -> LlamaServer:
        """Start a server and return it once /health answers 200.

        Args:
            config: What to serve (``config.restart`` sets the restart policy).
            timeout: Seconds to wait for the model to load before giving up.
            progress: Called with the load fraction (0..1), rising, while the model loads.
            on_event: Called with each :class:`~llamaproc.recovery.ServerEvent` (from a
                background thread for events after start; exceptions it raises are logged).

        Raises:
            ConfigError: a flag or value is invalid.
            ModelLoadError: the model file is missing, not GGUF, corrupt or unsupported.
            StartupError: the address cannot be bound (port in use) or the timeout passed.
            ResourceError: the configuration needs more than ``config.memory_limit`` bytes.
            ServerNotRunningError: ``stop()`` was called from another thread meanwhile.
        """
        server = cls(config, on_event=on_event)
        server._start(timeout=timeout, progress=progress)
        return server

    def _start(self, *, timeout: float, progress: Callable[[float], None] | None) -> None:
        with self._lock:
            previous = self._run
            if previous is not None and previous.native.state in (_State.created, _State.starting, _State.ready):
                raise StartupError(message("server.already_running"))
        if previous is not None:
            self._stop_run(previous)  # a FAILED server still holds its port
            # load faults a test armed on the previous run apply to this start
            self._pending_faults += [Fault(FaultKind(kind), times=times, param=param)
                                     for kind, times, param in previous.native.armed_faults()
                                     if FaultKind(kind).acts_on_load]
        flags.apply_log_level(self._config.log_level if self._config is not None else self._log_level)
        _logging.sync_log_level()
        argv = list(self._argv)
        if self._port:
            argv += ["--port", str(self._port)]  # the last --port wins: restart() keeps the port
        make_native: Any = core.EmbeddedServer
        if self._isolation == "process":  # the same interface, served by a child process
            from .isolation.remote_server import IsolatedNative

            make_native = functools.partial(IsolatedNative, hard_limit_bytes=self._memory_limit
                                            if self._hard_memory_limit else 0)
        native = make_native(argv, use_env=self._use_env, memory_limit=self._memory_limit,
                             allow_unauthenticated_remote=self._allow_unauthenticated_remote,
                             max_request_bytes=self._max_request_bytes,
                             verbosity=-1 if self._verbosity is None else self._verbosity)
        try:  # an isolated native object is a running child already: stop it on any way out
            with self._lock:
                if self._run is not previous:
                    raise StartupError(message("server.started_meanwhile"))
                for fault in self._pending_faults:
                    arm_native(native, fault)
                self._pending_faults.clear()
                self._supervisor.new_budget()
                native.start()  # binds; raises ConfigError / ModelLoadError / StartupError right away
                run = self._run = _Run(native)
                _live_servers.add(self)
        except BaseException:  # a start error, or Ctrl-C that arrived while native code ran
            native.stop()
            _logging.flush_logs()
            raise
        try:  # whatever interrupts the start (Ctrl-C included) leaves no server running
            self._emit(ServerEvent(EventKind.STARTED, time.time()))
            self._await_ready(run, timeout, progress)
            self._port = native.port  # restart() binds the same port again
            self._host = native.host
            self._emit(ServerEvent(EventKind.READY, time.time()))
            self._sample(run)  # the first counters: what metrics() shows should it fail at once
            run.watchdog = threading.Thread(target=self._watch, args=(run,), name=f"llamaproc-watchdog:{self._port}",
                                            daemon=True)
            run.watchdog.start()
            _logging.flush_logs()
        except BaseException:
            self._stop_run(run, emit=False)
            raise

    @staticmethod
    def _await_ready(run: _Run, timeout: float, progress: Callable[[float], None] | None) -> None:
        native = run.native
        deadline = time.monotonic() + timeout
        # short waits: Ctrl-C (KeyboardInterrupt) gets through while the model loads
        while not native.wait_ready(0.05 if progress is not None else 0.1):
            if progress is not None:
                progress(native.load_progress)
            if time.monotonic() > deadline:
                raise attach_log_tail(
                    StartupError(message("server.load_timeout", timeout=timeout)),
                    native.log_tail())
        if progress is not None:
            progress(1.0)

    def stop(self) -> None:
        """Stop serving: in-flight requests end (streams close cleanly), every native thread is
        joined and the model and KV cache are freed. Idempotent, callable from any thread, and
        bounded in every state: during a load it cancels the load, during a restart backoff it
        returns at once; otherwise about one second plus the decode step in progress."""
        with self._lock:
            run = self._run
        if run is not None:
            self._stop_run(run)
        _live_servers.discard(self)

    def _stop_run(self, run: _Run, *, emit: bool = True) -> None:
        with self._lock:
            first = not run.stop_event.is_set()
            run.stop_event.set()
        run.native.stop()
        watchdog = run.watchdog
        if watchdog is not None and watchdog is not threading.current_thread():
            _join_started(watchdog)
        _logging.flush_logs()
        if first and emit:
            self._emit(ServerEvent(EventKind.STOPPED, time.time()))

    def restart(self, *, timeout: float = 600.0) -> None:
        """Stop, then start again with the same configuration on the same port."""
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

    # -- failure and recovery -------------------------------------------------------------

    def _emit(self, event: ServerEvent) -> None:
        deliver(self._events, self._on_event, event)

    def events(self) -> list[ServerEvent]:
        """The lifecycle events so far (the last 1000), oldest first."""
        return list(self._events)

    def _failure_error(self, native: core.EmbeddedServer) -> LlamaProcError:
        kind, message = cast("tuple[str, str] | None", native.failure) or ("internal", "the model failed")
        return attach_log_tail(errors.error_of_kind(kind, message), native.log_tail())

    def _watch(self, run: _Run) -> None:
        """The watchdog: samples metrics once a second and hands failures to the supervisor."""
        native = run.native
        seen = 0
        last_sample = 0.0
        while not run.stop_event.is_set():
            seen = native.wait_change(seen, 1.0)
            if run.stop_event.is_set():
                return
            if time.monotonic() - last_sample >= 0.9:
                last_sample = time.monotonic()
                self._sample(run)
            if native.state is not _State.failed:
                continue
            self._supervisor.handle_failure(self._failure_error(native), run.stop_event,
                                            lambda: self._reload(run))
            if native.state is _State.failed:
                return  # gave up (or no policy): stays FAILED until stop()
            seen = 0

    def _reload(self, run: _Run) -> LlamaProcError | None:
        """Restart the model instance of ``run``: None once it serves, else why it failed."""
        native = run.native
        run.samples.clear()  # token counters start again with the new instance
        native.restart_instance()
        while not run.stop_event.is_set():
            try:
                if native.wait_ready(0.25):
                    return None
            except LlamaProcError as exc:
                return exc if native.state is _State.failed else None
        return None

    def _sample(self, run: _Run) -> None:
        native = run.native
        if native.state is not _State.ready:
            return
        m = _record(native.query_metrics(0.25))
        if m is not None:
            run.samples.append((time.monotonic(), sum(native.request_counts.values()), m["generated_tokens"]))
            run.last_metrics = metrics_from_native(m, _record(native.memory) or {})

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
        run = self._run
        if run is None:
            return ServerStatus.STOPPED
        return _STATUS_OF_STATE[run.native.state]

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
        return f"http://{client_host(self._host)}:{self._port}"

    @property
    def serving(self) -> bool:
        """True while READY (direct calls can be served)."""
        run = self._run
        return run is not None and run.native.state is _State.ready

    @property
    def failure(self) -> LlamaProcError | None:
        """Why the server is FAILED (the error ``start()`` would raise), or None."""
        run = self._run
        if run is None or run.native.state is not _State.failed:
            return None
        return self._failure_error(run.native)

    @property
    def abandoned_instances(self) -> int:
        """Model instances of this run that did not stop within their bound and were left to
        finish on their own (their memory is freed when they do); normally 0."""
        run = self._run
        return int(run.native.abandoned_instances) if run is not None else 0

    def log_tail(self, max_lines: int = 40) -> list[str]:
        """The last native log lines of this server, whatever the logging level."""
        run = self._run
        return run.native.log_tail(max_lines) if run is not None else []

    def inject_fault(self, fault: Fault | str, *, times: int = 1, param: int = 0) -> None:
        """Tests only: make this server misbehave through the paths real failures take.

        ``fault`` is a :class:`llamaproc.testing.Fault` (its docs list what each one does), or
        a fault's name with ``times`` and ``param`` (:meth:`Fault.named <llamaproc.faults.Fault.named>`).
        Load faults (load_fails, slow_load, over_memory) on a server that is not running apply
        to its next start; the others need a started server (``ServerNotRunningError``).
        """
        fault = as_fault(fault, times=times, param=param)
        if fault.kind.acts_on_process and self._isolation != "process":
            raise ConfigError(message("isolation.in_process_fault", kind=fault.kind.value))
        with self._lock:
            run = self._run
            if run is None or run.native.state in (_State.stopped, _State.stopping):
                if not fault.kind.acts_on_load:
                    raise ServerNotRunningError(message("server.fault_needs_start", fault=fault.kind.value))
                self._pending_faults.append(fault)
                return
        arm_native(run.native, fault)

    def clear_faults(self) -> None:
        """Tests only: disarm every injected fault (requests held by ``slots_busy`` go on)."""
        self._pending_faults.clear()
        run = self._run
        if run is not None:
            run.native.clear_faults()



    def open_call(self, path: str, body: str, post: bool = True) -> core.DirectCall:
        """Start a direct call (see :class:`llamaproc.direct.target.CallTarget`)."""
        run = self._run
        if run is None or run.native.state is not _State.ready:
            raise ServerNotRunningError(message("server.not_running", status=self.status.value))
        return run.native.call(path, body, post)

    # -- health and metrics ---------------------------------------------------------------

    def health_check(self, timeout: float = 2.0) -> HealthReport:
        """Check the server the way a client and an operator would.

        Rules:
            * UNHEALTHY: not started, stopped, failed (the detail says why), restarting, or
              ``GET /health`` does not answer 200 within ``timeout``.
            * DEGRADED: /health answers, but every slot is busy and requests are waiting for
              one, or the inference loop did not answer a status query within ``timeout``
              (it answers between decode steps; a long prompt batch delays it).
            * HEALTHY: otherwise.
        Never raises for an unhealthy server; the report says why.
        """
        started = time.monotonic()

        def report(status: HealthStatus, detail: str, load: dict[str, int] | None = None) -> HealthReport:
            load = load or {}
            memory = _record(run.native.memory) if run is not None else None
            return HealthReport(status, detail, load.get("n_slots", 0), load.get("n_processing", 0),
                                load.get("n_deferred", 0), time.monotonic() - started,
                                device_metrics((memory or {}).get("devices")))

        run = self._run
        status = self.status
        if run is None or status is not ServerStatus.READY:
            failure = self.failure
            detail = f"server is {status.value}" + (f": {failure}" if failure is not None else "")
            return report(HealthStatus.UNHEALTHY, detail)
        native = run.native
        _logging.sync_log_level()
        try:
            code = http_status(self._host, self._port, "/health", timeout)
        except OSError as exc:
            return report(HealthStatus.UNHEALTHY, f"GET /health failed: {exc}")
        if code != 200:
            return report(HealthStatus.UNHEALTHY, f"GET /health answered HTTP {code}")
        load = cast("dict[str, int] | None", native.query_load(timeout))
        if load is None:
            if self.status is not ServerStatus.READY:
                return report(HealthStatus.UNHEALTHY, f"server is {self.status.value}")
            return report(HealthStatus.DEGRADED, f"the inference loop did not answer within {timeout:g} s")
        if load["n_processing"] >= load["n_slots"] and load["n_deferred"] > 0:
            return report(HealthStatus.DEGRADED,
                          f"all {load['n_slots']} slots busy, {load['n_deferred']} requests waiting", load)
        return report(HealthStatus.HEALTHY,
                      f"serving; {load['n_processing']} of {load['n_slots']} slots busy", load)

    def metrics(self, timeout: float = 5.0, *, window_s: float = 60.0) -> ServerMetrics:
        """Counters, memory and recent rates.

        While READY the inference loop answers (``live=True``). In every other state after the
        first start (FAILED, a restart backoff, STOPPED) it returns the last counters seen while
        READY with ``live=False`` and the current ``restarts``, ``failures`` and request counts.

        Args:
            timeout: Seconds to wait for the inference loop (it answers between decode steps).
            window_s: The span of the ``recent_*`` rates (at least one second).

        Raises:
            ServerNotRunningError: the server was never started.
            WaitTimeoutError: READY, but the loop did not answer within ``timeout``.
        """
        run = self._run
        if run is None:
            raise ServerNotRunningError(message("server.never_started"))
        native = run.native
        counts = dict(native.request_counts)
        restarts, failures = self._supervisor.restarts, self._supervisor.failures
        def last_seen() -> ServerMetrics:
            last = run.last_metrics or ServerMetrics()
            return dataclasses.replace(last, live=False, rss_bytes=_rss_bytes(), recent_requests_per_second=0.0,
                                       recent_tokens_per_second=0.0, window_s=0.0, requests=counts,
                                       restarts=restarts, failures=failures, **child_process_metrics(native))
        if native.state is not _State.ready:
            return last_seen()
        _logging.sync_log_level()
        m = _record(native.query_metrics(timeout))
        if m is None:
            if native.state is not _State.ready:  # it failed (or stopped) while we asked
                return last_seen()
            raise WaitTimeoutError(message("server.loop_timeout", timeout=timeout))
        rates = recent_rates(run.samples, (time.monotonic(), sum(counts.values()), m["generated_tokens"]), window_s)
        metrics = metrics_from_native(m, _record(native.memory) or {},
                                      recent_requests_per_second=rates.requests_per_second,
                                      recent_tokens_per_second=rates.tokens_per_second, window_s=rates.span_s,
                                      requests=counts, restarts=restarts, failures=failures,
                                      **child_process_metrics(native))
        run.last_metrics = metrics
        return metrics

    # -- asyncio twins --------------------------------------------------------------------

    @classmethod
    async def astart(cls, config: ServerConfig, *, timeout: float = 600.0,
                     on_event: Callable[[ServerEvent], None] | None = None) -> LlamaServer:
        """:meth:`start` without blocking the event loop."""
        return await asyncio.to_thread(cls.start, config, timeout=timeout, on_event=on_event)

    async def __aenter__(self) -> LlamaServer:
        if self.status is not ServerStatus.READY:
            await asyncio.to_thread(self._start, timeout=600.0, progress=None)
        return self


__all__ = ["LlamaServer", "ServerStatus", "HealthStatus", "HealthReport", "ServerMetrics"]
