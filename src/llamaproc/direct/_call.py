"""One in-process call: start it on the native side, pull its results, map its errors.

The native worker runs llama.cpp's route handler and queues the response's JSON texts; these
helpers pull them in short slices with the GIL released (``DirectCall.wait``), so Ctrl-C,
timeouts and asyncio cancellation get through. No Python code runs on native threads.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar, cast

from ..contract import ServerStatus
from ..errors import RequestTimeoutError, ServerNotRunningError, UnavailableError, request_error
from ..messages import message
from .target import Call, CallBatch, CallTarget

T = TypeVar("T")
SLICE_S = 0.1  # longest uninterrupted native wait of a sync caller (Ctrl-C latency)


def start_call(server: CallTarget, path: str, body: dict[str, Any] | None, *, post: bool = True) -> Call:
    """Start POST (or GET) ``path`` on the server's current model; raise if it is not READY."""
    return server.open_call(path, json.dumps(body if body is not None else {}, ensure_ascii=False), post)


class _Deadline:
    def __init__(self, timeout: float | None) -> None:
        self.at = None if timeout is None else time.monotonic() + timeout
        self.timeout = timeout

    def left(self, slice_s: float) -> float:
        if self.at is None:
            return slice_s
        return max(0.0, min(slice_s, self.at - time.monotonic()))

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at


def _timeout_error(deadline: _Deadline) -> RequestTimeoutError:
    return RequestTimeoutError(message("direct.timeout", timeout=deadline.timeout), status_code=408, type="timeout")


def _interrupted(server: CallTarget) -> Exception:
    status = server.status
    if status in (ServerStatus.STOPPING, ServerStatus.STOPPED):
        return ServerNotRunningError(message("direct.cut_short_stopping", status=status.value))
    failure = server.failure
    return UnavailableError(message("direct.cut_short", reason=failure or message("direct.model_replaced")),
                            status_code=503, type="unavailable_error")


def pull(call: Call, deadline: _Deadline, until: Callable[[CallBatch], bool], into: deque[str]) -> CallBatch:
    """Wait (in slices) until ``until(batch)``; payloads go to ``into``. Cancels on any exception."""
    try:
        while True:
            batch = call.wait(deadline.left(SLICE_S))
            into.extend(batch.payloads)
            if until(batch):
                return batch
            if deadline.passed():
                raise _timeout_error(deadline)
    except BaseException:
        call.cancel()
        raise


async def apull(call: Call, pool: ThreadPoolExecutor, deadline: _Deadline,
                until: Callable[[CallBatch], bool], into: deque[str]) -> CallBatch:
    """:func:`pull` for asyncio: waits run on ``pool``; task cancellation cancels the call."""
    loop = asyncio.get_running_loop()
    try:
        while True:
            batch = await loop.run_in_executor(pool, call.wait, deadline.left(1.0))
            into.extend(batch.payloads)
            if until(batch):
                return batch
            if deadline.passed():
                raise _timeout_error(deadline)
    except BaseException:
        call.cancel()  # wakes the pool thread's wait at once
        raise


def _status_known(batch: CallBatch) -> bool:
    return batch.done or batch.status != 0


def _has_items(batch: CallBatch) -> bool:
    return batch.done or bool(batch.payloads)


def response_body(server: CallTarget, batch: CallBatch, payloads: deque[str]) -> Any:
    """The body of a finished non-stream call, or the typed error it answered with."""
    text = payloads.popleft() if payloads else ""
    body = json.loads(text) if text else {}
    if batch.status >= 400 or batch.status == 0:
        if batch.status == 503 and not server.serving:
            raise ServerNotRunningError(message("direct.server_status",
                                                status=server.status.value)) from request_error(503, body)
        raise request_error(batch.status or 500, body)
    return body


def call_once(server: CallTarget, path: str, body: dict[str, Any], timeout: float | None) -> Any:
    """A non-streaming call: its decoded body."""
    call = start_call(server, path, body)
    payloads: deque[str] = deque()
    batch = pull(call, _Deadline(timeout), lambda b: b.done, payloads)
    return response_body(server, batch, payloads)


