"""The fake server's answers: llama-server's JSON shapes for each route it emulates.

Every route is a function ``(fake, request) -> Answer``; the HTTP handler
(:mod:`.fake_http`) and direct calls (:mod:`.fake_direct`) both serve what these return.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fake_server import FakeServer

FINGERPRINT = "b0-fake"

@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received (HTTP or direct)."""

    method: str
    path: str
    body: Any  # the decoded JSON body (None for GET or when the body was not JSON)
    headers: dict[str, str]
    time: float




def error_answer(status: int, message: str, kind: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"code": status, "message": message, "type": kind}}


NOT_FOUND = error_answer(404, "File Not Found", "not_found_error")
_PIECES = re.compile(r"\s*\S+|\s+")


class Answer:
    """What a route answers: a status and a body, or a stream of events."""

    def __init__(self, status: int, body: Any = None, events: list[Any] | None = None, done: bool = True) -> None:
        self.status, self.body, self.events, self.done_marker = status, body, events, done

    @property
    def stream(self) -> bool:
        return self.events is not None


# -- routes --------------------------------------------------------------------------------

def echo(body: Any) -> str:
    if isinstance(body, dict):
        if isinstance(body.get("messages"), list):
            for message in reversed(body["messages"]):
                if isinstance(message, dict) and message.get("role") == "user":
                    content = message.get("content")
                    return content if isinstance(content, str) else json.dumps(content)
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            return prompt
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
    pieces = _PIECES.findall(fake.next_reply(request))
    limit = body.get("max_tokens", body.get("n_predict", -1))
    finish = "stop"
    if isinstance(limit, int) and 0 <= limit < len(pieces):
        pieces, finish = pieces[:limit], "length"
    prompt_n = len(_tokens(prompt_text))
    fake.count_tokens(prompt_n, len(pieces))
    return pieces, finish, prompt_n, len(pieces)


def _check_object(body: Any) -> Answer | None:
    if not isinstance(body, dict):
        return Answer(*error_answer(400, "request body must be a JSON object", "invalid_request_error"))
    return None


