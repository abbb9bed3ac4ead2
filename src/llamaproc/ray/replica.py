"""One Serve replica: a llamaproc server started in-process, its HTTP API forwarded byte for byte.

:class:`LlamaReplica` is the body of the deployment :func:`llamaproc.ray.build_app` makes. Its
constructor starts a :class:`~llamaproc.LlamaServer` (or a one-model
:class:`~llamaproc.ModelPool`) on a loopback port of the replica's process; requests reach
it as raw bytes (method, path, query, headers and body as the client sent them), and the answer
goes back as the server wrote it: status, headers, and the body chunk by chunk, so SSE streams
and every route a llamaproc server answers are unchanged.

- As the application's ingress (one ServerConfig) the replica is an ASGI app behind Serve's
  HTTP proxy; behind the model router of a pool, the router calls :meth:`LlamaReplica.forward`
  through a streaming deployment handle.
- ``record_autoscaling_stats`` reports the server's busy slots, waiting requests and slot
  count (:mod:`llamaproc.ray.autoscaling`); ``check_health`` maps the server's state to
  Serve's health (see :meth:`LlamaReplica.check_health`).
- A sampler thread reads the server's metrics every ``metrics_interval_s``: Ray metrics
  (``llamaproc_*`` gauges, tagged by Serve with application, deployment and replica) and the
  application's status board (:func:`llamaproc.ray.status`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from .. import LlamaServer, ModelPool, PoolConfig, ServerConfig, ServerStatus
from ..contract import ServerLike
from ..errors import LlamaProcError, ServerNotRunningError
from ..faults import Fault
from ..messages import message
from ..recovery import EventKind, RestartPolicy
from . import _deps
from .autoscaling import REQUESTS_WAITING, SLOTS_BUSY, SLOTS_TOTAL

_log = logging.getLogger("llamaproc.ray")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# Headers that describe one hop of a connection, not the message (RFC 9110 7.6.1), and the
# ones the client library sets for us.
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
                         b"trailer", b"transfer-encoding", b"upgrade", b"host", b"content-length"})


@dataclass(frozen=True)
class ReplicaSpec:
    """What each replica of a deployment starts (pickled to the replica).

    Attributes:
        config: A ServerConfig, a PoolConfig of one model, or llama-server flags (as
            ``LlamaServer.from_args`` takes them).
        model: The name of the pool's model this deployment serves (None for one server).
        faults: Tests only: armed on the server once it is ready.
        metrics_interval_s: How often the sampler reads the server's load.
        isolation: With flags: as ``ServerConfig.isolation``.
    """

    config: ServerConfig | PoolConfig | tuple[str, ...]
    model: str | None = None
    faults: tuple[Fault, ...] = ()
    metrics_interval_s: float = 1.0
    isolation: str = "none"


@dataclass(frozen=True)
class ReplicaLoad:
    """One replica's load, as its last sample saw it.

    Attributes:
        deployment: The Serve deployment (one per model of a pool).
        replica: Serve's id of the replica.
        model: The model it serves (a pool's name, else the file's name).
        node: The host name of the machine it runs on; ``pid`` its process.
        status: The server's status (``"ready"``, ``"failed"``, ...).
        slots_total, slots_busy, requests_waiting: llama-server's slots and queue.
        tokens_per_second: Generated tokens per second over the last minute.
        requests: HTTP requests answered, by outcome (see ``ServerMetrics.requests``).
        time: ``time.time()`` of the sample.
    """

    deployment: str
    replica: str
    model: str
    node: str
    pid: int
    status: str
    slots_total: int = 0
    slots_busy: int = 0
    requests_waiting: int = 0
    tokens_per_second: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)
    time: float = 0.0

    @property
    def load(self) -> float:
        """(busy + waiting) / slots: 1.0 is a full replica, above it requests wait."""
        return (self.slots_busy + self.requests_waiting) / self.slots_total if self.slots_total else 0.0


def _start(spec: ReplicaSpec) -> tuple[LlamaServer | ModelPool, ServerLike]:
    config = spec.config
    if isinstance(config, ServerConfig):
        # the replica's own loopback port; Serve's proxy is the public address
        server = LlamaServer.start(config.replace(host="127.0.0.1", port=0))
        return server, server
    if isinstance(config, PoolConfig):
        pool = ModelPool.start(config)
        return pool, pool.server(spec.model or "")
    flags = [*config, "--host", "127.0.0.1", "--port", "0"]  # the last --host/--port win
    # isolated, a crash of the child is recovered in place (as `python -m llamaproc serve` does)
    restart = RestartPolicy() if spec.isolation == "process" else None
    server = LlamaServer.from_args(flags, use_env=True, isolation=spec.isolation, restart=restart)
    return server, server


def flag_value(flags: Sequence[str], *names: str) -> str | None:
    """The last value given to one of the flags ``names`` (``-f V`` or ``--flag=V``), else None."""
    value = None
    for i, arg in enumerate(flags):
        if arg in names and i + 1 < len(flags):
            value = flags[i + 1]
        elif "=" in arg and arg.split("=", 1)[0] in names:
            value = arg.split("=", 1)[1]
    return value


def unavailable_body(detail: str) -> bytes:
    """llama-server's body of a 503 (the server is loading, failed or stopping)."""
    return json.dumps({"error": {"code": 503, "message": detail, "type": "unavailable_error"}},
                      separators=(",", ":")).encode()


