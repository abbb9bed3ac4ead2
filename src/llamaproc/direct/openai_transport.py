"""The official OpenAI SDK, talking to the server in-process (``server.openai_client()``).

An httpx transport (httpx's documented extension point) turns each request the SDK makes
into a direct call and its result back into an httpx response: the SDK's own types, errors,
streams and ``close()`` work unchanged, with no socket and no HTTP server thread in between.
Needs the ``openai`` package (``pip install llamaproc[openai]``). The SDK moved from ``httpx``
to its fork ``httpx2`` (same API) in version 3; the transport uses whichever the installed
SDK imports.
"""

from __future__ import annotations

import functools
import json
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..errors import ServerNotRunningError
from ..messages import message
from . import _call

if TYPE_CHECKING:
    from .target import CallTarget

BASE_URL = "http://in-process.llamaproc.invalid/v1"  # never resolved: the transport answers
_SSE = {"content-type": "text/event-stream"}
_JSON = {"content-type": "application/json"}


def _server(ref: weakref.ref[CallTarget]) -> CallTarget:
    server = ref()
    if server is None:
        raise ServerNotRunningError(message("direct.server_gone"))
    return server


def _body(request: Any) -> dict[str, Any] | None:
    raw = request.content
    return json.loads(raw) if raw else None


def _done_marker(path: str) -> bytes:
    # llama-server ends OpenAI chat/completions streams with [DONE]; /v1/responses and
    # /v1/messages streams end without it
    return b"data: [DONE]\n\n" if path.endswith(("/chat/completions", "/completions")) else b""


def _http_module() -> Any:
    """The httpx module the installed openai SDK uses (``httpx2`` from openai 3 on)."""
    import openai._base_client as base

    return getattr(base, "httpx2", None) or getattr(base, "httpx")


@functools.lru_cache(maxsize=None)
def _transports(httpx: Any) -> tuple[type, type]:
    """(DirectTransport, AsyncDirectTransport) for that httpx module."""

    class _Events(httpx.SyncByteStream):
        def __init__(self, call: Any, payloads: deque[str], done: bool, path: str) -> None:
            self._call, self._payloads, self._done, self._path = call, payloads, done, path

        def __iter__(self) -> Iterator[bytes]:
            deadline = _call._Deadline(None)
            while True:
                while self._payloads:
                    yield b"data: " + self._payloads.popleft().encode() + b"\n\n"
                if self._done:
                    break
                self._done = _call.pull(self._call, deadline, _call._has_items, self._payloads).done
            yield _done_marker(self._path)

        def close(self) -> None:
            self._call.cancel()


    class _AsyncEvents(httpx.AsyncByteStream):
        def __init__(self, call: Any, pool: ThreadPoolExecutor, payloads: deque[str], done: bool, path: str) -> None:
            self._call, self._pool, self._payloads, self._done, self._path = call, pool, payloads, done, path

        async def __aiter__(self) -> AsyncIterator[bytes]:
            deadline = _call._Deadline(None)
            while True:
                while self._payloads:
                    yield b"data: " + self._payloads.popleft().encode() + b"\n\n"
                if self._done:
                    break
                batch = await _call.apull(self._call, self._pool, deadline, _call._has_items, self._payloads)
                self._done = batch.done
            yield _done_marker(self._path)

        async def aclose(self) -> None:
            self._call.cancel()


    class DirectTransport(httpx.BaseTransport):
        """Answers every request with a direct call to ``server`` (sync SDK client)."""

        def __init__(self, server: CallTarget) -> None:
            self._ref = weakref.ref(server)

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            path = request.url.path
            call = _call.start_call(_server(self._ref), path, _body(request), post=request.method == "POST")
            payloads: deque[str] = deque()
            deadline = _call._Deadline(None)
            batch = _call.pull(call, deadline, _call._status_known, payloads)
            if batch.stream:
                return httpx.Response(batch.status, headers=_SSE, stream=_Events(call, payloads, batch.done, path))
            batch = _call.pull(call, deadline, lambda b: b.done, payloads)
            return httpx.Response(batch.status, headers=_JSON, content="".join(payloads).encode())


    class AsyncDirectTransport(httpx.AsyncBaseTransport):
        """Answers every request with a direct call to ``server`` (async SDK client)."""

        def __init__(self, server: CallTarget, pool: ThreadPoolExecutor) -> None:
            self._ref = weakref.ref(server)
            self._pool = pool

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            path = request.url.path
            call = _call.start_call(_server(self._ref), path, _body(request), post=request.method == "POST")
            payloads: deque[str] = deque()
            deadline = _call._Deadline(None)
            batch = await _call.apull(call, self._pool, deadline, _call._status_known, payloads)
            if batch.stream:
                return httpx.Response(batch.status, headers=_SSE,
                                      stream=_AsyncEvents(call, self._pool, payloads, batch.done, path))
            batch = await _call.apull(call, self._pool, deadline, lambda b: b.done, payloads)
            return httpx.Response(batch.status, headers=_JSON, content="".join(payloads).encode())



    return DirectTransport, AsyncDirectTransport


def openai_client(server: CallTarget, **kwargs: Any) -> Any:
    """An ``openai.OpenAI`` whose requests go to ``server`` in-process."""
    import openai

    httpx = _http_module()
    transport, _ = _transports(httpx)
    kwargs.setdefault("max_retries", 0)  # a retry cannot help an in-process call
    return openai.OpenAI(base_url=BASE_URL, api_key=kwargs.pop("api_key", "in-process"),
                         http_client=httpx.Client(transport=transport(server)), **kwargs)


def async_openai_client(server: CallTarget, pool: ThreadPoolExecutor, **kwargs: Any) -> Any:
    """An ``openai.AsyncOpenAI`` whose requests go to ``server`` in-process."""
    import openai

    httpx = _http_module()
    _, transport = _transports(httpx)
    kwargs.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=BASE_URL, api_key=kwargs.pop("api_key", "in-process"),
                              http_client=httpx.AsyncClient(transport=transport(server, pool)), **kwargs)
