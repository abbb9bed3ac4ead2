"""FakeServer: a model-free stand-in for ``LlamaServer``, for testing code that uses one.

It has the public surface of ``LlamaServer`` (start / stop / restart / status /
health_check / metrics / url, context managers, asyncio twins, ``direct``, events, faults)
and speaks llama-server's HTTP API for what applications use: OpenAI chat completions,
completions and embeddings (streaming with the same SSE framing and ``[DONE]``), ``/health``,
``/props``, ``/v1/models``, ``/tokenize``, ``/detokenize`` and llama.cpp's error bodies. It
starts in milliseconds and needs no model file::

    with FakeServer.start(replies=["Hello!", "Bye."]) as fake:
        app = MyApp(base_url=fake.url + "/v1")
        assert app.greet() == "Hello!"
        assert fake.requests[0].body["messages"][-1]["content"] == "hi"

Replies are scripted: a string (always that), a list (in order; the last one repeats), a
function of the :class:`RecordedRequest`, or None (echo the last user message or the prompt).
Embeddings are deterministic per input. Every request is recorded in ``fake.requests``.

Why a separate fake rather than the real server on a tiny model with forced replies: the
real server starts in 0.1-0.3 s and needs ``gguf`` to make its model, forcing exact text means
a grammar per request, and token counts would be the tiny tokenizer's. A fake is 100x faster
to start and scripts exactly; its fidelity is kept by a test that runs the same requests
against both and compares the JSON shapes (keys, types, SSE framing, error shapes).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..direct.client import AsyncDirectClient, DirectClient, direct_pool
from ..errors import (ModelLoadError, NativeError, ResourceError, ServerNotRunningError, StartupError,
                      attach_log_tail)
from ..recovery import EventKind, RestartBudget, RestartPolicy, ServerEvent
from ..server import HealthReport, HealthStatus, ServerMetrics, ServerStatus
from .faults import Fault

Reply = str | Sequence[str] | Callable[["RecordedRequest"], str] | None
FINGERPRINT = "b0-fake"


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received (HTTP or direct)."""

    method: str
    path: str
    body: Any  # the decoded JSON body (None for GET or when the body was not JSON)
    headers: dict[str, str]
    time: float


def _error(status: int, message: str, kind: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"code": status, "message": message, "type": kind}}


NOT_FOUND = _error(404, "File Not Found", "not_found_error")
_PIECES = re.compile(r"\s*\S+|\s+")


class _Answer:
    """What a route answers: a status and a body, or a stream of events."""

    def __init__(self, status: int, body: Any = None, events: list[Any] | None = None, done: bool = True) -> None:
        self.status, self.body, self.events, self.done_marker = status, body, events, done

    @property
    def stream(self) -> bool:
        return self.events is not None


