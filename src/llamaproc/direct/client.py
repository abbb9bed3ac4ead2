"""``server.direct`` and ``server.adirect``: call the server from Python without an HTTP hop.

The calls run llama.cpp's own route handlers in-process (no socket, no JSON over loopback),
in the same continuous batch as HTTP clients. Shapes follow the OpenAI SDK::

    d = server.direct
    r = d.chat.completions.create(messages=[{"role": "user", "content": "Hi"}], max_tokens=64)
    with d.chat.completions.create(messages=..., stream=True) as stream:
        for chunk in stream:                  # leaving the block cancels the rest
            print(chunk["choices"][0]["delta"].get("content") or "", end="")
    vectors = d.embed(["a", "b"])             # numpy (2, dim) float32, bit-exact
    tokens = d.tokenize("text")               # numpy int32

Results are dicts, exactly what HTTP returns (typed in :mod:`llamaproc.direct.types`).
Parameters the SDK names pass through unchanged; llama.cpp's own (``top_k``, ``min_p``,
``grammar``, ``json_schema``, ``ignore_eos``, ``cache_prompt`` …) go in as keywords or
``extra_body``. Errors raise the typed :class:`~llamaproc.errors.RequestError` classes. A call
on a server that is not READY raises ``ServerNotRunningError``. Unlike HTTP, direct calls do
not check the API key: they come from the process that owns the server.
"""

from __future__ import annotations

import base64
import threading
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal, cast, overload

import numpy as np

from ..errors import ServerNotRunningError
from ..messages import message
from . import _call
from ._call import AsyncStream, Stream
from .types import ChatCompletion, ChatCompletionChunk, Completion, CreateEmbeddingResponse

if TYPE_CHECKING:
    from .target import CallTarget


def _body(fixed: dict[str, Any], params: dict[str, Any], extra_body: Mapping[str, Any] | None) -> dict[str, Any]:
    body = {k: v for k, v in fixed.items() if v is not None}
    body.update(params)
    if extra_body:
        body.update(extra_body)
    return body


class _ServerRef:
    """A weak reference to the server, so that a client kept around does not keep it alive."""

    def __init__(self, server: CallTarget) -> None:
        self._ref = weakref.ref(server)

    @property
    def server(self) -> CallTarget:
        server = self._ref()
        if server is None:
            raise ServerNotRunningError(message("direct.server_gone"))
        return server


class ChatCompletions(_ServerRef):
    """``direct.chat.completions``"""

    @overload
    def create(self, *, messages: Sequence[Mapping[str, Any]], stream: Literal[False] = False,
               timeout: float | None = None, extra_body: Mapping[str, Any] | None = None,
               **params: Any) -> ChatCompletion: ...

    @overload
    def create(self, *, messages: Sequence[Mapping[str, Any]], stream: Literal[True],
               timeout: float | None = None, extra_body: Mapping[str, Any] | None = None,
               **params: Any) -> Stream[ChatCompletionChunk]: ...

    def create(self, *, messages: Sequence[Mapping[str, Any]], stream: bool = False, timeout: float | None = None,
               extra_body: Mapping[str, Any] | None = None, **params: Any) -> Any:
        """POST /v1/chat/completions. ``timeout`` (s) cancels the call and raises
        ``RequestTimeoutError``; ``stream=True`` returns a :class:`Stream` of chunks."""
        body = _body({"messages": list(messages), "stream": stream}, params, extra_body)
        if stream:
            return Stream.open(self.server, "/v1/chat/completions", body, timeout)
        return _call.call_once(self.server, "/v1/chat/completions", body, timeout)


class Completions(_ServerRef):
    """``direct.completions`` (OpenAI text completions)."""

    @overload
    def create(self, *, prompt: str | Sequence[int], stream: Literal[False] = False, timeout: float | None = None,
               extra_body: Mapping[str, Any] | None = None, **params: Any) -> Completion: ...

    @overload
    def create(self, *, prompt: str | Sequence[int], stream: Literal[True], timeout: float | None = None,
               extra_body: Mapping[str, Any] | None = None, **params: Any) -> Stream[Completion]: ...

    def create(self, *, prompt: str | Sequence[int], stream: bool = False, timeout: float | None = None,
               extra_body: Mapping[str, Any] | None = None, **params: Any) -> Any:
        """POST /v1/completions."""
        body = _body({"prompt": prompt if isinstance(prompt, str) else list(prompt), "stream": stream}, params,
                     extra_body)
        if stream:
            return Stream.open(self.server, "/v1/completions", body, timeout)
        return _call.call_once(self.server, "/v1/completions", body, timeout)


