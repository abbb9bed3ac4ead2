"""Integration with the real SmolLM2-135M-Instruct model."""

from __future__ import annotations

import threading
import time

import pytest

from http_client import post
from llamaproc import HealthStatus, LlamaServer, ServerConfig, errors

pytestmark = pytest.mark.smollm2


@pytest.fixture(scope="module")
def smol_server(smollm2_model):
    server = LlamaServer.start(ServerConfig(model_path=smollm2_model, threads=1, context_size=2048, parallel=1))
    yield server
    server.stop()


def test_chat_completion_returns_text(smol_server):
    status, body = post(smol_server.url + "/v1/chat/completions",
                        {"messages": [{"role": "user", "content": "Write one sentence about the sea."}],
                         "max_tokens": 24, "temperature": 0})
    assert status == 200
    answer = body["choices"][0]["message"]["content"]
    words = answer.split()
    # a real model writes words (the tiny random model writes byte soup)
    assert len(words) >= 4 and sum(w.strip(".,!?'").isalpha() for w in words) >= 0.7 * len(words), answer
    assert body["usage"]["completion_tokens"] > 0


def test_long_multi_token_prompt_through_the_native_build(smol_server):
    # a several-hundred-token prompt batch: the AMX path of this CPU must survive it (gcc-12 fix)
    prompt = " ".join(f"item {i} is number {i * 7}." for i in range(120))
    status, body = post(smol_server.url + "/completion", {"prompt": prompt, "n_predict": 4, "cache_prompt": False, "ignore_eos": True})
    assert status == 200
    assert body["tokens_evaluated"] > 400
    assert body["tokens_predicted"] == 4


def test_health_is_degraded_when_every_slot_is_busy_and_requests_wait(smol_server):
    done: list = []

    def long_request() -> None:
        done.append(post(smol_server.url + "/completion", {"prompt": "Count:", "n_predict": 150, "ignore_eos": True})[0])

    threads = [threading.Thread(target=long_request) for _ in range(3)]
    for t in threads:
        t.start()
    seen = set()
    deadline = time.monotonic() + 30
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        seen.add(smol_server.health_check(timeout=5).status)
        if HealthStatus.DEGRADED in seen:
            break
        time.sleep(0.02)
    for t in threads:
        t.join(60)
    assert HealthStatus.DEGRADED in seen
    assert done == [200, 200, 200]
    assert smol_server.health_check().status is HealthStatus.HEALTHY


@pytest.mark.smollm2
def test_memory_limit_holds_with_repacked_weights(smollm2_model):
    """llama.cpp's estimate misses the AMX/repacked copy of the weights: the first load
    measures, and the model is reloaded with a prompt cache that fits the limit."""
    base = dict(model_path=smollm2_model, threads=1, parallel=2, context_size=2048)
    with LlamaServer.start(ServerConfig(**base)) as probe:
        m = probe.metrics()
        held = m.model_bytes + m.kv_cache_bytes + m.compute_bytes
    limit = held + 32 * 2**20
    with LlamaServer.start(ServerConfig(**base, memory_limit=limit)) as server:
        m = server.metrics()
        assert m.memory_bytes <= limit
        assert 16 * 2**20 <= m.prompt_cache_limit_bytes <= 32 * 2**20
        assert server.direct.completions.create(prompt="Hello", max_tokens=4, ignore_eos=True)["usage"]["completion_tokens"] == 4
    with pytest.raises(errors.ResourceError):
        LlamaServer.start(ServerConfig(**base, memory_limit=held - 16 * 2**20))