class FakeServer:
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
        self._restart_policy = restart
        self._on_event = on_event
        self._lock = threading.RLock()
        self._status = ServerStatus.STOPPED
        self._failure: Exception | None = None
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._events: deque[ServerEvent] = deque(maxlen=1000)
        self.requests: list[RecordedRequest] = []
        self._faults: dict[str, dict[str, Any]] = {}
        self._error_seen = 0
        self._busy_release = threading.Event()
        self._waiting = 0
        self._processing = 0
        self._counts = {"ok": 0, "client_error": 0, "server_error": 0, "unavailable": 0, "stream_failed": 0}
        self._tokens = [0, 0]  # prompt, generated
        self._restarts = self._failures = 0
        self._stop_event = threading.Event()
        self.direct = DirectClient(self)  # type: ignore[arg-type]
        self._adirect: AsyncDirectClient | None = None

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
                raise StartupError("the fake server is already running")
            self._status = ServerStatus.STARTING
        self._emit(EventKind.STARTED)
        try:
            self._load()
        except Exception:
            with self._lock:
                self._status = ServerStatus.FAILED
            raise
        if self._httpd is None:
            try:
                self._httpd = ThreadingHTTPServer((self._host, self._port), _handler_for(self))
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
            self._stop_event = threading.Event()
            self._status = ServerStatus.READY
        self._emit(EventKind.READY)

    def _load(self) -> None:
        """The fake's 'model load': where load faults act."""
        slow = self._take("slow_load")
        if slow:
            for _ in range(10):
                if self._stop_event.wait(slow["ms"] / 1000):
                    raise ServerNotRunningError("the server was stopped before it became ready")
        if self._take("load_fails"):
            raise attach_log_tail(ModelLoadError(f"injected fault: failed to load model '{self.model}'"), [])
        if self._take("over_memory"):
            raise ResourceError(f"injected fault: model '{self.model}' needs more than memory_limit; nothing was loaded")

    def stop(self) -> None:
        """Stop serving (idempotent); requests in flight end."""
        with self._lock:
            was = self._status
            self._status = ServerStatus.STOPPING
            self._stop_event.set()
            self._busy_release.set()
            httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        with self._lock:
            self._status = ServerStatus.STOPPED
        if was is not ServerStatus.STOPPED:
            self._emit(EventKind.STOPPED)

    def restart(self) -> None:
        """Stop, then start again on the same port."""
        self.stop()
        self._start()

    def __enter__(self) -> FakeServer:
        if self._status is not ServerStatus.READY:
            self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @classmethod
    async def astart(cls, replies: Reply = None, **kwargs: Any) -> FakeServer:
        return await asyncio.to_thread(cls.start, replies, **kwargs)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def arestart(self) -> None:
        await asyncio.to_thread(self.restart)

    async def ahealth_check(self, timeout: float = 2.0) -> HealthReport:
        return await asyncio.to_thread(self.health_check, timeout)

    async def ametrics(self, timeout: float = 5.0) -> ServerMetrics:
        return await asyncio.to_thread(self.metrics, timeout)

    async def __aenter__(self) -> FakeServer:
        if self._status is not ServerStatus.READY:
            await asyncio.to_thread(self._start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    # -- state ----------------------------------------------------------------------------

    @property
    def status(self) -> ServerStatus:
        return self._status

    @property
    def port(self) -> int:
        return self._port

    @property
    def host(self) -> str:
        return self._host

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def failure(self) -> Exception | None:
        return self._failure if self._status is ServerStatus.FAILED else None

    @property
    def adirect(self) -> AsyncDirectClient:
        if self._adirect is None:
            self._adirect = AsyncDirectClient(self, direct_pool())  # type: ignore[arg-type]
        return self._adirect

    def events(self) -> list[ServerEvent]:
        return list(self._events)

    def openai_client(self, **kwargs: Any) -> Any:
        """An ``openai.OpenAI`` talking to the fake in-process (as ``LlamaServer.openai_client``)."""
        from ..direct.openai_transport import openai_client

        return openai_client(self, **kwargs)  # type: ignore[arg-type]

    def log_tail(self, max_lines: int = 40) -> list[str]:
        return []

    def _emit(self, kind: EventKind, **fields: Any) -> None:
        event = ServerEvent(kind, time.time(), **fields)
        self._events.append(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # noqa: BLE001 - as LlamaServer: a broken callback is not the server's failure
                pass

    def health_check(self, timeout: float = 2.0) -> HealthReport:
        """The same rules and report as ``LlamaServer.health_check``."""
        if self._status is not ServerStatus.READY:
            detail = f"server is {self._status.value}" + (f": {self._failure}" if self.failure else "")
            return HealthReport(HealthStatus.UNHEALTHY, detail)
        busy = self._processing + (self.slots if self._faults.get("slots_busy") else 0)
        if busy >= self.slots and self._waiting > 0:
            return HealthReport(HealthStatus.DEGRADED, f"all {self.slots} slots busy, {self._waiting} requests waiting",
                                self.slots, self.slots, self._waiting)
        return HealthReport(HealthStatus.HEALTHY, f"serving; {min(busy, self.slots)} of {self.slots} slots busy",
                            self.slots, min(busy, self.slots), self._waiting)

    def metrics(self, timeout: float = 5.0, *, window_s: float = 60.0) -> ServerMetrics:
        """Counts of what the fake answered (the same fields as ``LlamaServer.metrics``)."""
        self._require_ready()
        return ServerMetrics(self.slots, min(self._processing, self.slots), self._waiting, self._tokens[0], 0.0, 0,
                             self._tokens[1], 0.0, 0, "", requests=dict(self._counts), restarts=self._restarts,
                             failures=self._failures)

    def _require_ready(self) -> _FakeNative:
        if self._status is not ServerStatus.READY:
            raise ServerNotRunningError(f"the server is {self._status.value}; start() it first")
        return _FakeNative(self)

    # -- faults ---------------------------------------------------------------------------

    def inject_fault(self, fault: Fault | str, **params: Any) -> None:
        """Arm a :class:`~llamaproc.testing.Fault` (the same faults as a real server)."""
        if isinstance(fault, str):
            fault = Fault(fault, params)
        with self._lock:
            if fault.kind == "error":
                self._error_seen = 0
            if fault.kind == "slots_busy":
                self._busy_release.clear()
            self._faults[fault.kind] = dict(fault.params) or {"times": 1}
        if fault.kind in ("loop_dies",):
            self._fail(NativeError("the inference loop stopped unexpectedly"))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._busy_release.set()

    def _take(self, kind: str) -> dict[str, Any] | None:
        with self._lock:
            fault = self._faults.get(kind)
            if fault is None:
                return None
            times = fault.get("times", 1)
            if times <= 1:
                del self._faults[kind]
            else:
                fault["times"] = times - 1
            return fault

    def _fail(self, error: Exception) -> None:
        with self._lock:
            if self._status is not ServerStatus.READY:
                return
            self._status = ServerStatus.FAILED
            self._failure = error
            self._failures += 1
        self._emit(EventKind.FAILED, cause=str(error), error=error)  # type: ignore[arg-type]
        if self._restart_policy is None:
            return
        threading.Thread(target=self._recover, args=(RestartBudget(self._restart_policy),), daemon=True).start()

    def _recover(self, budget: RestartBudget) -> None:
        while True:
            attempt = budget.next_attempt()
            if attempt is None:
                self._emit(EventKind.GAVE_UP, cause=str(self._failure), error=self._failure)  # type: ignore[arg-type]
                return
            delay = self._restart_policy.delay(attempt) if self._restart_policy else 0.0
            self._emit(EventKind.RESTARTING, attempt=attempt, delay_s=delay)
            if self._stop_event.wait(delay):
                return
            budget.record()
            self._restarts += 1
            with self._lock:
                self._status = ServerStatus.STARTING
            self._emit(EventKind.STARTED, attempt=attempt)
            try:
                self._load()
            except Exception as exc:  # noqa: BLE001 - a failed reload is the next failure
                with self._lock:
                    self._status = ServerStatus.FAILED
                    self._failure = exc
                    self._failures += 1
                self._emit(EventKind.FAILED, cause=str(exc), error=exc)  # type: ignore[arg-type]
                continue
            with self._lock:
                self._status = ServerStatus.READY
                self._failure = None
            self._emit(EventKind.READY, attempt=attempt)
            return

    # -- answering ------------------------------------------------------------------------

    def _record(self, method: str, path: str, body: Any, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, body, headers, time.time()))

    def _next_reply(self, request: RecordedRequest) -> str:
        replies = self._replies
        if replies is None:
            return _echo(request.body)
        if isinstance(replies, str):
            return replies
        if callable(replies):
            return str(replies(request))
        with self._lock:
            index = min(self._reply_index, len(replies) - 1)
            self._reply_index += 1
        return replies[index] if replies else ""

    def answer(self, method: str, path: str, raw: bytes, headers: dict[str, str] | None = None) -> _Answer:
        """Answer one request (what the HTTP handler and direct calls both use)."""
        headers = headers or {}
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                self._record(method, path, None, headers)
                return self._count(_Answer(*_error(400, f"invalid JSON in the request body: {exc}", "invalid_request_error")))
        request = RecordedRequest(method, path, body, headers, time.time())
        with self._lock:
            self.requests.append(request)
        if self._status is not ServerStatus.READY:
            message = "Loading model" if self._status is ServerStatus.STARTING else (
                f"the model failed and is not serving: {self._failure}" if self._failure else "the server is stopping")
            return self._count(_Answer(*_error(503, message, "unavailable_error")))
        injected = self._injected_error(path, raw)
        if injected is not None:
            return self._count(injected)
        route = _GET_ROUTES.get(path) if method == "GET" else _POST_ROUTES.get(path)
        if route is None:
            return self._count(_Answer(*NOT_FOUND))
        if method == "POST" and path not in ("/tokenize", "/detokenize", "/apply-template"):
            self._wait_for_a_slot()
            if self._take("assert_in_request"):
                self._fail(NativeError("llama.cpp hit a failed assertion while serving a request: injected fault"))
                return self._count(_Answer(*_error(500, "llama.cpp hit a failed assertion: injected fault", "server_error")))
        with self._lock:
            self._processing += 1
        try:
            return self._count(route(self, request))
        finally:
            with self._lock:
                self._processing -= 1

    def _injected_error(self, path: str, raw: bytes) -> _Answer | None:
        with self._lock:
            fault = self._faults.get("error")
            if fault is None or (fault["match"] and fault["match"] not in f"{path} {raw.decode(errors='replace')}"):
                return None
            self._error_seen += 1
            if fault["nth"] > 0 and self._error_seen < fault["nth"]:
                return None
            self._error_seen = 0
        self._take("error")
        status = fault["status"]
        if fault["body"]:
            return _Answer(status, json.loads(fault["body"]))
        kinds = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                 501: "not_supported_error", 503: "unavailable_error"}
        return _Answer(*_error(status, f"injected fault: HTTP {status}", kinds.get(status, "server_error")))

    def _wait_for_a_slot(self) -> None:
        if not self._faults.get("slots_busy"):
            return
        with self._lock:
            self._waiting += 1
        try:
            while self._faults.get("slots_busy") and not self._busy_release.wait(0.05):
                pass
        finally:
            with self._lock:
                self._waiting -= 1

    def _count(self, answer: _Answer) -> _Answer:
        outcome = ("unavailable" if answer.status == 503 else "server_error" if answer.status >= 500
                   else "client_error" if answer.status >= 400 else "ok")
        with self._lock:
            self._counts[outcome] += 1
        return answer

    def _stream_faults(self) -> tuple[float, int]:
        slow = self._faults.get("slow_tokens")
        cut = self._take("cut_stream")
        return (slow["ms"] / 1000 if slow else 0.0), (cut["after_chunks"] if cut else -1)


