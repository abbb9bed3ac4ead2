"""What every server-like object of llamaproc offers, and the values it reports.

:class:`~llamaproc.LlamaServer`, one model of a :class:`~llamaproc.ModelPool`
(``pool.server(name)``) and :class:`~llamaproc.testing.FakeServer` all implement
:class:`ServerLike`; code written against it runs on any of them, and a contract test runs
the same checks on each. This module needs no native extension: the fake server and the
value types work without it.

Which methods work in which state (the same for every server-like class):

=====================  ==========================================================================
method                 states it works in
=====================  ==========================================================================
``status``, ``url``,   every state, also before the first start
``events()``,
``log_tail()``,
``health_check()``     (never raises; UNHEALTHY with the reason when not READY)
``metrics()``          every state once started: live counters while READY, otherwise the last
                       counters seen (``live=False``) with current restarts and failures;
                       raises ``ServerNotRunningError`` only before the first start
``direct``, calls      READY only (a pool's model: while its pool runs; an unloaded model loads
                       for the call); otherwise ``ServerNotRunningError``
``inject_fault()``     load faults in every state (armed while stopped they apply to the next
                       start); the others need a started server (``ServerNotRunningError``)
``stop()``             every state, idempotent and bounded
=====================  ==========================================================================
"""

from __future__ import annotations

import asyncio
import enum
import http.client
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .devices import DeviceMetrics

if TYPE_CHECKING:
    from .direct.client import AsyncDirectClient, DirectClient
    from .direct.target import Call
    from .errors import LlamaProcError
    from .faults import Fault
    from .recovery import ServerEvent


class ServerStatus(enum.Enum):
    """Where a server is in its lifecycle."""

    STARTING = "starting"  #: bound and loading the model
    READY = "ready"  #: model loaded, serving requests
    STOPPING = "stopping"  #: stop() in progress
    STOPPED = "stopped"  #: stopped; threads joined, model freed
    FAILED = "failed"  #: startup failed, or the model failed after it was ready (see recovery)


class HealthStatus(enum.Enum):
    """Outcome of ``health_check()``."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True)
class HealthReport:
    """What ``health_check()`` found.

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
    #: What the server holds on each accelerator (and its utilisation with NVML); None when it
    #: uses none (CPU only): see :mod:`llamaproc.devices`.
    devices: tuple[DeviceMetrics, ...] | None = None

    @property
    def ok(self) -> bool:
        """True unless UNHEALTHY: a DEGRADED server still answers, just later."""
        return self.status is not HealthStatus.UNHEALTHY


#: Rates need at least this span of samples (they are taken once a second): a rate over a few
#: milliseconds would turn one request into hundreds per second.
MIN_RATE_SPAN_S = 1.0


