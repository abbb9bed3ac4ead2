"""ModelPool: several models behind one HTTP port, in this process.

llama-server's router mode runs each model as a child process behind a proxy; a ModelPool
runs each loaded model as a llama.cpp instance on native threads of this process, behind one
HTTP front that serves the router's API unchanged (``GET /models``, ``POST /models/load`` and
``/models/unload``, ``GET /models/sse``, every inference route chosen by the body's
``"model"``)::

    pool = ModelPool.start(PoolConfig(
        models={"chat": ModelSpec(model_path="a.gguf", aliases=("default",)),
                "embed": ModelSpec(model_path="e.gguf", embeddings=True, pinned=True)},
        max_loaded=2, memory_budget=12 * 2**30, idle_unload_s=600))
    pool.url                          # http://127.0.0.1:<port>, OpenAI-compatible
    pool.swap("chat", ModelSpec(model_path="a-v2.gguf"))   # no request fails

Beyond llama-server: unloading drains (requests in flight finish), a byte budget beside the
model count, swaps with zero failed requests, pool-level idle unload, per-model restart
policies, and the same events in Python as on ``/models/sse``.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import enum
import json
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, cast

from .. import _logging, errors, flags
from ..config import check_isolation
from ..contract import HealthReport, HealthStatus, ServerMetrics, client_host, http_status
from ..direct.client import AsyncDirectClient, DirectClient
from ..errors import ConfigError, LlamaProcError, ServerNotRunningError, WaitTimeoutError
from ..faults import Fault, as_fault, native_args
from ..messages import message
from ..isolation.remote_pool import IsolatedPool, make_pool
from ..recovery import RestartBudget, RestartPolicy
from ..server import child_process_metrics, metrics_from_native
from . import presets
from .config import ModelSpec, PoolConfig, native_model
from .pooled_server import PooledServer

_log = logging.getLogger("llamaproc")


class ModelStatus(enum.Enum):
    """Where one model of a pool is (``GET /models`` shows the same values, with ``failed``
    as ``unloaded`` plus ``"failed": true``)."""

    UNLOADED = "unloaded"
    LOADING = "loading"
    LOADED = "loaded"
    FAILED = "failed"  #: its last load failed, or it failed while serving; ``failure`` says why


@dataclass(frozen=True)
class PoolModelInfo:
    """One model of a pool, as :meth:`ModelPool.models` reports it.

    Attributes:
        name: The name requests use (also any of ``aliases``).
        status: UNLOADED, LOADING, LOADED or FAILED.
        source: Where it came from: "api" (PoolConfig.models / add()), "models_dir", "preset".
        failure: Why it failed (the error a load would raise), or None.
        memory_estimate: Bytes the pool reserves for it while it is loaded (its prompt cache's
            cap included): what an earlier load of the same file and flags held, else
            llama.cpp's dry-run estimate; once loaded, what it holds.
        memory_measured: True when ``memory_estimate`` comes from a measured load, False while
            it is only llama.cpp's estimate (:mod:`llamaproc.memory`).
        memory_bytes: Bytes it holds now, as llama.cpp measured them (0 unless loaded).
        last_used: ``time.time()`` of its last request (0.0: never).
        active_requests: Requests in flight on it.
        loads: How often it was loaded since the pool started.
    """

    name: str
    aliases: tuple[str, ...]
    tags: tuple[str, ...]
    status: ModelStatus
    source: str
    model_path: str
    args: tuple[str, ...]
    failure: LlamaProcError | None
    memory_estimate: int
    memory_bytes: int
    memory_measured: bool
    last_used: float
    active_requests: int
    pinned: bool
    load_progress: float
    loads: int


class SwapMode(str, enum.Enum):
    """How :meth:`ModelPool.swap` replaces a model (a ``str``: ``"hot"`` compares equal)."""

    AUTO = "auto"  #: hot when the budget and ``max_loaded`` allow it, else cold
    HOT = "hot"  #: load the new model beside the old one, flip, drain the old one
    COLD = "cold"  #: park new requests, drain and free the old model, load the new one


class ModelEventKind(str, enum.Enum):
    """What a :class:`ModelEvent` reports (a ``str``: ``"status_change"`` compares equal)."""

    STATUS_CHANGE = "status_change"
    MODEL_REMOVE = "model_remove"
    RESTARTING = "restarting"
    GAVE_UP = "gave_up"
    OTHER = ""  #: an event this version does not know (its name is in ``data``)


@dataclass(frozen=True)
class SwapReport:
    """How a :meth:`ModelPool.swap` went.

    Attributes:
        mode: "hot" (the new model loaded beside the old one, then requests flipped to it) or
            "cold" (requests waited while the old model drained and freed and the new loaded).
        load_s: Seconds loading the new model took.
        drain_s: Seconds from the flip until the old model's last request finished and its
            memory was freed (cold: before the load).
        finished_on_old: Requests in flight on the old model at the flip; all of them finished
            there.
    """

    mode: SwapMode
    load_s: float
    drain_s: float
    finished_on_old: int


@dataclass(frozen=True)
class SourcesReload:
    """What :meth:`ModelPool.reload_sources` changed (model names)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]  #: drained, then removed
    changed: tuple[str, ...]  #: swapped if loaded, else updated for their next load