# -- routes --------------------------------------------------------------------------------

def _echo(body: Any) -> str:
    if isinstance(body, dict):
        if isinstance(body.get("messages"), list):
            for message in reversed(body["messages"]):
                if isinstance(message, dict) and message.get("role") == "user":
                    content = message.get("content")
                    return content if isinstance(content, str) else json.dumps(content)
        if isinstance(body.get("prompt"), str):
            return body["prompt"]
    return ""


def _tokens(text: str) -> list[int]:
    """The fake tokenizer: one token per UTF-8 byte (ids 3-258; 0-2 are special)."""
    return [b + 3 for b in text.encode()]


def _timings(prompt_n: int, predicted_n: int) -> dict[str, float]:
    return {"cache_n": 0, "prompt_n": prompt_n, "prompt_ms": 0.1, "prompt_per_token_ms": 0.1 / max(1, prompt_n),
            "prompt_per_second": 10.0 * max(1, prompt_n) * 1000, "predicted_n": predicted_n, "predicted_ms": 0.1,
            "predicted_per_token_ms": 0.1 / max(1, predicted_n), "predicted_per_second": 10000.0}


def _usage(prompt_n: int, completion_n: int) -> dict[str, Any]:
    return {"completion_tokens": completion_n, "prompt_tokens": prompt_n, "total_tokens": prompt_n + completion_n,
            "prompt_tokens_details": {"cached_tokens": 0}}