class Embeddings(_ServerRef):
    """``direct.embeddings`` (needs a server started with ``embeddings=True``)."""

    def create(self, *, input: str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]],
               encoding_format: Literal["float", "base64"] | None = None, timeout: float | None = None,
               extra_body: Mapping[str, Any] | None = None, **params: Any) -> CreateEmbeddingResponse:
        """POST /v1/embeddings."""
        body = _body({"input": input if isinstance(input, str) else list(input), "encoding_format": encoding_format},
                     params, extra_body)
        return cast(CreateEmbeddingResponse, _call.call_once(self.server, "/v1/embeddings", body, timeout))


class _Chat:
    def __init__(self, server: CallTarget) -> None:
        self.completions = ChatCompletions(server)


def _embedding_array(response: Mapping[str, Any]) -> np.ndarray:
    rows = sorted(response["data"], key=lambda d: d["index"])
    vectors = [np.frombuffer(base64.b64decode(r["embedding"]), dtype="<f4") for r in rows]
    return np.stack(vectors).astype(np.float32, copy=False) if vectors else np.zeros((0, 0), np.float32)


def _ranking(response: Mapping[str, Any]) -> list[tuple[int, float]]:
    results = [(int(r["index"]), float(r["relevance_score"])) for r in response["results"]]
    return sorted(results, key=lambda r: r[1], reverse=True)


class DirectClient(_ServerRef):
    """In-process calls to one server: ``server.direct`` (see the module docstring)."""

    def __init__(self, server: CallTarget) -> None:
        super().__init__(server)
        self.chat = _Chat(server)
        self.completions = Completions(server)
        self.embeddings = Embeddings(server)

    def embed(self, input: str | Sequence[str], *, timeout: float | None = None) -> np.ndarray:
        """Embeddings as a float32 array of shape ``(n, dim)`` (one row for a single string).
        The values cross as raw float32 (base64), exactly what the model computed."""
        texts = [input] if isinstance(input, str) else list(input)
        response = self.embeddings.create(input=texts, encoding_format="base64", timeout=timeout)
        return _embedding_array(response)

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None,
               timeout: float | None = None) -> list[tuple[int, float]]:
        """``(document index, score)`` pairs, best first (needs a reranking model and
        ``--reranking``)."""
        body = _body({"query": query, "documents": list(documents), "top_n": top_n}, {}, None)
        return _ranking(_call.call_once(self.server, "/v1/rerank", body, timeout))

    def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = True) -> np.ndarray:
        """Token ids of ``text`` as an int32 array."""
        body = {"content": text, "add_special": add_special, "parse_special": parse_special}
        return np.asarray(_call.call_once(self.server, "/tokenize", body, None)["tokens"], dtype=np.int32)

    def detokenize(self, tokens: Sequence[int] | np.ndarray) -> str:
        """The text of ``tokens``."""
        body = {"tokens": [int(t) for t in np.asarray(tokens).ravel()]}
        return str(_call.call_once(self.server, "/detokenize", body, None)["content"])

    def post(self, path: str, body: Mapping[str, Any], *, timeout: float | None = None) -> Any:
        """POST any route the server has (``/v1/responses``, ``/v1/messages``, ``/infill``,
        ``/apply-template`` …) with ``body``: the decoded response, or a :class:`Stream`
        when the response streams."""
        return Stream.open(self.server, path, dict(body), timeout)


class AsyncChatCompletions(_ServerRef):
    """``adirect.chat.completions``"""

    def __init__(self, server: CallTarget, pool: ThreadPoolExecutor) -> None:
        super().__init__(server)
        self._pool = pool

    async def create(self, *, messages: Sequence[Mapping[str, Any]], stream: bool = False,
                     timeout: float | None = None, extra_body: Mapping[str, Any] | None = None,
                     **params: Any) -> Any:
        """POST /v1/chat/completions; ``stream=True`` returns an :class:`AsyncStream`."""
        body = _body({"messages": list(messages), "stream": stream}, params, extra_body)
        if stream:
            return await AsyncStream.open(self.server, self._pool, "/v1/chat/completions", body, timeout)
        return await _call.acall_once(self.server, self._pool, "/v1/chat/completions", body, timeout)


