"""Result types of direct calls: the JSON llama-server answers, typed for editors and mypy.

They are plain dicts at run time (byte for byte what HTTP returns, llama.cpp's extras such as
``timings`` included); ``total=False`` where llama.cpp sends a key only sometimes.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict


class ChatMessage(TypedDict, total=False):
    role: str
    content: str | list[dict[str, Any]] | None
    reasoning_content: str
    tool_calls: list[dict[str, Any]]
    name: str
    tool_call_id: str


class Usage(TypedDict, total=False):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int]


class ChatChoice(TypedDict, total=False):
    index: int
    message: ChatMessage
    finish_reason: Literal["stop", "length", "tool_calls"] | None
    logprobs: dict[str, Any] | None


class ChatCompletion(TypedDict, total=False):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChatChoice]
    usage: Usage
    timings: dict[str, float]


class ChatDelta(TypedDict, total=False):
    role: str
    content: str | None
    reasoning_content: str
    tool_calls: list[dict[str, Any]]


class ChatChunkChoice(TypedDict, total=False):
    index: int
    delta: ChatDelta
    finish_reason: Literal["stop", "length", "tool_calls"] | None


class ChatCompletionChunk(TypedDict, total=False):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChatChunkChoice]
    usage: Usage
    timings: dict[str, float]


class CompletionChoice(TypedDict, total=False):
    index: int
    text: str
    finish_reason: Literal["stop", "length"] | None
    logprobs: dict[str, Any] | None


class Completion(TypedDict, total=False):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[CompletionChoice]
    usage: Usage
    timings: dict[str, float]


class Embedding(TypedDict):
    index: int
    object: Literal["embedding"]
    embedding: list[float] | str


class CreateEmbeddingResponse(TypedDict, total=False):
    object: Literal["list"]
    model: str
    data: list[Embedding]
    usage: Usage


__all__ = ["ChatMessage", "Usage", "ChatChoice", "ChatCompletion", "ChatDelta", "ChatChunkChoice",
           "ChatCompletionChunk", "CompletionChoice", "Completion", "Embedding", "CreateEmbeddingResponse"]