def _generate(fake: FakeServer, request: RecordedRequest, prompt_text: str) -> tuple[list[str], str, int, int]:
    body = request.body
    pieces = _PIECES.findall(fake._next_reply(request))
    limit = body.get("max_tokens", body.get("n_predict", -1))
    finish = "stop"
    if isinstance(limit, int) and 0 <= limit < len(pieces):
        pieces, finish = pieces[:limit], "length"
    prompt_n = len(_tokens(prompt_text))
    with fake._lock:
        fake._tokens[0] += prompt_n
        fake._tokens[1] += len(pieces)
    return pieces, finish, prompt_n, len(pieces)


def _check_object(body: Any) -> _Answer | None:
    if not isinstance(body, dict):
        return _Answer(*_error(400, "request body must be a JSON object", "invalid_request_error"))
    return None


def _chat(fake: FakeServer, request: RecordedRequest) -> _Answer:
    body = request.body
    bad = _check_object(body)
    if bad:
        return bad
    messages = body.get("messages")
    if not isinstance(messages, list):
        return _Answer(*_error(400, "'messages' is required", "invalid_request_error"))
    for m in messages:
        if not isinstance(m, dict) or (m.get("role") != "assistant" and m.get("content") is None):
            return _Answer(*_error(400, "All non-assistant messages must contain 'content'", "invalid_request_error"))
    prompt = "".join(f"<|{m.get('role')}|>{m.get('content')}" for m in messages)
    pieces, finish, prompt_n, n = _generate(fake, request, prompt)
    base = {"created": int(time.time()), "model": fake.model, "system_fingerprint": FINGERPRINT,
            "id": "chatcmpl-" + uuid.uuid4().hex[:32]}
    if not body.get("stream"):
        return _Answer(200, {"choices": [{"finish_reason": finish, "index": 0,
                                          "message": {"role": "assistant", "content": "".join(pieces)}}],
                             **base, "object": "chat.completion", "usage": _usage(prompt_n, n),
                             "timings": _timings(prompt_n, n)})
    chunk = {**base, "object": "chat.completion.chunk"}
    events: list[Any] = [{"choices": [{"finish_reason": None, "index": 0,
                                       "delta": {"role": "assistant", "content": None}}], **chunk}]
    events += [{"choices": [{"finish_reason": None, "index": 0, "delta": {"content": p}}], **chunk} for p in pieces]
    final: dict[str, Any] = {"choices": [{"finish_reason": finish, "index": 0, "delta": {}}], **chunk}
    events.append(final)
    if (body.get("stream_options") or {}).get("include_usage"):  # usage and timings in one more event
        events.append({"choices": [], **chunk, "usage": _usage(prompt_n, n), "timings": _timings(prompt_n, n)})
    else:
        final["timings"] = _timings(prompt_n, n)
    return _Answer(200, events=events)