async def acall_once(server: CallTarget, pool: ThreadPoolExecutor, path: str, body: dict[str, Any],
                     timeout: float | None) -> Any:
    call = start_call(server, path, body)
    payloads: deque[str] = deque()
    batch = await apull(call, pool, _Deadline(timeout), lambda b: b.done, payloads)
    return response_body(server, batch, payloads)


class _StreamState(Generic[T]):
    """What a sync and an async stream share: the queued events, how the call ended."""

    def __init__(self, server: CallTarget, call: Call, batch: CallBatch, payloads: deque[str],
                 timeout: float | None) -> None:
        self._server = server
        self._call = call
        self._payloads = payloads
        self._done = batch.done
        self._end = batch.end
        self._deadline = _Deadline(timeout)
        self._closed = False

    def _update(self, batch: CallBatch) -> None:
        self._done, self._end = batch.done, batch.end

    def _at_end(self) -> bool:
        """True when nothing follows; raises if the stream was cut short."""
        if self._payloads or not self._done:
            return False
        self._closed = True
        if self._end == "interrupted":
            raise _interrupted(self._server)
        return True

    def _pop_event(self) -> T:
        event = json.loads(self._payloads.popleft())
        if isinstance(event, dict) and "error" in event and len(event) == 1:
            self._closed = True
            self._call.cancel()
            raise request_error(int(event["error"].get("code", 500) or 500), event)
        return cast(T, event)

    def __del__(self) -> None:
        call = getattr(self, "_call", None)
        if call is not None:
            call.cancel()


class Stream(_StreamState[T]):
    """The events of a streamed response, pulled as you iterate (like ``openai.Stream``).

    Generation runs in the server's continuous batch whether or not you read. What cancels
    it: leaving a ``with ... as stream:`` block, :meth:`close`, or dropping the last reference
    to the stream; the slot is free after the decode step in progress. ``break`` alone only
    stops reading: while ``stream`` is still referenced, generation goes on until it ends. An error event raises the typed error after
    the events before it; a stream cut short by ``stop()`` raises ``ServerNotRunningError``.
    """

    @classmethod
    def open(cls, server: CallTarget, path: str, body: dict[str, Any], timeout: float | None) -> Stream[Any] | Any:
        call = start_call(server, path, body)
        payloads: deque[str] = deque()
        deadline = _Deadline(timeout)
        batch = pull(call, deadline, _status_known, payloads)
        if not batch.stream:  # an error before streaming began (or a route that does not stream)
            batch = pull(call, deadline, lambda b: b.done, payloads)
            return response_body(server, batch, payloads)
        return cls(server, call, batch, payloads, timeout)

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._closed:
            raise StopIteration
        while not self._payloads:
            if self._at_end():
                raise StopIteration
            self._update(pull(self._call, self._deadline, _has_items, self._payloads))
        return self._pop_event()

    def close(self) -> None:
        """Stop generating now (idempotent)."""
        self._closed = True
        self._call.cancel()

    def __enter__(self) -> Stream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStream(_StreamState[T]):
    """:class:`Stream` for asyncio: ``async for``, ``await aclose()``, ``async with``; cancelling
    the task that iterates cancels the generation."""

    def __init__(self, server: CallTarget, pool: ThreadPoolExecutor, call: Call, batch: CallBatch,
                 payloads: deque[str], timeout: float | None) -> None:
        super().__init__(server, call, batch, payloads, timeout)
        self._pool = pool

    @classmethod
    async def open(cls, server: CallTarget, pool: ThreadPoolExecutor, path: str, body: dict[str, Any],
                   timeout: float | None) -> AsyncStream[Any] | Any:
        call = start_call(server, path, body)
        payloads: deque[str] = deque()
        deadline = _Deadline(timeout)
        batch = await apull(call, pool, deadline, _status_known, payloads)
        if not batch.stream:
            batch = await apull(call, pool, deadline, lambda b: b.done, payloads)
            return response_body(server, batch, payloads)
        return cls(server, pool, call, batch, payloads, timeout)

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        if self._closed:
            raise StopAsyncIteration
        while not self._payloads:
            if self._at_end():
                raise StopAsyncIteration
            self._update(await apull(self._call, self._pool, self._deadline, _has_items, self._payloads))
        return self._pop_event()

    async def aclose(self) -> None:
        """Stop generating now (idempotent)."""
        self._closed = True
        self._call.cancel()

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
