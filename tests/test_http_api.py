"""llama-server's OpenAI-compatible endpoints, unchanged, over real sockets."""

from __future__ import annotations

import threading
import time

import pytest

from conftest import tiny_config
from http_client import get, post, request, stream_events
from llamaproc import LlamaServer, ServerStatus

MESSAGES = [{"role": "user", "content": "hello there"}]


def test_chat_completion(tiny_server):
    status, body = post(tiny_server.url + "/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 6, "ignore_eos": True})
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert isinstance(body["choices"][0]["message"]["content"], str)
    assert body["usage"]["completion_tokens"] == 6


def test_chat_completion_streaming(tiny_server):
    events = list(stream_events(tiny_server.url + "/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 6, "ignore_eos": True}))
    assert events[-1] == "[DONE]"
    chunks = [e for e in events if isinstance(e, dict)]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert any(c["choices"] and c["choices"][0].get("finish_reason") == "length" for c in chunks)


def test_completions_legacy_and_openai(tiny_server):
    status, body = post(tiny_server.url + "/v1/completions", {"prompt": "abc", "max_tokens": 5})
    assert status == 200 and body["object"] == "text_completion"
    status, body = post(tiny_server.url + "/completion", {"prompt": "abc", "n_predict": 5, "ignore_eos": True})
    assert status == 200 and body["tokens_predicted"] == 5


def test_tokenize_round_trip(tiny_server):
    status, body = post(tiny_server.url + "/tokenize", {"content": "hello world"})
    assert status == 200 and body["tokens"]
    status, text = post(tiny_server.url + "/detokenize", {"tokens": body["tokens"]})
    assert status == 200 and text["content"].strip() == "hello world"


def test_models_endpoint(tiny_server, tiny_model):
    status, body = get(tiny_server.url + "/v1/models")
    assert status == 200
    assert body["data"][0]["id"].endswith(tiny_model.name)


def test_embeddings_when_enabled(tiny_model):
    with LlamaServer.start(tiny_config(tiny_model, embeddings=True, extra_args=("--pooling", "mean"))) as server:
        status, body = post(server.url + "/v1/embeddings", {"input": ["one", "two"]})
        assert status == 200
        vectors = [d["embedding"] for d in body["data"]]
        assert len(vectors) == 2 and len(vectors[0]) == 64


def test_api_key_is_enforced_except_on_health(tiny_model):
    with LlamaServer.start(tiny_config(tiny_model, api_key="s3cret")) as server:
        assert get(server.url + "/health")[0] == 200
        assert get(server.url + "/v1/models")[0] == 401
        assert get(server.url + "/v1/models", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert get(server.url + "/v1/models", headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert server.health_check().ok


def test_stop_during_a_streaming_response_ends_the_stream(tiny_model):
    server = LlamaServer.start(tiny_config(tiny_model, context_size=4096))
    received: list = []
    errors: list = []

    def consume() -> None:
        try:
            for event in stream_events(server.url + "/completion",
                                       {"prompt": "x", "n_predict": 100000, "ignore_eos": True}, timeout=30):
                received.append(event)
        except Exception as exc:  # the connection may close without a final event
            errors.append(exc)

    t = threading.Thread(target=consume)
    t.start()
    deadline = time.monotonic() + 10
    while len(received) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(received) >= 5, "the stream started"
    server.stop()
    t.join(15)
    assert not t.is_alive(), "the client's stream ended"
    assert server.status is ServerStatus.STOPPED
    # and the process still serves a new server
    with LlamaServer.start(tiny_config(tiny_model)) as again:
        assert post(again.url + "/completion", {"prompt": "y", "n_predict": 2})[0] == 200


def test_metrics_endpoint_is_off_unless_asked_for(tiny_model, tiny_server):
    status, body = request("GET", tiny_server.url + "/metrics")
    assert status == 501 and "--metrics" in body["error"]["message"]
    with LlamaServer.start(tiny_config(tiny_model, extra_args=("--metrics",))) as server:
        status, text = request("GET", server.url + "/metrics")
        assert status == 200 and "llamacpp:prompt_tokens_total" in text


def test_slots_endpoint(tiny_server):
    status, body = get(tiny_server.url + "/slots")
    assert status == 200 and len(body) == 2