def _completions(fake: FakeServer, request: RecordedRequest) -> _Answer:
    body = request.body
    bad = _check_object(body)
    if bad:
        return bad
    prompt = body.get("prompt")
    if not isinstance(prompt, (str, list)):
        return _Answer(*_error(400, "\"prompt\" must be a string, a list of tokens, a list of mixed strings & tokens, "
                                    "or a list of prompts", "invalid_request_error"))
    text = prompt if isinstance(prompt, str) else json.dumps(prompt)
    pieces, finish, prompt_n, n = _generate(fake, request, text)
    base = {"created": int(time.time()), "model": fake.model, "system_fingerprint": FINGERPRINT,
            "object": "text_completion", "id": "chatcmpl-" + uuid.uuid4().hex[:32]}
    if not body.get("stream"):
        return _Answer(200, {"choices": [{"text": "".join(pieces), "index": 0, "logprobs": None,
                                          "finish_reason": finish}], **base, "usage": _usage(prompt_n, n),
                             "timings": _timings(prompt_n, n)})
    events: list[Any] = [{"choices": [{"text": p, "index": 0, "logprobs": None, "finish_reason": None}], **base}
                         for p in pieces]
    events.append({"choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": finish}], **base,
                   "usage": _usage(prompt_n, n), "timings": _timings(prompt_n, n)})
    return _Answer(200, events=events)