@dataclass(frozen=True)
class ServerMetrics:
    """What the server did and holds, from the inference loop and the HTTP front.

    Token counters are cumulative since the model was (re)loaded; request counts and
    restarts since the first start. ``recent_*`` rates are over the last ``window_s`` seconds of
    wall time (sampled once a second; 0.0 until a second of samples exists). ``prometheus``
    holds llama.cpp's counters in Prometheus' text format (what llama-server's /metrics serves
    with ``--metrics``). Health probes (``GET /health``) are not counted as requests.
    """

    slots_total: int = 0
    slots_busy: int = 0
    requests_waiting: int = 0
    prompt_tokens: int = 0
    prompt_seconds: float = 0.0
    prompt_tokens_cached: int = 0
    generated_tokens: int = 0
    generation_seconds: float = 0.0
    decode_calls: int = 0
    prometheus: str = ""
    #: HTTP and direct requests answered, by outcome: ok, client_error, server_error,
    #: unavailable (503), stream_failed (a stream ended by a failure).
    requests: dict[str, int] = field(default_factory=dict)
    recent_requests_per_second: float = 0.0
    recent_tokens_per_second: float = 0.0  #: generated tokens per wall-clock second
    window_s: float = 0.0  #: the span the rates were measured over (0.0: too short to say)
    rss_bytes: int = 0  #: resident memory of the whole process
    model_bytes: int = 0  #: weights held by this server (host memory, incl. repacked copies)
    kv_cache_bytes: int = 0  #: KV cache and other per-context state
    compute_bytes: int = 0  #: compute buffers
    prompt_cache_limit_bytes: int = 0  #: cap of the RAM prompt cache (grows up to it under load)
    #: What the load was judged by beforehand (weights + KV cache + compute), when a
    #: ``memory_limit`` was checked: None otherwise. Compare with the measured fields above.
    memory_expected_bytes: int | None = None
    #: ``"measured"`` (an earlier load of the same file and flags), ``"estimate"`` (llama.cpp's
    #: dry run) or None (no limit was checked). See :mod:`llamaproc.memory`.
    memory_expected_source: str | None = None
    #: Threads of the last decode step, and why: ``"idle host"`` (every physical core),
    #: ``"host busy"`` (cores left to busy host threads), ``"shared"`` (took turns with another
    #: model's decode) or ``"fixed"`` (``threads`` / ``-t`` given). See the README, *Threads*.
    decode_threads: int = 0
    decode_threads_reason: str = ""
    #: CPUs the host's own threads (not llamaproc's) used lately, as the CPU governor sees them.
    host_cpus: float = 0.0
    restarts: int = 0
    failures: int = 0
    #: Per-accelerator memory and utilisation; None for a CPU-only server (:mod:`llamaproc.devices`).
    devices: tuple[DeviceMetrics, ...] | None = None
    #: Speculative decoding (see the README, *Speculation*): tokens drafted from the context and
    #: verified, and how many of them verification kept. Each kept token is one decode step saved.
    draft_tokens: int = 0
    draft_accepted: int = 0
    #: With ``isolation="process"``: the child process's id (None while none runs) and its
    #: resident memory; ``rss_bytes`` stays this (host) process's.
    child_pid: int | None = None
    child_rss_bytes: int = 0
    #: True when the inference loop answered just now; False when the server is not READY
    #: (failed, restarting, stopped) and the counters are the last ones seen while it was.
    live: bool = True

    @property
    def prompt_tokens_per_second(self) -> float:
        """Prompt evaluation speed (tokens per second of prompt evaluation)."""
        return self.prompt_tokens / self.prompt_seconds if self.prompt_seconds > 0 else 0.0

    @property
    def generation_tokens_per_second(self) -> float:
        """Decode speed (generated tokens per second of generation)."""
        return self.generated_tokens / self.generation_seconds if self.generation_seconds > 0 else 0.0

    @property
    def memory_bytes(self) -> int:
        """Model + KV cache + compute buffers + the prompt cache's cap: the most this server uses."""
        return self.model_bytes + self.kv_cache_bytes + self.compute_bytes + self.prompt_cache_limit_bytes


@dataclass(frozen=True)
class RecentRates:
    """Requests and generated tokens per second over a recent span (see :func:`recent_rates`)."""

    requests_per_second: float = 0.0
    tokens_per_second: float = 0.0
    span_s: float = 0.0


def recent_rates(samples: Sequence[tuple[float, int, int]], now: tuple[float, int, int],
                 window_s: float) -> RecentRates:
    """Rates between the oldest sample inside ``window_s`` and ``now``; each sample is
    (monotonic time, requests answered, generated tokens). Zero when the span is shorter than
    :data:`MIN_RATE_SPAN_S`."""
    inside = [s for s in samples if now[0] - s[0] <= max(window_s, MIN_RATE_SPAN_S)]
    if not inside or now[0] - inside[0][0] < MIN_RATE_SPAN_S:
        return RecentRates()
    oldest = inside[0]
    span = now[0] - oldest[0]
    return RecentRates((now[1] - oldest[1]) / span, max(0, now[2] - oldest[2]) / span, span)