def _chat(fake: FakeServer, request: RecordedRequest) -> Answer:
    body = request.body
    bad = _check_object(body)
    if bad:
        return bad
    messages = body.get("messages")
    if not isinstance(messages, list):
        return Answer(*error_answer(400, "'messages' is required", "invalid_request_error"))
    for m in messages:
        if not isinstance(m, dict) or (m.get("role") != "assistant" and m.get("content") is None):
            return Answer(*error_answer(400, "All non-assistant messages must contain 'content'", "invalid_request_error"))
    prompt = "".join(f"<|{m.get('role')}|>{m.get('content')}" for m in messages)
    pieces, finish, prompt_n, n = _generate(fake, request, prompt)
    base = {"created": int(time.time()), "model": fake.model, "system_fingerprint": FINGERPRINT,
            "id": "chatcmpl-" + uuid.uuid4().hex[:32]}
    if not body.get("stream"):
        return Answer(200, {"choices": [{"finish_reason": finish, "index": 0,
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
    return Answer(200, events=events)


def _completions(fake: FakeServer, request: RecordedRequest) -> Answer:
    body = request.body
    bad = _check_object(body)
    if bad:
        return bad
    prompt = body.get("prompt")
    if not isinstance(prompt, (str, list)):
        return Answer(*error_answer(400, "\"prompt\" must be a string, a list of tokens, a list of mixed strings & tokens, "
                                    "or a list of prompts", "invalid_request_error"))
    text = prompt if isinstance(prompt, str) else json.dumps(prompt)
    pieces, finish, prompt_n, n = _generate(fake, request, text)
    base = {"created": int(time.time()), "model": fake.model, "system_fingerprint": FINGERPRINT,
            "object": "text_completion", "id": "chatcmpl-" + uuid.uuid4().hex[:32]}
    if not body.get("stream"):
        return Answer(200, {"choices": [{"text": "".join(pieces), "index": 0, "logprobs": None,
                                          "finish_reason": finish}], **base, "usage": _usage(prompt_n, n),
                             "timings": _timings(prompt_n, n)})
    events: list[Any] = [{"choices": [{"text": p, "index": 0, "logprobs": None, "finish_reason": None}], **base}
                         for p in pieces]
    events.append({"choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": finish}], **base,
                   "usage": _usage(prompt_n, n), "timings": _timings(prompt_n, n)})
    return Answer(200, events=events)


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


def _embeddings(fake: FakeServer, request: RecordedRequest) -> Answer:
    body = request.body
    bad = _check_object(body)
    if bad:
        return bad
    inputs = body.get("input", body.get("content"))
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs:
        return Answer(*error_answer(400, "\"input\" must be provided", "invalid_request_error"))
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
    return Answer(200, {"model": fake.model, "object": "list", "usage": {"prompt_tokens": n, "total_tokens": n},
                         "data": data})


def _tokenize(fake: FakeServer, request: RecordedRequest) -> Answer:
    body = request.body if isinstance(request.body, dict) else {}
    return Answer(200, {"tokens": _tokens(str(body.get("content", "")))})


def _detokenize(fake: FakeServer, request: RecordedRequest) -> Answer:
    body = request.body if isinstance(request.body, dict) else {}
    tokens = [t for t in body.get("tokens", []) if isinstance(t, int) and t >= 3]
    return Answer(200, {"content": bytes(min(255, t - 3) for t in tokens).decode(errors="replace")})


def _health(fake: FakeServer, request: RecordedRequest) -> Answer:
    return Answer(200, {"status": "ok"})


def _models(fake: FakeServer, request: RecordedRequest) -> Answer:
    return Answer(200, {"models": [{"name": fake.model, "model": fake.model, "modified_at": "", "size": "",
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


def _props(fake: FakeServer, request: RecordedRequest) -> Answer:
    return Answer(200, {
        "default_generation_settings": {"params": {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
                                                   "max_tokens": -1, "n_predict": -1, "stream": False},
                                        "n_ctx": fake.context_size},
        "total_slots": fake.slots, "model_alias": fake.model, "model_ftype": "fake", "model_path": fake.model,
        "modalities": {"vision": False, "video": False, "audio": False}, "media_marker": "<__media__>",
        "endpoint_slots": True, "endpoint_props": False, "endpoint_metrics": False, "ui": False, "ui_settings": {},
        "chat_template": "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}",
        "chat_template_caps": {}, "bos_token": "<s>", "eos_token": "</s>", "build_info": FINGERPRINT,
        "is_sleeping": False, "cors_proxy_enabled": False})


def _metrics_endpoint(fake: FakeServer, request: RecordedRequest) -> Answer:
    return Answer(*error_answer(501, "This server does not support metrics endpoint. Start it with `--metrics`",
                           "not_supported_error"))


def _apply_template(fake: FakeServer, request: RecordedRequest) -> Answer:
    body = request.body if isinstance(request.body, dict) else {}
    given = body.get("messages")
    messages: list[Any] = given if isinstance(given, list) else []
    return Answer(200, {"prompt": "".join(f"<|{m.get('role')}|>{m.get('content')}" for m in messages
                                           if isinstance(m, dict))})


GET_ROUTES = {"/health": _health, "/v1/health": _health, "/models": _models, "/v1/models": _models,
               "/props": _props, "/metrics": _metrics_endpoint}
POST_ROUTES = {"/v1/chat/completions": _chat, "/chat/completions": _chat, "/v1/completions": _completions,
                "/completions": _completions, "/v1/embeddings": _embeddings, "/embeddings": _embeddings,
                "/tokenize": _tokenize, "/detokenize": _detokenize, "/apply-template": _apply_template}


Route = Callable[["FakeServer", RecordedRequest], Answer]


def route_of(method: str, path: str) -> Route | None:
    """The route answering ``method path``, or None (404)."""
    return GET_ROUTES.get(path) if method == "GET" else POST_ROUTES.get(path)


__all__ = ["Answer", "RecordedRequest", "error_answer", "route_of", "echo", "FINGERPRINT", "NOT_FOUND"]