class LlamaReplica:
    """The body of a llamaproc deployment (see the module docstring)."""

    def __init__(self, spec: ReplicaSpec, board: Any = None) -> None:
        serve = _deps.serve()
        self._spec = spec
        self._board = board  # the status board's handle (None: no board)
        self._served, self._server = _start(spec)  # raises llamaproc's typed error with the log tail
        try:
            for fault in spec.faults:
                self._server.inject_fault(fault)
            context = serve.get_replica_context()
            self._deployment = str(context.deployment)
            self._replica = str(context.replica_id.unique_id)
            self._app = str(context.app_name)
            self._model = spec.model or os.path.basename(self._model_path()).removesuffix(".gguf")
            self._restarts_itself = self._has_restart_policy()
            self._session: Any = None
            self._session_loop: asyncio.AbstractEventLoop | None = None
            self._last: ReplicaLoad = self._sample()
            self._closed = threading.Event()
            self._gauges = self._make_gauges()
            self._sampler = threading.Thread(target=self._sample_loop, name="llamaproc-ray-sampler", daemon=True)
            self._sampler.start()
        except BaseException:
            self._served.stop()
            raise

    # -- what it serves -------------------------------------------------------------------

    def _model_path(self) -> str:
        config = self._spec.config
        if isinstance(config, ServerConfig):
            return str(config.model_path)
        if isinstance(config, tuple):
            return flag_value(config, "-m", "--model") or "model"
        return ""  # a pool's model is named by the spec

    def _has_restart_policy(self) -> bool:
        config = self._spec.config
        if isinstance(config, ServerConfig):
            return config.restart is not None
        if isinstance(config, PoolConfig):
            spec = config.models.get(self._spec.model or "")
            return (spec is not None and spec.restart is not None) or config.restart is not None
        return self._spec.isolation == "process"  # from flags: see _start()

    # -- load and health ------------------------------------------------------------------

    def _sample(self) -> ReplicaLoad:
        server = self._server
        base = ReplicaLoad(getattr(self, "_deployment", ""), getattr(self, "_replica", ""),
                           getattr(self, "_model", ""), socket.gethostname(), os.getpid(), server.status.value,
                           time=time.time())
        try:
            m = server.metrics(timeout=2.0)
        except LlamaProcError:  # stopped meanwhile, or the loop did not answer in time
            return base
        return dataclasses.replace(base, slots_total=m.slots_total, slots_busy=m.slots_busy,
                                   requests_waiting=m.requests_waiting, tokens_per_second=m.recent_tokens_per_second,
                                   requests=dict(m.requests))

    def _make_gauges(self) -> dict[str, Any]:
        metrics = _deps.serve().metrics
        described = {
            SLOTS_BUSY: "Slots of the llamaproc server decoding a request",
            REQUESTS_WAITING: "Requests waiting in the llamaproc server's queue for a slot",
            SLOTS_TOTAL: "Slots of the llamaproc server",
            "llamaproc_tokens_per_second": "Generated tokens per second over the last minute",
        }
        gauges = {}
        for name, text in described.items():
            gauge = metrics.Gauge(name, description=text, tag_keys=("model",))
            gauge.set_default_tags({"model": self._model})
            gauges[name] = gauge
        return gauges

    def _sample_loop(self) -> None:
        while not self._closed.wait(self._spec.metrics_interval_s):
            try:
                load = self._last = self._sample()
                for name, value in ((SLOTS_BUSY, load.slots_busy), (REQUESTS_WAITING, load.requests_waiting),
                                    (SLOTS_TOTAL, load.slots_total),
                                    ("llamaproc_tokens_per_second", load.tokens_per_second)):
                    self._gauges[name].set(value)
                if self._board is not None:
                    self._board.report.remote(load)
            except Exception:  # noqa: BLE001 - a sample lost is not worth the replica
                _log.debug("sampling the replica's load failed", exc_info=True)

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's autoscaling hook: the last sample's slots and queue (never blocks)."""
        load = self._last
        return {SLOTS_BUSY: float(load.slots_busy), REQUESTS_WAITING: float(load.requests_waiting),
                SLOTS_TOTAL: float(load.slots_total)}

    def load(self) -> ReplicaLoad:
        """This replica's load now."""
        return self._sample()

    def check_health(self) -> None:
        """Serve's health check: raises when Serve should replace this replica.

        READY is healthy, busy or not: all slots busy with requests waiting is load, for the
        autoscaler, not a fault. A failed server is unhealthy unless it restarts itself (a
        RestartPolicy, e.g. with ``isolation="process"``): then only once it gave up.
        """
        server = self._server
        status = server.status
        if status is ServerStatus.READY:
            return
        events = server.events()
        gave_up = bool(events) and events[-1].kind is EventKind.GAVE_UP
        if self._restarts_itself and not gave_up and status is not ServerStatus.STOPPED:
            return  # failed or restarting: llamaproc recovers it in place
        failure = server.failure
        raise ServerNotRunningError(message("ray.replica_unhealthy", replica=self._replica, status=status.value,
                                            failure=failure if failure is not None else "-"))

    # -- requests -------------------------------------------------------------------------

    async def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session_loop is not loop:
            aiohttp = _deps.aiohttp()
            self._session = aiohttp.ClientSession(
                auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None),
                connector=aiohttp.TCPConnector(limit=0), skip_auto_headers=("User-Agent", "Accept-Encoding",
                                                                            "Content-Type"))
            self._session_loop = loop
        return self._session

    async def forward(self, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]],
                      body: bytes) -> AsyncIterator[dict[str, Any] | bytes]:
        """Send one request to the server as given; yields ``{"status", "headers"}`` first,
        then the body as the server writes it (an SSE stream event by event)."""
        yarl = _deps._import("yarl")
        url = self._server.url + path + (("?" + query.decode("latin-1")) if query else "")
        sent = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers if k.lower() not in _HOP_BY_HOP]
        session = await self._client()
        aiohttp = _deps.aiohttp()
        try:
            response = await session.request(method, yarl.URL(url, encoded=True), data=body or None,
                                             headers=sent, allow_redirects=False)
        except (OSError, aiohttp.ClientError) as exc:  # refused or dropped: restarting, stopping
            detail = message("ray.server_unreachable", status=self._server.status.value, error=exc)
            yield {"status": 503, "headers": [(b"content-type", b"application/json; charset=utf-8")]}
            yield unavailable_body(detail)
            return
        async with response:
            kept = [(k, v) for k, v in response.raw_headers if k.lower() not in _HOP_BY_HOP - {b"content-length"}]
            yield {"status": response.status, "headers": kept}
            async for chunk in response.content.iter_any():
                yield bytes(chunk)

    def __serve_build_asgi_app__(self) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        """The ASGI app Serve's proxy calls when this deployment is the ingress."""
        return http_app(self.forward)

    # -- shutdown -------------------------------------------------------------------------

    def __del__(self) -> None:
        """Serve calls this once the replica drained (requests in flight finished)."""
        closed = getattr(self, "_closed", None)
        if closed is not None and not closed.is_set():
            closed.set()
            if self._board is not None:
                self._board.forget.remote(self._deployment, self._replica)
        served = getattr(self, "_served", None)
        if served is not None:
            served.stop()
        session, loop = getattr(self, "_session", None), getattr(self, "_session_loop", None)
        if session is not None and loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(cast("Any", session).close(), loop)