def client_host(host: str) -> str:
    """Where a client on this machine reaches a server listening on ``host``."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "[::1]"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def http_status(host: str, port: int, path: str, timeout: float) -> int:
    """The HTTP status of ``GET path`` on a local server (raises OSError when it does not answer)."""
    conn = http.client.HTTPConnection(client_host(host).strip("[]"), port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@runtime_checkable
class ServerLike(Protocol):
    """The public surface every server-like class implements (see the module docstring for
    the states each method works in)."""

    @property
    def status(self) -> ServerStatus: ...
    @property
    def url(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def failure(self) -> LlamaProcError | None: ...
    @property
    def serving(self) -> bool: ...
    @property
    def direct(self) -> DirectClient: ...
    @property
    def adirect(self) -> AsyncDirectClient: ...

    def open_call(self, path: str, body: str, post: bool = True) -> Call: ...
    def stop(self) -> None: ...
    def restart(self, *, timeout: float = 600.0) -> None: ...
    def health_check(self, timeout: float = 2.0) -> HealthReport: ...
    def metrics(self, timeout: float = 5.0, *, window_s: float = 60.0) -> ServerMetrics: ...
    def events(self) -> list[ServerEvent]: ...
    def log_tail(self, max_lines: int = 40) -> list[str]: ...
    def inject_fault(self, fault: Fault | str, *, times: int = 1, param: int = 0) -> None: ...
    def clear_faults(self) -> None: ...
    def openai_client(self, **kwargs: Any) -> Any: ...
    def async_openai_client(self, **kwargs: Any) -> Any: ...
    async def astop(self) -> None: ...
    async def arestart(self, *, timeout: float = 600.0) -> None: ...
    async def ahealth_check(self, timeout: float = 2.0) -> HealthReport: ...
    async def ametrics(self, timeout: float = 5.0, *, window_s: float = 60.0) -> ServerMetrics: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc_info: object) -> None: ...
    async def __aenter__(self) -> Any: ...
    async def __aexit__(self, *exc_info: object) -> None: ...


class DerivedSurface:
    """The part of :class:`ServerLike` every class derives from its own methods (direct calls,
    the asyncio twins and the OpenAI SDK clients): written once here, inherited by each
    server-like class."""

    @property
    def direct(self: ServerLike) -> DirectClient:
        """In-process calls to this server, shaped like the OpenAI SDK (see :mod:`llamaproc.direct`)."""
        from .direct.client import DirectClient

        client = self.__dict__.get("_direct_client")
        if client is None:
            client = self.__dict__["_direct_client"] = DirectClient(self)
        return client

    @property
    def adirect(self: ServerLike) -> AsyncDirectClient:
        """:attr:`direct` for asyncio (its waits run on the process's direct-call threads)."""
        from .direct.client import AsyncDirectClient, direct_pool

        client = self.__dict__.get("_adirect_client")
        if client is None:
            client = self.__dict__["_adirect_client"] = AsyncDirectClient(self, direct_pool())
        return client

    def openai_client(self: ServerLike, **kwargs: Any) -> Any:
        """An ``openai.OpenAI`` client whose requests reach this server in-process (no socket):
        the SDK's own types, errors and streams. Needs ``pip install llamaproc[openai]``;
        ``kwargs`` go to ``openai.OpenAI``."""
        from .direct.openai_transport import openai_client

        return openai_client(self, **kwargs)

    def async_openai_client(self: ServerLike, **kwargs: Any) -> Any:
        """:meth:`openai_client` for asyncio: an ``openai.AsyncOpenAI``."""
        from .direct.client import direct_pool
        from .direct.openai_transport import async_openai_client

        return async_openai_client(self, direct_pool(), **kwargs)

    async def astop(self: ServerLike) -> None:
        """:meth:`stop` without blocking the event loop."""
        await asyncio.to_thread(self.stop)

    async def arestart(self: ServerLike, *, timeout: float = 600.0) -> None:
        """:meth:`restart` without blocking the event loop."""
        await asyncio.to_thread(self.restart, timeout=timeout)

    async def ahealth_check(self: ServerLike, timeout: float = 2.0) -> HealthReport:
        """:meth:`health_check` without blocking the event loop."""
        return await asyncio.to_thread(self.health_check, timeout)

    async def ametrics(self: ServerLike, timeout: float = 5.0, *, window_s: float = 60.0) -> ServerMetrics:
        """:meth:`metrics` without blocking the event loop."""
        return await asyncio.to_thread(self.metrics, timeout, window_s=window_s)

    async def __aexit__(self: ServerLike, *exc_info: object) -> None:
        await self.astop()


__all__ = ["DerivedSurface", "ServerStatus", "HealthStatus", "HealthReport", "ServerMetrics", "ServerLike", "RecentRates",
           "recent_rates", "client_host", "http_status", "MIN_RATE_SPAN_S"]
