"""One model of a :class:`~llamaproc.ModelPool`, seen as a server: ``pool.server("chat")``.

A :class:`PooledServer` has the public surface of ``LlamaServer``
(:class:`~llamaproc.contract.ServerLike`), so code written for one server runs on a pool's
model unchanged::

    chat = pool.server("chat")
    chat.direct.chat.completions.create(messages=[...])   # routed and loaded like HTTP requests
    chat.metrics().generated_tokens
    chat.stop()                                           # unloads it (the pool keeps serving)

Its ``url`` is the pool's (requests name the model in their body). ``stop()`` unloads the model
(drained: requests in flight finish), ``restart()`` unloads and loads it again, ``with``
loads it on entry and unloads it on exit. Its status follows the model's: LOADED is READY,
LOADING is STARTING, UNLOADED is STOPPED, FAILED is FAILED.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from ..contract import DerivedSurface, HealthReport, HealthStatus, ServerMetrics, ServerStatus
from ..errors import LlamaProcError, ServerNotRunningError
from ..faults import Fault
from ..messages import message
from ..recovery import EventKind, ServerEvent

if TYPE_CHECKING:
    from .._native import core
    from .pool import ModelEvent, ModelPool


def server_event_of(event: ModelEvent) -> ServerEvent | None:
    """The :class:`ServerEvent` a pool's :class:`ModelEvent` means for its model (None for
    events a single server has no counterpart of)."""
    from .pool import ModelStatus

    kind = {"restarting": EventKind.RESTARTING, "gave_up": EventKind.GAVE_UP,
            "model_remove": EventKind.STOPPED}.get(event.kind)
    if kind is None and event.kind == "status_change" and event.status is not None:
        kind = {ModelStatus.LOADING: EventKind.STARTED, ModelStatus.LOADED: EventKind.READY,
                ModelStatus.FAILED: EventKind.FAILED, ModelStatus.UNLOADED: EventKind.STOPPED}.get(event.status)
    if kind is None:
        return None
    return ServerEvent(kind, event.time, attempt=int(event.data.get("attempt", 0) or 0),
                       delay_s=float(event.data.get("delay_s", 0.0) or 0.0), cause=event.error)


class PooledServer(DerivedSurface):
    """One model of a pool with ``LlamaServer``'s surface (see the module docstring)."""

    def __init__(self, pool: ModelPool, name: str) -> None:
        self._pool = weakref.ref(pool)
        self.name = name
        self._events: deque[ServerEvent] = deque(maxlen=1000)

    def _owner(self) -> ModelPool:
        pool = self._pool()
        if pool is None:
            raise ServerNotRunningError(message("pool.server_gone"))
        return pool

    def _record(self, event: ModelEvent) -> None:
        """Called by the pool with each event of this model."""
        mapped = server_event_of(event)
        if mapped is not None:
            self._events.append(mapped)

    # -- state ----------------------------------------------------------------------------

    @property
    def status(self) -> ServerStatus:
        from .pool import ModelStatus

        pool = self._pool()
        if pool is None or not pool.running:
            return ServerStatus.STOPPED
        try:
            status = pool.model(self.name).status
        except LlamaProcError:
            return ServerStatus.STOPPED
        return {ModelStatus.LOADED: ServerStatus.READY, ModelStatus.LOADING: ServerStatus.STARTING,
                ModelStatus.FAILED: ServerStatus.FAILED}.get(status, ServerStatus.STOPPED)

    @property
    def serving(self) -> bool:
        """True while the pool runs: a call to an unloaded model loads it first."""
        pool = self._pool()
        return pool is not None and pool.running

    @property
    def url(self) -> str:
        """The pool's URL (requests name this model in their body's ``"model"``)."""
        return self._owner().url

    @property
    def host(self) -> str:
        return self._owner().host

    @property
    def port(self) -> int:
        return self._owner().port

    @property
    def failure(self) -> LlamaProcError | None:
        """Why the model failed, or None."""
        pool = self._pool()
        if pool is None or not pool.running:
            return None
        try:
            return pool.model(self.name).failure
        except LlamaProcError:
            return None

    def events(self) -> list[ServerEvent]:
        """This model's events since this object was made (the last 1000), as ServerEvents."""
        return list(self._events)

    def log_tail(self, max_lines: int = 40) -> list[str]:
        """The pool's last native log lines (its models share one log)."""
        return self._owner().log_tail(max_lines)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, *, timeout: float = 600.0) -> PooledServer:
        """Load the model (returns at once when it is loaded)."""
        self._owner().load(self.name, timeout=timeout)
        return self

    def stop(self) -> None:
        """Unload the model (requests in flight finish first); nothing when it is not loaded."""
        pool = self._pool()
        if pool is not None and pool.running:
            pool.unload(self.name)

    def restart(self, *, timeout: float = 600.0) -> None:
        """Unload, then load the model again."""
        self.stop()
        self._owner().load(self.name, timeout=timeout)

    def __enter__(self) -> PooledServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> PooledServer:
        return await asyncio.to_thread(self.start)

    def __repr__(self) -> str:
        return f"<PooledServer {self.name!r} {self.status.value}>"

    # -- health and metrics ---------------------------------------------------------------

    def health_check(self, timeout: float = 2.0) -> HealthReport:
        """UNHEALTHY unless the model is loaded (the detail says its status or failure) or the
        pool's ``/health`` does not answer; DEGRADED when every slot is busy and requests wait,
        or its loop did not answer within ``timeout``; HEALTHY otherwise. Never raises."""
        started = time.monotonic()
        pool = self._pool()
        status = self.status
        if pool is None or status is not ServerStatus.READY:
            failure = self.failure
            detail = f"model '{self.name}' is {status.value}" + (f": {failure}" if failure is not None else "")
            return HealthReport(HealthStatus.UNHEALTHY, detail, latency_s=time.monotonic() - started)
        pool_report = pool.health_check(timeout)
        if pool_report.status is HealthStatus.UNHEALTHY:
            return pool_report
        m = cast("dict[str, Any] | None", pool._native.query_metrics(self.name, timeout))
        if m is None:
            return HealthReport(HealthStatus.DEGRADED, f"model '{self.name}': the inference loop did not answer "
                                f"within {timeout:g} s", latency_s=time.monotonic() - started)
        load = m["load"]
        slots, busy, waiting = load["n_slots"], load["n_processing"], load["n_deferred"]
        if busy >= slots and waiting > 0:
            return HealthReport(HealthStatus.DEGRADED, f"all {slots} slots busy, {waiting} requests waiting",
                                slots, busy, waiting, time.monotonic() - started)
        return HealthReport(HealthStatus.HEALTHY, f"serving; {busy} of {slots} slots busy", slots, busy, waiting,
                            time.monotonic() - started)

    def metrics(self, timeout: float = 5.0, *, window_s: float = 60.0) -> ServerMetrics:
        """The model's counters and memory (request counts are the pool's). When the model is
        not loaded: its last counters seen (``live=False``). ``window_s`` is accepted for the
        common surface; the pool does not sample rates (they are 0.0).

        Raises:
            ModelNotFoundError: the pool has no such model.
            ServerNotRunningError: the pool is not running.
            WaitTimeoutError: its inference loop did not answer within ``timeout``.
        """
        return self._owner().metrics(self.name, timeout)

    # -- faults ---------------------------------------------------------------------------

    def inject_fault(self, fault: Fault | str, *, times: int = 1, param: int = 0) -> None:
        """Tests only: ``pool.inject_fault(name, ...)`` for this model."""
        self._owner().inject_fault(self.name, fault, times=times, param=param)

    def clear_faults(self) -> None:
        """Tests only: disarm the pool's faults (of every model)."""
        self._owner().clear_faults()

    # -- direct calls ---------------------------------------------------------------------

    def open_call(self, path: str, body: str, post: bool = True) -> core.DirectCall:
        """Start a direct call naming this model (see :class:`llamaproc.direct.target.CallTarget`)."""
        native = self._owner()._require_running()  # (pool.server() checked the name once)
        data = json.loads(body) if body else {}
        data["model"] = self.name
        call: core.DirectCall = native.call(path, json.dumps(data, ensure_ascii=False), post)
        return call




__all__ = ["PooledServer"]
