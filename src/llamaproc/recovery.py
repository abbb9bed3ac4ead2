"""Failure and automatic recovery: the restart policy and the events a host can observe.

A server whose model instance fails after it was ready (the inference loop died, a native
assertion hit a request, a reload failed) goes FAILED: ``/health`` answers 503, new and
waiting requests get a prompt 503 error body, streams in flight end with an error chunk.
With a :class:`RestartPolicy` a watchdog then reloads the model on the same port, with
exponential backoff, until the policy's budget is spent.

Events, in order, for one failure that recovers::

    FAILED(cause) -> RESTARTING(attempt=1, delay_s) -> STARTED -> READY

and when the budget is spent (or there is no policy): ``FAILED(cause) -> GAVE_UP`` (without a
policy, only FAILED). A start emits ``STARTED -> READY``; ``stop()`` emits ``STOPPED``.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import ConfigError, LlamaProcError
from .messages import message


@dataclass(frozen=True, kw_only=True)
class RestartPolicy:
    """When and how often a failed server is restarted.

    Attributes:
        max_restarts: Restarts allowed within ``window_s``; one more failure gives up.
        window_s: The sliding window, in seconds, over which restarts are counted.
        backoff_s: ``(first, cap)``: the delay before restart ``n`` is ``first * 2**(n-1)``,
            at most ``cap`` seconds. Restarts counted in the window set ``n``.
    """

    max_restarts: int = 5
    window_s: float = 300.0
    backoff_s: tuple[float, float] = (0.5, 30.0)

    def __post_init__(self) -> None:
        if isinstance(self.max_restarts, bool) or not isinstance(self.max_restarts, int) or self.max_restarts < 0:
            raise ConfigError(message("restart.max_restarts", value=self.max_restarts))
        if not _finite_nonneg(self.window_s) or self.window_s <= 0:
            raise ConfigError(message("restart.window_s", value=self.window_s))
        backoff = tuple(self.backoff_s) if isinstance(self.backoff_s, (tuple, list)) else None
        if backoff is None or len(backoff) != 2 or not all(_finite_nonneg(b) for b in backoff) or backoff[0] > backoff[1]:
            raise ConfigError(message("restart.backoff_s", value=self.backoff_s))
        object.__setattr__(self, "backoff_s", (float(backoff[0]), float(backoff[1])))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart number ``attempt`` (1-based)."""
        first, cap = self.backoff_s
        return float(min(cap, first * 2 ** max(0, attempt - 1)))


def _finite_nonneg(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


class EventKind(enum.Enum):
    """What happened to a server (see the module docstring for the order)."""

    STARTED = "started"  #: bound; the model is loading
    READY = "ready"  #: the model serves requests
    FAILED = "failed"  #: the model failed; ``cause`` says why
    RESTARTING = "restarting"  #: a restart is scheduled after ``delay_s``
    GAVE_UP = "gave_up"  #: the restart budget is spent; the server stays FAILED
    STOPPED = "stopped"  #: stop() finished


@dataclass(frozen=True)
class ServerEvent:
    """One lifecycle event.

    Attributes:
        kind: What happened.
        time: ``time.time()`` when it happened.
        attempt: Restart number (RESTARTING, and the STARTED/READY that follow it); 0 otherwise.
        delay_s: Backoff before the restart (RESTARTING).
        cause: The failure, in one sentence (FAILED, GAVE_UP).
        error: The failure as the exception ``start()`` would have raised (FAILED, GAVE_UP).
    """

    kind: EventKind
    time: float
    attempt: int = 0
    delay_s: float = 0.0
    cause: str = ""
    error: LlamaProcError | None = field(default=None, compare=False)


class RestartBudget:
    """Counts restarts in the policy's sliding window."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self._times: deque[float] = deque()

    def next_attempt(self) -> int | None:
        """The number of the next restart, or None when the budget is spent."""
        now = time.monotonic()
        while self._times and now - self._times[0] > self.policy.window_s:
            self._times.popleft()
        if len(self._times) >= self.policy.max_restarts:
            return None
        return len(self._times) + 1

    def record(self) -> None:
        self._times.append(time.monotonic())


class Supervisor:
    """The recovery loop every server-like class shares: it emits the events of one failure and
    restarts per the policy until the server serves again, the budget is spent, or it stops.

    ``emit`` receives each :class:`ServerEvent` (the owner records it and calls its callback);
    ``restarts`` and ``failures`` count since the supervisor was made (the owner's first start).
    """

    def __init__(self, policy: RestartPolicy | None, emit: Callable[[ServerEvent], None]) -> None:
        self.policy = policy
        self._emit = emit
        self._budget = RestartBudget(policy) if policy is not None else None
        self.restarts = 0
        self.failures = 0

    def new_budget(self) -> None:
        """Start counting restarts afresh (a new start of the server)."""
        self._budget = RestartBudget(self.policy) if self.policy is not None else None

    def emit(self, kind: EventKind, *, attempt: int = 0, delay_s: float = 0.0, cause: str = "",
             error: LlamaProcError | None = None) -> None:
        """Hand the owner a :class:`ServerEvent` of ``kind``, stamped now."""
        self._emit(ServerEvent(kind, time.time(), attempt=attempt, delay_s=delay_s, cause=cause, error=error))

    def handle_failure(self, error: LlamaProcError, stopping: threading.Event,
                       reload: Callable[[], LlamaProcError | None]) -> None:
        """:meth:`report` ``error``, then :meth:`recover`."""
        self.report(error)
        self.recover(error, stopping, reload)

    def report(self, error: LlamaProcError) -> None:
        """Count the failure and emit FAILED."""
        self.failures += 1
        self.emit(EventKind.FAILED, cause=str(error), error=error)

    def recover(self, error: LlamaProcError, stopping: threading.Event,
                reload: Callable[[], LlamaProcError | None]) -> None:
        """After a reported failure: RESTARTING, wait the backoff, STARTED, ``reload()`` (None
        once the server serves again, else the new failure, reported in turn), READY; or
        GAVE_UP once the budget is spent. Returns early when ``stopping`` is set; at once
        without a policy (the server stays FAILED until stop())."""
        while self._budget is not None and self.policy is not None:
            attempt = self._budget.next_attempt()
            if attempt is None:
                self.emit(EventKind.GAVE_UP, cause=str(error), error=error)
                return
            delay = self.policy.delay(attempt)
            self.emit(EventKind.RESTARTING, attempt=attempt, delay_s=delay)
            if stopping.wait(delay):
                return
            self._budget.record()
            self.restarts += 1
            self.emit(EventKind.STARTED, attempt=attempt)
            failure = reload()
            if stopping.is_set():
                return
            if failure is None:
                self.emit(EventKind.READY, attempt=attempt)
                return
            error = failure
            self.report(error)


def deliver(events: deque[ServerEvent], callback: Callable[[ServerEvent], None] | None,
            event: ServerEvent) -> None:
    """Record ``event`` and hand it to ``callback``; a callback that raises is logged, never the
    server's failure."""
    events.append(event)
    if callback is not None:
        try:
            callback(event)
        except Exception:
            logging.getLogger("llamaproc").exception("the on_event callback raised on %s", event.kind.name)


__all__ = ["RestartPolicy", "EventKind", "ServerEvent"]