class AsyncCompletions(_ServerRef):
    """``adirect.completions``"""

    def __init__(self, server: CallTarget, pool: ThreadPoolExecutor) -> None:
        super().__init__(server)
        self._pool = pool

    async def create(self, *, prompt: str | Sequence[int], stream: bool = False, timeout: float | None = None,
                     extra_body: Mapping[str, Any] | None = None, **params: Any) -> Any:
        body = _body({"prompt": prompt if isinstance(prompt, str) else list(prompt), "stream": stream}, params,
                     extra_body)
        if stream:
            return await AsyncStream.open(self.server, self._pool, "/v1/completions", body, timeout)
        return await _call.acall_once(self.server, self._pool, "/v1/completions", body, timeout)


class AsyncEmbeddings(_ServerRef):
    """``adirect.embeddings``"""

    def __init__(self, server: CallTarget, pool: ThreadPoolExecutor) -> None:
        super().__init__(server)
        self._pool = pool

    async def create(self, *, input: str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]],
                     encoding_format: Literal["float", "base64"] | None = None, timeout: float | None = None,
                     extra_body: Mapping[str, Any] | None = None, **params: Any) -> CreateEmbeddingResponse:
        body = _body({"input": input if isinstance(input, str) else list(input), "encoding_format": encoding_format},
                     params, extra_body)
        return cast(CreateEmbeddingResponse,
                    await _call.acall_once(self.server, self._pool, "/v1/embeddings", body, timeout))


class _AsyncChat:
    def __init__(self, server: CallTarget, pool: ThreadPoolExecutor) -> None:
        self.completions = AsyncChatCompletions(server, pool)


class AsyncDirectClient(_ServerRef):
    """``server.adirect``: :class:`DirectClient` with ``async def`` methods and async streams.
    Waits run on a small thread pool of the server's (the GIL is released while they wait);
    cancelling the awaiting task cancels the call."""

    def __init__(self, server: CallTarget, pool: ThreadPoolExecutor) -> None:
        super().__init__(server)
        self._pool = pool
        self.chat = _AsyncChat(server, pool)
        self.completions = AsyncCompletions(server, pool)
        self.embeddings = AsyncEmbeddings(server, pool)

    async def embed(self, input: str | Sequence[str], *, timeout: float | None = None) -> np.ndarray:
        texts = [input] if isinstance(input, str) else list(input)
        return _embedding_array(await self.embeddings.create(input=texts, encoding_format="base64", timeout=timeout))

    async def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None,
                     timeout: float | None = None) -> list[tuple[int, float]]:
        body = _body({"query": query, "documents": list(documents), "top_n": top_n}, {}, None)
        return _ranking(await _call.acall_once(self.server, self._pool, "/v1/rerank", body, timeout))

    async def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = True) -> np.ndarray:
        body = {"content": text, "add_special": add_special, "parse_special": parse_special}
        result = await _call.acall_once(self.server, self._pool, "/tokenize", body, None)
        return np.asarray(result["tokens"], dtype=np.int32)

    async def detokenize(self, tokens: Sequence[int] | np.ndarray) -> str:
        body = {"tokens": [int(t) for t in np.asarray(tokens).ravel()]}
        return str((await _call.acall_once(self.server, self._pool, "/detokenize", body, None))["content"])

    async def post(self, path: str, body: Mapping[str, Any], *, timeout: float | None = None) -> Any:
        return await AsyncStream.open(self.server, self._pool, path, dict(body), timeout)


_shared_pool: ThreadPoolExecutor | None = None
_shared_pool_lock = threading.Lock()


def direct_pool() -> ThreadPoolExecutor:
    """The threads asyncio direct calls wait on, one pool for every server of the process (each
    wait releases the GIL). Threads start on demand and stay for the next call, so stopping and
    starting servers neither leaks nor churns threads."""
    global _shared_pool
    with _shared_pool_lock:
        if _shared_pool is None:
            _shared_pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="llamaproc-direct")
        return _shared_pool


__all__ = ["DirectClient", "AsyncDirectClient", "Stream", "AsyncStream"]
