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


@pytest.mark.slow
def test_long_multi_token_prompt_through_the_native_build(smol_server):
    # a several-hundred-token prompt batch: the AMX path of this CPU must survive it (gcc-12 fix)
    prompt = " ".join(f"item {i} is number {i * 7}." for i in range(120))
    status, body = post(smol_server.url + "/completion", {"prompt": prompt, "n_predict": 4, "cache_prompt": False, "ignore_eos": True})
    assert status == 200
    assert body["tokens_evaluated"] > 400
    assert body["tokens_predicted"] == 4


@pytest.mark.slow
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


@pytest.mark.smollm2
@pytest.mark.slow
def test_a_pool_serves_smollm2_beside_a_tiny_model_and_swaps_it_under_load(smollm2_model, tiny_model):
    from llamaproc import ModelPool, ModelSpec, PoolConfig

    def spec(path):
        return ModelSpec(model_path=path, threads=1, parallel=2, context_size=1024, extra_args=("--cache-ram", "0"))

    with ModelPool.start(PoolConfig(models={"chat": spec(smollm2_model), "tiny": spec(tiny_model)})) as pool:
        question = {"messages": [{"role": "user", "content": "Write one sentence about the sea."}],
                    "max_tokens": 16, "temperature": 0}
        status, body = post(pool.url + "/v1/chat/completions", {**question, "model": "chat"})
        words = body["choices"][0]["message"]["content"].split()
        assert status == 200 and sum(w.strip(".,!?'").isalpha() for w in words) >= 0.7 * len(words)
        assert post(pool.url + "/v1/chat/completions", {**question, "model": "tiny", "max_tokens": 4})[0] == 200

        failures: list = []
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                status, body = post(pool.url + "/v1/chat/completions", {**question, "model": "chat", "max_tokens": 8})
                if status != 200:
                    failures.append(body)

        clients = [threading.Thread(target=client) for _ in range(3)]
        for t in clients:
            t.start()
        try:
            reports = [pool.swap("chat", spec(tiny_model)), pool.swap("chat", spec(smollm2_model))]
        finally:
            stop.set()
            for t in clients:
                t.join()
        assert failures == [] and [r.mode for r in reports] == ["hot", "hot"]
        assert pool.instances_alive == 2  # the old instances are gone


@pytest.mark.smollm2
def test_a_pool_budget_counts_each_instances_own_copy_of_the_weights(smollm2_model):
    """Two models on the same file do not share their repacked (AMX) weights: a budget that
    holds one instance never holds both, and the process's memory stays within it."""
    from conftest import rss_bytes
    from llamaproc import ModelPool, ModelSpec, PoolConfig

    spec = ModelSpec(model_path=smollm2_model, threads=1, parallel=1, context_size=1024, extra_args=("--cache-ram", "0"))
    with ModelPool.start(PoolConfig(models={"x": spec})) as probe:
        probe.load("x")
        need = probe.model("x").memory_bytes
    budget = int(need * 1.5)
    with ModelPool.start(PoolConfig(models={"x": spec, "y": spec}, memory_budget=budget, max_loaded=0)) as pool:
        base = rss_bytes()
        peak_alive, peak_rss = 0, 0
        for name in "xyxy":
            assert post(pool.url + "/v1/chat/completions", {"model": name, "prompt": "Hi", "max_tokens": 2,
                                                            "messages": [{"role": "user", "content": "Hi"}]})[0] == 200
            peak_alive = max(peak_alive, pool.instances_alive)
            peak_rss = max(peak_rss, rss_bytes())
        assert peak_alive == 1 and pool.reserved_bytes <= budget
        assert peak_rss <= base + budget + 64 * 2**20
