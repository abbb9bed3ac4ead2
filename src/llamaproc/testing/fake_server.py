"""FakeServer: a model-free stand-in for ``LlamaServer``, for testing code that uses one.

It has the public surface of ``LlamaServer`` (:class:`~llamaproc.contract.ServerLike`: start /
stop / restart / status / health_check / metrics / url, context managers, asyncio twins,
``direct``, the OpenAI clients, events, faults, recovery with the same supervisor)
and speaks llama-server's HTTP API for what applications use: OpenAI chat completions,
completions and embeddings (streaming with the same SSE framing and ``[DONE]``), ``/health``,
``/props``, ``/v1/models``, ``/tokenize``, ``/detokenize`` and llama.cpp's error bodies. It
starts in milliseconds and needs no model file::

    with FakeServer.start(replies=["Hello!", "Bye."]) as fake:
        app = MyApp(base_url=fake.url + "/v1")
        assert app.greet() == "Hello!"
        assert fake.requests[0].body["messages"][-1]["content"] == "hi"

Replies are scripted: a string (always that string, word for word), a list (in order; the
last one repeats), a function that receives the :class:`RecordedRequest` (``request.body`` is
the decoded JSON) and returns the reply text, or None (echo the last user message or the
prompt).
Embeddings are deterministic per input. Every request is recorded in ``fake.requests``.

Why a separate fake rather than the real server on a tiny model with forced replies: the
real server starts in 0.1-0.3 s and needs ``gguf`` to make its model, forcing exact text means
a grammar per request, and token counts would be the tiny tokenizer's. A fake is 100x faster
to start and scripts exactly; its fidelity is kept by a test that runs the same requests
against both and compares the JSON shapes (keys, types, SSE framing, error shapes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from http.server import ThreadingHTTPServer
from typing import Any

from ..contract import DerivedSurface, HealthReport, HealthStatus, ServerMetrics, ServerStatus, client_host, recent_rates
from ..errors import (LlamaProcError, ModelLoadError, NativeError, ResourceError, ServerNotRunningError, StartupError,
                      attach_log_tail)
from ..faults import Fault, FaultKind, as_fault
from ..messages import message
from ..recovery import EventKind, RestartPolicy, ServerEvent, Supervisor, deliver
from .fake_direct import FakeCall
from .fake_http import handler_for
from .fake_routes import Answer, RecordedRequest, echo, error_answer, route_of

Reply = str | Sequence[str] | Callable[[RecordedRequest], str] | None
_UNCOUNTED = ("/health", "/v1/health")  # probes are not requests (as the real server counts them)


class FakeServer(DerivedSurface):
    """See the module docstring. Create with :meth:`start`; every method is thread-safe."""

    def __init__(self, replies: Reply = None, *, model: str = "fake-model", embedding_dim: int = 16,
                 slots: int = 4, context_size: int = 4096, host: str = "127.0.0.1", port: int = 0,
                 restart: RestartPolicy | None = None,
                 on_event: Callable[[ServerEvent], None] | None = None) -> None:
        self.model = model
        self.embedding_dim = embedding_dim
        self.slots = slots
        self.context_size = context_size
        self._replies = replies
        self._reply_index = 0
        self._host, self._port = host, port
        self._on_event = on_event
        self._lock = threading.RLock()
        self._status = ServerStatus.STOPPED
        self._started = False
        self._failure: LlamaProcError | None = None
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._events: deque[ServerEvent] = deque(maxlen=1000)
        self._supervisor = Supervisor(restart, self._deliver)
        self.requests: list[RecordedRequest] = []
        self._faults: dict[FaultKind, Fault] = {}
        self._error_seen = 0
        self._busy_release = threading.Event()
        self._waiting = 0
        self._processing = 0
        self._counts = {"ok": 0, "client_error": 0, "server_error": 0, "unavailable": 0, "stream_failed": 0}
        self._tokens = [0, 0]  # prompt, generated
        self._samples: deque[tuple[float, int, int]] = deque(maxlen=600)
        self._last_metrics = ServerMetrics()
        #: Set while stopping: waits of streams and slow loads end at once.
        self.stopping = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def start(cls, replies: Reply = None, **kwargs: Any) -> FakeServer:
        """Start a fake and return it once it serves (milliseconds)."""
        fake = cls(replies, **kwargs)
        fake._start()
        return fake

    def _start(self) -> None:
        with self._lock:
            if self._status in (ServerStatus.READY, ServerStatus.STARTING):
                raise StartupError(message("server.already_running"))
            self._status = ServerStatus.STARTING
            self._started = True
            self.stopping = threading.Event()
        self._supervisor.new_budget()
        self._supervisor.emit(EventKind.STARTED)
        failure = self._load()
        if failure is not None:
            with self._lock:
                self._status = ServerStatus.FAILED
            raise failure
        if self._httpd is None:
            try:
                self._httpd = ThreadingHTTPServer((self._host, self._port), handler_for(self))
            except OSError as exc:
                with self._lock:
                    self._status = ServerStatus.FAILED
                raise StartupError(f"cannot listen on {self._host}:{self._port} (is the port already in use?): {exc}") from exc
            self._httpd.daemon_threads = True
            self._port = self._httpd.server_address[1]
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"llamaproc-fake:{self._port}", daemon=True)
            self._thread.start()
        with self._lock:
            self._status = ServerStatus.READY
            self._failure = None
        self._supervisor.emit(EventKind.READY)

    def _load(self) -> LlamaProcError | None:
        """The fake's 'model load', where load faults act: None once loaded, else the error."""
        slow = self._take(FaultKind.SLOW_LOAD)
        if slow is not None:
            for _ in range(10):  # ten progress steps, as a real load reports
                if self.stopping.wait(slow.param / 1000):
                    return ServerNotRunningError("the server was stopped before it became ready")
        if self._take(FaultKind.LOAD_FAILS):
            return attach_log_tail(ModelLoadError(f"injected fault: failed to load model '{self.model}'"), [])
        if self._take(FaultKind.OVER_MEMORY):
            return ResourceError(f"injected fault: model '{self.model}' needs more than memory_limit; nothing was loaded")
        return None

    def stop(self) -> None:
        """Stop serving (idempotent); requests in flight end."""
        with self._lock:
            was = self._status
            self._status = ServerStatus.STOPPING
            self.stopping.set()
            self._busy_release.set()
            httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        with self._lock:
            self._status = ServerStatus.STOPPED
        if was is not ServerStatus.STOPPED:
            self._supervisor.emit(EventKind.STOPPED)

    def restart(self, *, timeout: float = 600.0) -> None:
        """Stop, then start again on the same port (``timeout`` as for ``LlamaServer``; the fake
        starts in milliseconds)."""
        self.stop()
        self._start()

    def __enter__(self) -> FakeServer:
        if self._status is not ServerStatus.READY:
            self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FakeServer {self._status.value} {self.url}>"

    @classmethod
    async def astart(cls, replies: Reply = None, **kwargs: Any) -> FakeServer:
        return await asyncio.to_thread(cls.start, replies, **kwargs)

    async def __aenter__(self) -> FakeServer:
        if self._status is not ServerStatus.READY:
            await asyncio.to_thread(self._start)
        return self

    # -- state ----------------------------------------------------------------------------

    @property
    def status(self) -> ServerStatus:
        return self._status

    @property
    def serving(self) -> bool:
        return self._status is ServerStatus.READY

    @property
    def port(self) -> int:
        return self._port

    @property
    def host(self) -> str:
        return self._host

    @property
    def url(self) -> str:
        return f"http://{client_host(self._host)}:{self._port}"

    @property
    def failure(self) -> LlamaProcError | None:
        return self._failure if self._status is ServerStatus.FAILED else None



    def events(self) -> list[ServerEvent]:
        return list(self._events)

    def log_tail(self, max_lines: int = 40) -> list[str]:
        return []

    def _deliver(self, event: ServerEvent) -> None:
        deliver(self._events, self._on_event, event)

    def health_check(self, timeout: float = 2.0) -> HealthReport:
        """The same rules and report as ``LlamaServer.health_check``."""
        if self._status is not ServerStatus.READY:
            detail = f"server is {self._status.value}" + (f": {self._failure}" if self.failure else "")
            return HealthReport(HealthStatus.UNHEALTHY, detail)
        busy = self._processing + (self.slots if FaultKind.SLOTS_BUSY in self._faults else 0)
        if busy >= self.slots and self._waiting > 0:
            return HealthReport(HealthStatus.DEGRADED, f"all {self.slots} slots busy, {self._waiting} requests waiting",
                                self.slots, self.slots, self._waiting)
        return HealthReport(HealthStatus.HEALTHY, f"serving; {min(busy, self.slots)} of {self.slots} slots busy",
                            self.slots, min(busy, self.slots), self._waiting)

    def metrics(self, timeout: float = 5.0, *, window_s: float = 60.0) -> ServerMetrics:
        """Counts of what the fake answered (the same fields and states as ``LlamaServer.metrics``;
        rates from the calls to this method, at least a second apart)."""
        if not self._started:
            raise ServerNotRunningError(message("server.never_started"))
        with self._lock:
            counts = dict(self._counts)
            restarts, failures = self._supervisor.restarts, self._supervisor.failures
            if self._status is not ServerStatus.READY:
                return dataclasses.replace(self._last_metrics, live=False, requests=counts, restarts=restarts,
                                           failures=failures)
            now = (time.monotonic(), sum(counts.values()), self._tokens[1])
            rates = recent_rates(self._samples, now, window_s)
            if not self._samples or now[0] - self._samples[-1][0] >= 1.0:
                self._samples.append(now)
            metrics = ServerMetrics(self.slots, min(self._processing, self.slots), self._waiting, self._tokens[0],
                                    0.0, 0, self._tokens[1], 0.0, 0, "",
                                    recent_requests_per_second=rates.requests_per_second,
                                    recent_tokens_per_second=rates.tokens_per_second, window_s=rates.span_s,
                                    requests=counts, restarts=restarts, failures=failures)
            self._last_metrics = metrics
            return metrics

    def open_call(self, path: str, body: str, post: bool = True) -> FakeCall:
        """Start a direct call (see :class:`llamaproc.direct.target.CallTarget`)."""
        if self._status is not ServerStatus.READY:
            raise ServerNotRunningError(message("server.not_running", status=self._status.value))
        return FakeCall(self, self.answer("POST" if post else "GET", path, body.encode()))

    # -- faults ---------------------------------------------------------------------------

    def inject_fault(self, fault: Fault | str, *, times: int = 1, param: int = 0) -> None:
        """Arm a :class:`~llamaproc.testing.Fault` (the same faults, and the same arguments, as
        ``LlamaServer.inject_fault``)."""
        fault = as_fault(fault, times=times, param=param)
        if self._status in (ServerStatus.STOPPED, ServerStatus.STOPPING) and not fault.kind.acts_on_load:
            raise ServerNotRunningError(message("server.fault_needs_start", fault=fault.kind.value))
        with self._lock:
            if fault.kind is FaultKind.ERROR:
                self._error_seen = 0
            if fault.kind is FaultKind.SLOTS_BUSY:
                self._busy_release.clear()
            self._faults[fault.kind] = fault
        if fault.kind is FaultKind.LOOP_DIES and self._take(FaultKind.LOOP_DIES):
            self._fail(NativeError("the inference loop stopped unexpectedly"))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._busy_release.set()

    def _take(self, kind: FaultKind) -> Fault | None:
        """The armed fault of ``kind`` with one use consumed, or None."""
        with self._lock:
            fault = self._faults.get(kind)
            if fault is None:
                return None
            if fault.times <= 1:
                del self._faults[kind]
            else:
                self._faults[kind] = dataclasses.replace(fault, times=fault.times - 1)
            return fault

    def stream_faults(self) -> tuple[float, int]:
        """(seconds before each stream chunk, chunks after which this stream is cut or -1)."""
        slow = self._faults.get(FaultKind.SLOW_TOKENS)
        cut = self._take(FaultKind.CUT_STREAM)
        return (slow.param / 1000 if slow else 0.0), (cut.param if cut else -1)

    def _fail(self, error: LlamaProcError) -> None:
        with self._lock:
            if self._status is not ServerStatus.READY:
                return
            self._status = ServerStatus.FAILED
            self._failure = error
        self._supervisor.report(error)
        threading.Thread(target=self._supervisor.recover, args=(error, self.stopping, self._reload),
                         name="llamaproc-fake-recovery", daemon=True).start()

    def _reload(self) -> LlamaProcError | None:
        """A restart after a failure (the supervisor's ``reload``)."""
        with self._lock:
            self._status = ServerStatus.STARTING
        failure = self._load()
        with self._lock:
            if self.stopping.is_set():
                return None
            self._status = ServerStatus.FAILED if failure is not None else ServerStatus.READY
            self._failure = failure
        return failure

    # -- answering ------------------------------------------------------------------------

    def next_reply(self, request: RecordedRequest) -> str:
        """The scripted reply to ``request``."""
        replies = self._replies
        if replies is None:
            return echo(request.body)
        if isinstance(replies, str):
            return replies
        if callable(replies):
            return str(replies(request))
        with self._lock:
            index = min(self._reply_index, len(replies) - 1)
            self._reply_index += 1
        return replies[index] if replies else ""

    def count_tokens(self, prompt: int, generated: int) -> None:
        with self._lock:
            self._tokens[0] += prompt
            self._tokens[1] += generated

    def answer(self, method: str, path: str, raw: bytes, headers: dict[str, str] | None = None) -> Answer:
        """Answer one request (what the HTTP handler and direct calls both use)."""
        headers = headers or {}
        count = path not in _UNCOUNTED
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                with self._lock:
                    self.requests.append(RecordedRequest(method, path, None, headers, time.time()))
                return self._count(Answer(*error_answer(400, f"invalid JSON in the request body: {exc}",
                                                        "invalid_request_error")), count)
        request = RecordedRequest(method, path, body, headers, time.time())
        with self._lock:
            self.requests.append(request)
        if self._status is not ServerStatus.READY:
            message = "Loading model" if self._status is ServerStatus.STARTING else (
                f"the model failed and is not serving: {self._failure}" if self._failure else "the server is stopping")
            return self._count(Answer(*error_answer(503, message, "unavailable_error")), count)
        injected = self._injected_error(path, raw)
        if injected is not None:
            return self._count(injected, count)
        route = route_of(method, path)
        if route is None:
            return self._count(Answer(*error_answer(404, "File Not Found", "not_found_error")), count)
        if method == "POST" and path not in ("/tokenize", "/detokenize", "/apply-template"):
            self._wait_for_a_slot()
            if self._take(FaultKind.ASSERT_IN_REQUEST):
                self._fail(NativeError("llama.cpp hit a failed assertion while serving a request: injected fault"))
                return self._count(Answer(*error_answer(500, "llama.cpp hit a failed assertion: injected fault",
                                                        "server_error")), count)
        with self._lock:
            self._processing += 1
        try:
            return self._count(route(self, request), count)
        finally:
            with self._lock:
                self._processing -= 1

    def _injected_error(self, path: str, raw: bytes) -> Answer | None:
        with self._lock:
            fault = self._faults.get(FaultKind.ERROR)
            if fault is None or (fault.match and fault.match not in f"{path} {raw.decode(errors='replace')}"):
                return None
            self._error_seen += 1
            if fault.nth > 0 and self._error_seen < fault.nth:
                return None
            self._error_seen = 0
        self._take(FaultKind.ERROR)
        if fault.body:
            return Answer(fault.status, json.loads(fault.body))
        kinds = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                 501: "not_supported_error", 503: "unavailable_error"}
        return Answer(*error_answer(fault.status, f"injected fault: HTTP {fault.status}",
                                    kinds.get(fault.status, "server_error")))

    def _wait_for_a_slot(self) -> None:
        if FaultKind.SLOTS_BUSY not in self._faults:
            return
        with self._lock:
            self._waiting += 1
        try:
            while FaultKind.SLOTS_BUSY in self._faults and not self._busy_release.wait(0.05):
                pass
        finally:
            with self._lock:
                self._waiting -= 1

    def _count(self, answer: Answer, count: bool = True) -> Answer:
        if count:
            outcome = ("unavailable" if answer.status == 503 else "server_error" if answer.status >= 500
                       else "client_error" if answer.status >= 400 else "ok")
            with self._lock:
                self._counts[outcome] += 1
        return answer


__all__ = ["FakeServer", "RecordedRequest"]