def _vector(fake: FakeServer, text: str) -> list[float]:
    """A deterministic unit vector per input (the same text always gives the same vector)."""
    values: list[float] = []
    counter = 0
    while len(values) < fake.embedding_dim:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values += [(v / 2**31) - 1.0 for v in struct.unpack("<8I", digest)]
        counter += 1
    values = values[:fake.embedding_dim]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [v / norm for v in values]


def _embeddings(fake: FakeServer, request: RecordedRequest) -> _Answer:
    body = request.body
    bad = _check_object(body)
    if bad:
        return bad
    inputs = body.get("input", body.get("content"))
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs:
        return _Answer(*_error(400, "\"input\" must be provided", "invalid_request_error"))
    base64_out = body.get("encoding_format") == "base64"
    data = []
    for i, item in enumerate(inputs):
        vec = _vector(fake, item if isinstance(item, str) else json.dumps(item))
        if base64_out:
            data.append({"embedding": base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode(),
                         "encoding_format": "base64", "index": i, "object": "embedding"})
        else:
            data.append({"embedding": vec, "index": i, "object": "embedding"})
    n = sum(len(_tokens(i if isinstance(i, str) else json.dumps(i))) for i in inputs)
    return _Answer(200, {"model": fake.model, "object": "list", "usage": {"prompt_tokens": n, "total_tokens": n},
                         "data": data})


def _tokenize(fake: FakeServer, request: RecordedRequest) -> _Answer:
    body = request.body if isinstance(request.body, dict) else {}
    return _Answer(200, {"tokens": _tokens(str(body.get("content", "")))})


def _detokenize(fake: FakeServer, request: RecordedRequest) -> _Answer:
    body = request.body if isinstance(request.body, dict) else {}
    tokens = [t for t in body.get("tokens", []) if isinstance(t, int) and t >= 3]
    return _Answer(200, {"content": bytes(min(255, t - 3) for t in tokens).decode(errors="replace")})


def _health(fake: FakeServer, request: RecordedRequest) -> _Answer:
    return _Answer(200, {"status": "ok"})


def _models(fake: FakeServer, request: RecordedRequest) -> _Answer:
    return _Answer(200, {"models": [{"name": fake.model, "model": fake.model, "modified_at": "", "size": "",
                                     "digest": "", "type": "model", "description": "", "tags": [""],
                                     "capabilities": ["completion"], "parameters": "",
                                     "details": {"parent_model": "", "format": "gguf", "family": "", "families": [""],
                                                 "parameter_size": "", "quantization_level": ""}}],
                         "object": "list",
                         "data": [{"id": fake.model, "aliases": [fake.model], "tags": [], "object": "model",
                                   "created": int(time.time()), "owned_by": "llamacpp",
                                   "meta": {"vocab_type": 1, "n_vocab": 259, "n_ctx": fake.context_size,
                                            "n_ctx_train": fake.context_size, "n_embd": fake.embedding_dim,
                                            "n_params": 0, "size": 0, "ftype": "fake"}}]})


def _props(fake: FakeServer, request: RecordedRequest) -> _Answer:
    return _Answer(200, {
        "default_generation_settings": {"params": {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
                                                   "max_tokens": -1, "n_predict": -1, "stream": False},
                                        "n_ctx": fake.context_size},
        "total_slots": fake.slots, "model_alias": fake.model, "model_ftype": "fake", "model_path": fake.model,
        "modalities": {"vision": False, "video": False, "audio": False}, "media_marker": "<__media__>",
        "endpoint_slots": True, "endpoint_props": False, "endpoint_metrics": False, "ui": False, "ui_settings": {},
        "chat_template": "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}",
        "chat_template_caps": {}, "bos_token": "<s>", "eos_token": "</s>", "build_info": FINGERPRINT,
        "is_sleeping": False, "cors_proxy_enabled": False})