#: Answers one HTTP request (method, path, raw query, headers, body) as :meth:`LlamaReplica.forward`
#: does: ``{"status", "headers"}`` first, then the body's chunks.
Answer = Callable[[str, str, bytes, list[tuple[bytes, bytes]], bytes], AsyncIterator[dict[str, Any] | bytes]]


def http_app(answer: Answer) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI 3 app (a plain coroutine function: ASGI servers tell ASGI 3 apps from ASGI 2 ones
    by that) that relays ``answer``'s response to each HTTP request and completes the lifespan
    protocol."""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
        elif scope["type"] == "http":
            await relay(answer(*await read_request(scope, receive)), send)
    return app


async def lifespan(receive: Receive, send: Send) -> None:
    """The ASGI lifespan protocol: nothing to set up or tear down per app."""
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_request(scope: Scope, receive: Receive) -> tuple[str, str, bytes, list[tuple[bytes, bytes]], bytes]:
    """Method, path (under the route prefix), raw query, headers and whole body of an ASGI request."""
    chunks = []
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            break
        chunks.append(event.get("body", b""))
        if not event.get("more_body", False):
            break
    path = str(scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0] or scope["path"])
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root):] or "/"
    return (str(scope["method"]), path, bytes(scope.get("query_string", b"")), list(scope.get("headers", [])),
            b"".join(chunks))


async def relay(answer: AsyncIterator[dict[str, Any] | bytes], send: Send) -> None:
    """Send what :meth:`LlamaReplica.forward` yields as an ASGI response."""
    started = False
    async for item in answer:
        if isinstance(item, dict):
            await send({"type": "http.response.start", "status": item["status"], "headers": item["headers"]})
            started = True
        elif item:
            await send({"type": "http.response.body", "body": item, "more_body": True})
    if started:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