@dataclass(frozen=True)
class ModelEvent:
    """One status event, as ``GET /models/sse`` sends it.

    Attributes:
        model: The model's name.
        kind: What happened (:class:`ModelEventKind`; compares equal to its string value).
        status: The model's status after the event (None for model_remove).
        time: ``time.time()`` when Python received it.
        error: The failure's message (a FAILED status).
        data: The event's JSON data as the SSE stream carries it.
    """

    model: str
    kind: ModelEventKind
    status: ModelStatus | None
    time: float
    error: str = ""
    data: dict[str, Any] = field(default_factory=dict, compare=False)


_live_pools: weakref.WeakSet[ModelPool] = weakref.WeakSet()


def _raise_located(exc: ConfigError, preset: str | None) -> NoReturn:
    located = presets.locate(exc, preset)
    if located is exc:
        raise exc
    raise located from None


class ModelPool:
    """Several llama.cpp models served behind one HTTP port, in this process.

    Start one with :meth:`start` (or ``await`` :meth:`astart`, or :meth:`from_args` with
    llama-server's router flags). Every method may be called from any thread; methods that
    load, drain or wait release the GIL. ``with`` / ``async with`` stop the pool on exit.
    """

    def __init__(self, config: PoolConfig, *, on_event: Callable[[ModelEvent], None] | None = None) -> None:
        """Prepare a pool without starting it; most code calls :meth:`start` instead."""
        if not isinstance(config, PoolConfig):
            raise TypeError(message("pool.config_type", type=type(config).__name__))
        self._prepare(config.router_argv(), config=config, use_env=False, on_event=on_event)

    def _prepare(self, router_argv: list[str], *, config: PoolConfig | None, use_env: bool,
                 on_event: Callable[[ModelEvent], None] | None, default_model: str | None = None,
                 memory_budget: int | None = None, idle_unload_s: float | None = None,
                 restart: RestartPolicy | None = None, allow_unauthenticated_remote: bool = False,
                 read_cache: bool = False, verbosity: int | None = None,
                 extra_models: Sequence[dict[str, object]] = (), isolation: str = "none") -> None:
        self._config = config
        isolation = config.isolation if config else isolation
        check_isolation(isolation)
        models = [spec.native(name) for name, spec in (config.models.items() if config else ())] + list(extra_models)
        self._preset_path = (str(config.models_preset) if config and config.models_preset
                             else _flag_value(router_argv, "--models-preset"))
        self._native = make_pool(isolation)(  # "process": the same interface, in a child process
            router_argv, use_env, models,
            memory_budget=(config.memory_budget if config else memory_budget) or 0,
            idle_unload_s=(config.idle_unload_s if config else idle_unload_s) or 0.0,
            default_model=(config.default_model if config else default_model) or "",
            allow_unauthenticated_remote=config.allow_unauthenticated_remote if config else allow_unauthenticated_remote,
            max_request_bytes=config.max_request_bytes if config else 32 * 2**20,
            decode_gate=config.decode_gate if config else True,
            read_cache=config.use_model_cache if config else read_cache,
            verbosity=-1 if verbosity is None else verbosity)
        self._default_restart = config.restart if config else restart
        self._restart_of: dict[str, RestartPolicy | None] = {}
        if config is not None:
            for name, spec in config.models.items():
                self._restart_of[name] = spec.restart
        self._on_event = on_event
        self._events: deque[ModelEvent] = deque(maxlen=1000)
        self._events_cv = threading.Condition()
        self._budgets: dict[str, RestartBudget] = {}
        self._served: set[str] = set()  # models that reached LOADED since their last failure
        self._stopped = threading.Event()
        self._servers: dict[str, PooledServer] = {}
        self._last_metrics: dict[str, ServerMetrics] = {}
        self._subscription = self._native.subscribe()
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def start(cls, config: PoolConfig, *, timeout: float = 600.0,
              on_event: Callable[[ModelEvent], None] | None = None) -> ModelPool:
        """Bind the port and load the models marked ``load_on_startup``; return once they
        serve (or failed: see :meth:`models`).

        Raises:
            ConfigError: a model flag, preset file (with ``file:line``), name or alias clash.
            StartupError: the port cannot be bound.
        """
        pool = cls(config, on_event=on_event)
        pool._start(timeout)
        return pool

    @classmethod
    def from_args(cls, args: Sequence[str], *, use_env: bool = True, timeout: float = 600.0,
                  default_model: str | None = None, memory_budget: int | None = None,
                  idle_unload_s: float | None = None, restart: RestartPolicy | None = None,
                  on_event: Callable[[ModelEvent], None] | None = None,
                  allow_unauthenticated_remote: bool = False, read_cache: bool = True,
                  model_files: Mapping[str, str | os.PathLike[str]] | None = None,
                  isolation: str = "none") -> ModelPool:
        """Start a pool from llama-server router flags: ``--models-dir D``, ``--models-preset
        F``, ``--models-max N``, ``--no-models-autoload``, ``--host``, ``--port``, ... and
        defaults for every model (``-c 4096``, ``--temp 0`` ...). No ``-m``: that is a single
        model (:meth:`LlamaServer.from_args`). As llama-server does, it also serves the models of
        llama.cpp's local model cache (``read_cache``; offline, nothing is downloaded).
        ``model_files`` adds models beside those sources (name -> GGUF file, with the router's
        flags as their defaults), loaded when the pool starts. ``isolation`` as in
        :class:`PoolConfig`."""
        given = [str(a) for a in args]
        argv, _log_level = flags.split_process_flags(given, use_env=use_env)
        pool = cls.__new__(cls)
        pool._prepare(argv, config=None, use_env=use_env, on_event=on_event, default_model=default_model,
                      extra_models=[native_model(name, ["--model", os.fspath(path)], load_on_startup=True)
                                    for name, path in (model_files or {}).items()],
                      memory_budget=memory_budget, idle_unload_s=idle_unload_s, restart=restart,
                      allow_unauthenticated_remote=allow_unauthenticated_remote, read_cache=read_cache,
                      verbosity=flags.llama_verbosity(given, use_env=use_env),  # > 9: responses carry __verbose
                      isolation=isolation)
        pool._start(timeout)
        return pool

    def _start(self, timeout: float) -> None:
        _logging.sync_log_level()
        try:
            self._native.start()
        except ConfigError as exc:
            _raise_located(exc, self._preset_path)
        _live_pools.add(self)
        self._watcher = threading.Thread(target=self._watch, name="llamaproc-pool-events", daemon=True)
        self._watcher.start()
        deadline = time.monotonic() + timeout
        startup = [m for m in self._records() if m["status"] == "loading"]
        for m in startup:
            try:
                self._native.load(m["name"], max(0.0, deadline - time.monotonic()))
            except LlamaProcError as exc:
                _log.warning("model pool: model %r did not load at startup: %s", m["name"], exc)

    def stop(self) -> None:
        """End every request (streams end cleanly), free every model, join every native thread.
        Idempotent; returns within about two seconds plus one decode step."""
        self._stopped.set()
        self._native.stop()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout=5)
        _live_pools.discard(self)

    def __enter__(self) -> ModelPool:
        """Starts a pool made with ``ModelPool(config)`` (as ``with LlamaServer(config)`` starts
        a server); one from :meth:`start` is already running."""
        if self._watcher is None:
            self._start(600.0)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ModelPool {'running at ' + self.url if self.running else 'stopped'}>"

    @property
    def running(self) -> bool:
        return bool(self._native.running)

    @property
    def port(self) -> int:
        return int(self._native.port)

    @property
    def host(self) -> str:
        return str(self._native.host)

    @property
    def url(self) -> str:
        """``http://host:port`` of the pool's HTTP front (no trailing slash)."""
        return f"http://{client_host(self.host)}:{self.port}"

    def _records(self) -> list[dict[str, Any]]:
        """The native pool's model records (dicts of plain values)."""
        return cast(list[dict[str, Any]], self._native.models())

    def _require_running(self) -> Any:
        if not self._native.running:
            raise ServerNotRunningError(message("pool.not_running"))
        return self._native

    # -- models ---------------------------------------------------------------------------

    def models(self) -> list[PoolModelInfo]:
        """Every model of the pool, sorted by name."""
        out = []
        for m in self._records():
            failure = errors.error_of_kind(*m["failure"]) if m["failure"] is not None else None
            status = ModelStatus.FAILED if m["failed"] else ModelStatus(m["status"])
            memory = m["memory"] or {}
            out.append(PoolModelInfo(
                name=m["name"], aliases=tuple(m["aliases"]), tags=tuple(m["tags"]), status=status,
                source=m["source"], model_path=m["model_path"], args=tuple(m["args"]), failure=failure,
                memory_estimate=m["memory_estimate"], memory_measured=m["memory_measured"],
                memory_bytes=sum(memory.get(k, 0) for k in ("model", "context", "compute", "prompt_cache_limit")),
                last_used=m["last_used"],
                active_requests=m["active_requests"], pinned=m["pinned"], load_progress=m["load_progress"],
                loads=m["loads"]))
        return out

    def model(self, name: str) -> PoolModelInfo:
        """One model, by name or alias. Raises ModelNotFoundError."""
        for m in self.models():
            if name == m.name or name in m.aliases:
                return m
        raise errors.ModelNotFoundError(message("pool.model_not_found", name=name))

    def load(self, name: str, *, timeout: float = 600.0) -> None:
        """Load ``name`` (or an alias) and return once it serves, unloading idle models (least
        recently used first) to make room. Returns at once if it is loaded.

        Raises:
            ModelNotFoundError, ResourceError (it can never fit the budget), ModelLoadError (the
            load failed), WaitTimeoutError (no room freed up, or the load took longer).
        """
        self._require_running().load(name, timeout)

    def unload(self, name: str, *, drain_timeout: float | None = None, wait: bool = True) -> bool:
        """Unload ``name``: new requests for it wait for (or trigger) the next load, requests in
        flight finish first — up to ``drain_timeout`` seconds (None: the model's
        ``stop_timeout``), after which they are ended. With ``wait``, returns once its memory is
        freed. False if it was not loaded."""
        return bool(self._require_running().unload(name, -1.0 if drain_timeout is None else drain_timeout, wait))

    def add(self, name: str, spec: ModelSpec) -> None:
        """Add a model (it loads on first use, or now with ``spec.load_on_startup``).
        Raises ConfigError for a name or alias already in use or invalid flags,
        ModelLoadError for a file that cannot be read."""
        if not isinstance(spec, ModelSpec):
            raise TypeError(message("pool.spec_type", type=type(spec).__name__))
        self._require_running().add(spec.native(name))
        self._restart_of[name] = spec.restart

    def remove(self, name: str, *, drain_timeout: float | None = None) -> None:
        """Remove a model (by name): drained and freed if loaded; later requests get 400
        "not found"."""
        self._require_running().remove(name, -1.0 if drain_timeout is None else drain_timeout)

    def swap(self, name: str, spec: ModelSpec, *, mode: SwapMode | str = SwapMode.AUTO,
             timeout: float = 600.0) -> SwapReport:
        """Serve ``name`` from ``spec`` from now on, with no failed request.

        ``mode="hot"`` loads the new model beside the old one, flips new requests to it and
        lets the old one drain; ``"cold"`` parks new requests, drains and frees the old model,
        then loads the new one (for when both do not fit); ``"auto"`` picks hot when the
        budget and ``max_loaded`` allow it. The name, aliases and pinning stay; the new file
        must be a new file (write elsewhere, then rename), never the old one rewritten.

        Raises:
            ModelLoadError: the new model did not load; the old one still serves (a cold swap
                reloaded it).
            ResourceError: the new model can never fit, or ``mode="hot"`` found no room.
        """
        if not isinstance(spec, ModelSpec):
            raise TypeError(message("pool.spec_type", type=type(spec).__name__))
        try:
            swap_mode = SwapMode(mode)
        except ValueError:
            raise ConfigError(message("pool.bad_mode", mode=mode)) from None
        r = cast(dict[str, Any], self._require_running().swap(name, spec.to_argv(), swap_mode.value, timeout))
        return SwapReport(mode=SwapMode(r["mode"]), load_s=r["load_s"], drain_s=r["drain_s"],
                          finished_on_old=r["finished_on_old"])

    def reload_sources(self) -> SourcesReload:
        """Read ``models_dir`` and ``models_preset`` again (``GET /models?reload=1`` does the
        same): new models are added, vanished ones drained and removed, changed ones swapped
        when loaded (no failed request) or updated for their next load. Raises ConfigError for
        a preset that no longer parses; the running list then stays as it was."""
        try:
            added, removed, changed = self._require_running().reload_sources()
        except ConfigError as exc:
            _raise_located(exc, self._preset_path)
        return SourcesReload(tuple(added), tuple(removed), tuple(changed))

    # -- events and recovery --------------------------------------------------------------

    def events(self, *, timeout: float = 0.0) -> list[ModelEvent]:
        """Events received since the last call (the oldest first, at most 1000 kept), waiting
        up to ``timeout`` seconds for the first one."""
        with self._events_cv:
            if not self._events and timeout > 0:
                self._events_cv.wait(timeout)
            out = list(self._events)
            self._events.clear()
        return out

    def _emit(self, event: ModelEvent) -> None:
        with self._events_cv:
            self._events.append(event)
            self._events_cv.notify_all()
        with self._lock:
            server = self._servers.get(event.model)
        if server is not None:
            server._record(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # a broken callback must not stop event delivery
                _log.exception("model pool: on_event callback failed")

    def _watch(self) -> None:
        """Delivers native events to Python and restarts models that failed while serving."""
        while True:
            text = self._subscription.pop(0.5)
            if text is None:
                if self._subscription.closed or self._stopped.is_set():
                    return
                continue
            raw = json.loads(text)
            data = raw.get("data") or {}
            status = None
            if "status" in data:
                status = ModelStatus.FAILED if data.get("failed") else ModelStatus(data["status"])
            try:
                kind = ModelEventKind(raw.get("event", ""))
            except ValueError:
                kind, data = ModelEventKind.OTHER, {**data, "event": raw.get("event", "")}
            event = ModelEvent(model=raw.get("model", ""), kind=kind, status=status,
                               time=time.time(), error=data.get("error", ""), data=data)
            self._emit(event)
            if status is ModelStatus.LOADED:
                self._served.add(event.model)
            elif status is ModelStatus.FAILED and event.model in self._served:
                self._served.discard(event.model)
                self._recover(event.model)

    def _recover(self, name: str) -> None:
        policy = self._restart_of.get(name) or self._default_restart
        if policy is None or self._stopped.is_set():
            return
        budget = self._budgets.setdefault(name, RestartBudget(policy))
        attempt = budget.next_attempt()
        if attempt is None:
            self._emit(ModelEvent(model=name, kind=ModelEventKind.GAVE_UP, status=ModelStatus.FAILED, time=time.time()))
            return
        delay = policy.delay(attempt)
        budget.record()
        self._emit(ModelEvent(model=name, kind=ModelEventKind.RESTARTING, status=ModelStatus.FAILED, time=time.time(),
                              data={"attempt": attempt, "delay_s": delay}))

        def reload() -> None:
            if self._stopped.wait(delay):
                return
            try:
                self._native.load(name, 600.0)
            except LlamaProcError as exc:
                _log.warning("model pool: restarting model %r failed: %s", name, exc)

        threading.Thread(target=reload, name=f"llamaproc-pool-restart-{name}", daemon=True).start()

    # -- direct calls ---------------------------------------------------------------------

    def server(self, name: str) -> PooledServer:
        """Model ``name`` seen as a server (``LlamaServer``'s surface: status, health_check,
        metrics, direct, openai_client, stop = unload, ...): see :class:`PooledServer`.
        Raises ModelNotFoundError for a name the pool does not know."""
        self.model(name)
        with self._lock:
            return self._servers.setdefault(name, PooledServer(self, name))

    def direct(self, model: str) -> DirectClient:
        """In-process calls to one model (``pool.direct("chat").chat.completions.create(...)``),
        routed and loaded exactly like HTTP requests naming that model. Raises
        ModelNotFoundError for a name the pool does not know."""
        return self.server(model).direct

    def adirect(self, model: str) -> AsyncDirectClient:
        """:meth:`direct` with ``async def`` methods."""
        return self.server(model).adirect


    # -- health and metrics ---------------------------------------------------------------

    def health_check(self, timeout: float = 2.0) -> HealthReport:
        """UNHEALTHY when the pool is not running or ``GET /health`` does not answer 200;
        DEGRADED when a model failed (the detail names it); HEALTHY otherwise. Never raises."""
        started = time.monotonic()

        def report(status: HealthStatus, detail: str) -> HealthReport:
            return HealthReport(status, detail, latency_s=time.monotonic() - started)

        if not self.running:
            return report(HealthStatus.UNHEALTHY, "the pool is not running")
        try:
            code = http_status(self.host, self.port, "/health", timeout)
        except OSError as exc:
            return report(HealthStatus.UNHEALTHY, f"GET /health failed: {exc}")
        if code != 200:
            return report(HealthStatus.UNHEALTHY, f"GET /health answered HTTP {code}")
        models = self.models()
        failed = [m for m in models if m.status is ModelStatus.FAILED]
        if failed:
            return report(HealthStatus.DEGRADED, "failed: " + "; ".join(f"{m.name}: {m.failure}" for m in failed))
        loaded = sum(m.status is ModelStatus.LOADED for m in models)
        return report(HealthStatus.HEALTHY, f"serving; {loaded} of {len(models)} models loaded")

    def metrics(self, name: str, timeout: float = 5.0) -> ServerMetrics:
        """Counters and memory of one model (request counts are the pool's). While it is
        loaded its loop answers (``live=True``); otherwise the last counters seen while it was
        (``live=False``; zeros if it never loaded).

        Raises ModelNotFoundError, ServerNotRunningError (the pool is not running), or
        WaitTimeoutError (its inference loop did not answer within ``timeout``)."""
        native = self._require_running()
        info = self.model(name)
        counts = dict(native.request_counts)
        def last_seen() -> ServerMetrics:
            last = self._last_metrics.get(info.name) or ServerMetrics()
            return dataclasses.replace(last, live=False, requests=counts)
        if info.status is not ModelStatus.LOADED:
            return last_seen()
        m = native.query_metrics(info.name, timeout)
        if m is None:
            if self.model(name).status is not ModelStatus.LOADED:  # unloaded or failed while we asked
                return last_seen()
            raise WaitTimeoutError(message("pool.loop_timeout", model=info.name, timeout=timeout))
        memory = next((x["memory"] for x in self._records() if x["name"] == info.name), None) or {}
        metrics = metrics_from_native(m, memory, requests=counts, **child_process_metrics(native))
        self._last_metrics[info.name] = metrics
        return metrics

    @property
    def reserved_bytes(self) -> int:
        """Bytes reserved now by the models loading, serving or being freed."""
        return int(self._native.reserved_bytes)

    @property
    def instances_alive(self) -> int:
        """Model instances that exist now (loading, serving, draining or being freed)."""
        return int(self._native.instances_alive)

    def log_tail(self, max_lines: int = 40) -> list[str]:
        """The last native log lines of the pool's models."""
        return list(self._native.log_tail(max_lines))

    def inject_fault(self, name: str, fault: Fault | str, *, times: int = 1, param: int = 0) -> None:
        """Tests only: make the pool misbehave for model ``name`` (see :mod:`llamaproc.faults`).

        Model faults (loop_dies, assert_in_request, load_fails, slow_load, over_memory) act on
        that model; ``loop_dies`` kills its inference loop now if it is loaded. Request faults
        (error, slow_tokens, cut_stream, slots_busy) act on HTTP requests to every model and on
        direct calls to ``name``. ``fault`` and ``times``/``param`` as for
        ``LlamaServer.inject_fault``. The process faults (native_abort, process_killed,
        process_hangs) act on an isolated pool's child, that is on every model."""
        armed = as_fault(fault, times=times, param=param)
        if armed.kind.acts_on_process and not isinstance(self._native, IsolatedPool):
            raise ConfigError(message("isolation.in_process_fault", kind=armed.kind.value))
        self._native.inject_fault(name, *native_args(armed))  # or ModelNotFoundError

    def clear_faults(self) -> None:
        """Tests only: disarm every fault of the pool and its models."""
        self._native.clear_faults()

    # -- asyncio twins --------------------------------------------------------------------

    @classmethod
    async def astart(cls, config: PoolConfig, *, timeout: float = 600.0,
                     on_event: Callable[[ModelEvent], None] | None = None) -> ModelPool:
        """:meth:`start` without blocking the event loop."""
        return await asyncio.to_thread(cls.start, config, timeout=timeout, on_event=on_event)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def aload(self, name: str, *, timeout: float = 600.0) -> None:
        await asyncio.to_thread(self.load, name, timeout=timeout)

    async def aunload(self, name: str, *, drain_timeout: float | None = None, wait: bool = True) -> bool:
        return await asyncio.to_thread(self.unload, name, drain_timeout=drain_timeout, wait=wait)

    async def aswap(self, name: str, spec: ModelSpec, *, mode: SwapMode | str = SwapMode.AUTO,
                    timeout: float = 600.0) -> SwapReport:
        return await asyncio.to_thread(self.swap, name, spec, mode=mode, timeout=timeout)

    async def aevents(self, *, timeout: float = 0.0) -> list[ModelEvent]:
        return await asyncio.to_thread(self.events, timeout=timeout)

    async def ahealth_check(self, timeout: float = 2.0) -> HealthReport:
        return await asyncio.to_thread(self.health_check, timeout)

    async def ametrics(self, name: str, timeout: float = 5.0) -> ServerMetrics:
        return await asyncio.to_thread(self.metrics, name, timeout)

    async def __aenter__(self) -> ModelPool:
        if self._watcher is None:
            await asyncio.to_thread(self._start, 600.0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.astop()


def _flag_value(argv: Sequence[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def serve_from_args(args: Sequence[str], *, use_env: bool = True, timeout: float = 600.0,
                    read_cache: bool = True) -> Any:
    """What ``llama-server ARGS`` runs, in this process: a :class:`LlamaServer` when the flags
    name a model (``-m``, or ``LLAMA_ARG_MODEL`` with ``use_env``), else a :class:`ModelPool`
    (llama-server's router mode: ``--models-dir``, ``--models-preset``, and with ``read_cache``
    llama.cpp's local model cache)."""
    argv = [str(a) for a in args]
    if flags.serve_mode(argv, use_env=use_env) is flags.ServeMode.SERVER:
        from ..server import LlamaServer

        return LlamaServer.from_args(argv, use_env=use_env, timeout=timeout)
    return ModelPool.from_args(argv, use_env=use_env, timeout=timeout, read_cache=read_cache)


@atexit.register
def stop_all() -> None:
    """Stop every pool still running (at interpreter exit)."""
    for pool in list(_live_pools):
        try:
            pool.stop()
        except Exception:  # pragma: no cover - best effort at exit
            _log.exception("stopping a model pool at exit failed")


__all__ = ["ModelPool", "ModelStatus", "PoolModelInfo", "SwapReport", "SwapMode", "SourcesReload", "ModelEvent",
           "ModelEventKind", "PooledServer", "serve_from_args"]