def _metrics_endpoint(fake: FakeServer, request: RecordedRequest) -> _Answer:
    return _Answer(*_error(501, "This server does not support metrics endpoint. Start it with `--metrics`",
                           "not_supported_error"))


def _apply_template(fake: FakeServer, request: RecordedRequest) -> _Answer:
    body = request.body if isinstance(request.body, dict) else {}
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    return _Answer(200, {"prompt": "".join(f"<|{m.get('role')}|>{m.get('content')}" for m in messages
                                           if isinstance(m, dict))})


_GET_ROUTES = {"/health": _health, "/v1/health": _health, "/models": _models, "/v1/models": _models,
               "/props": _props, "/metrics": _metrics_endpoint}
_POST_ROUTES = {"/v1/chat/completions": _chat, "/chat/completions": _chat, "/v1/completions": _completions,
                "/completions": _completions, "/v1/embeddings": _embeddings, "/embeddings": _embeddings,
                "/tokenize": _tokenize, "/detokenize": _detokenize, "/apply-template": _apply_template}


def _sse(event: Any) -> bytes:
    return b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"


def _handler_for(fake: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "llama.cpp"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
            pass  # quiet, as the real server is by default

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            answer = fake.answer(method, self.path.split("?", 1)[0], raw, dict(self.headers.items()))
            if not answer.stream:
                data = json.dumps(answer.body, ensure_ascii=False).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            delay, cut = fake._stream_faults()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Accel-Buffering", "no")
            self.end_headers()
            try:
                for i, event in enumerate(answer.events or []):
                    if cut >= 0 and i >= cut:
                        break
                    if delay and fake._stop_event.wait(delay):
                        break
                    if fake._status is not ServerStatus.READY:
                        self._chunk(_sse({"error": {"code": 503, "message": "the model failed and is not serving",
                                                    "type": "unavailable_error"}}))
                        break
                    self._chunk(_sse(event))
                else:
                    if answer.done_marker:
                        self._chunk(b"data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def do_GET(self) -> None:  # noqa: N802 - stdlib's name
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802 - stdlib's name
            self._serve("POST")

    return Handler


class _FakeNative:
    """The slice of the native server the direct API uses: ``call()``."""

    def __init__(self, fake: FakeServer) -> None:
        self._fake = fake

    def call(self, path: str, body: str, post: bool = True) -> _FakeCall:
        return _FakeCall(self._fake, self._fake.answer("POST" if post else "GET", path, body.encode()))


class _FakeCall:
    """A direct call to the fake: its events, released as slow_tokens/cut_stream say."""

    def __init__(self, fake: FakeServer, answer: _Answer) -> None:
        self._fake = fake
        self._answer = answer
        self._cancelled = threading.Event()
        if answer.stream:
            delay, cut = fake._stream_faults()
            events = answer.events or []
            self._cut = 0 <= cut < len(events)
            self._events = deque(json.dumps(e, ensure_ascii=False) for e in (events[:cut] if self._cut else events))
            self._delay = delay
        else:
            self._events = deque([json.dumps(answer.body, ensure_ascii=False)])
            self._cut, self._delay = False, 0.0
        self._next_at = time.monotonic() + self._delay

    def wait(self, timeout: float) -> tuple[list[str], bool, int, bool, str]:
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while self._events and not self._cancelled.is_set():
            now = time.monotonic()
            if now < self._next_at:
                if out or now >= deadline:
                    break
                self._cancelled.wait(min(self._next_at, deadline) - now)
                continue
            out.append(self._events.popleft())
            self._next_at = now + self._delay
        done = not self._events or self._cancelled.is_set()
        failed = self._fake.status is not ServerStatus.READY and self._answer.stream and bool(self._events)
        end = ("cancelled" if self._cancelled.is_set() else "interrupted" if (self._cut or failed) and done
               else "complete" if done else "running")
        return out, done, self._answer.status, self._answer.stream, end

    def cancel(self) -> None:
        self._cancelled.set()


__all__ = ["FakeServer", "RecordedRequest"]
