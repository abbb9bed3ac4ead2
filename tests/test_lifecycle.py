"""start / stop / restart / status / context manager / several servers at once."""

from __future__ import annotations

import gc
import socket
import time

import pytest

from conftest import rss_bytes, thread_count, tiny_config
from http_client import get, post
from llamaproc import HealthStatus, LlamaServer, ServerStatus, errors

# every test here runs in this process and isolated in a child process (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("isolation")


def _chat(url: str, text: str = "hello", max_tokens: int = 8) -> dict:
    status, body = post(url + "/v1/chat/completions",
                        {"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens})
    assert status == 200, body
    return body


def test_start_returns_ready_server_on_a_real_port(tiny_model):
    server = LlamaServer.start(tiny_config(tiny_model))
    try:
        assert server.status is ServerStatus.READY
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert get(server.url + "/health") == (200, {"status": "ok"})
        with socket.create_connection(("127.0.0.1", server.port), timeout=2):
            pass
    finally:
        server.stop()
    assert server.status is ServerStatus.STOPPED
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1)


def test_stop_is_idempotent_and_status_reports_it(tiny_server):
    tiny_server.stop()
    tiny_server.stop()
    assert tiny_server.status is ServerStatus.STOPPED
    report = tiny_server.health_check()
    assert report.status is HealthStatus.UNHEALTHY and "stopped" in report.detail
    after = tiny_server.metrics()  # the last counters seen, not live
    assert not after.live and after.slots_total > 0 and after.restarts == 0


def test_metrics_before_the_first_start_says_so(tiny_model):
    server = LlamaServer(tiny_config(tiny_model))
    with pytest.raises(errors.ServerNotRunningError, match="never started"):
        server.metrics()


def test_restart_keeps_the_port_and_serves_again(tiny_server):
    port = tiny_server.port
    _chat(tiny_server.url)
    tiny_server.restart()
    assert tiny_server.status is ServerStatus.READY
    assert tiny_server.port == port
    assert tiny_server.metrics().generated_tokens == 0  # a fresh server
    _chat(tiny_server.url)


def test_context_manager_stops_on_exit_and_on_error(tiny_model):
    with LlamaServer.start(tiny_config(tiny_model)) as server:
        assert server.health_check().status is HealthStatus.HEALTHY
    assert server.status is ServerStatus.STOPPED
    with pytest.raises(ZeroDivisionError):
        with LlamaServer.start(tiny_config(tiny_model)) as server2:
            1 / 0
    assert server2.status is ServerStatus.STOPPED


def test_two_servers_at_once_and_stopping_one_leaves_the_other(tiny_model, tmp_path):
    from llamaproc.testing import make_tiny_model

    other_model = make_tiny_model(tmp_path / "other.gguf", n_layers=1, n_embd=32, seed=7)
    a = LlamaServer.start(tiny_config(tiny_model))
    b = LlamaServer.start(tiny_config(other_model))
    try:
        assert a.port != b.port
        assert get(a.url + "/v1/models")[1]["data"][0]["id"] != get(b.url + "/v1/models")[1]["data"][0]["id"]
        _chat(a.url)
        _chat(b.url)
        a.stop()
        assert b.health_check().status is HealthStatus.HEALTHY
        _chat(b.url)
    finally:
        a.stop()
        b.stop()


def test_metrics_count_the_tokens_served(tiny_server):
    before = tiny_server.metrics()
    body = _chat(tiny_server.url, max_tokens=12)
    after = tiny_server.metrics()
    assert after.generated_tokens - before.generated_tokens == body["usage"]["completion_tokens"]
    assert after.prompt_tokens > before.prompt_tokens
    assert after.slots_total == 2
    assert "llamacpp:tokens_predicted_total" in after.prometheus


def test_twenty_cycles_return_threads_and_memory(tiny_model):
    cfg = tiny_config(tiny_model)
    # one warm-up cycle: first use loads code pages and allocator arenas that stay
    with LlamaServer.start(cfg) as s:
        _chat(s.url)
    gc.collect()
    threads_before, rss_before = thread_count(), rss_bytes()
    for _ in range(20):
        with LlamaServer.start(cfg) as s:
            _chat(s.url)
    gc.collect()
    assert thread_count() == threads_before
    growth_per_cycle = (rss_bytes() - rss_before) / 20
    assert growth_per_cycle < 2 * 2**20, f"RSS grew {growth_per_cycle / 2**20:.2f} MiB per cycle"


def test_stop_is_bounded_while_a_request_is_in_flight(tiny_model):
    import threading

    server = LlamaServer.start(tiny_config(tiny_model, context_size=2048))
    results: list = []
    t = threading.Thread(target=lambda: results.append(post(
        server.url + "/completion", {"prompt": "x", "n_predict": 100000, "ignore_eos": True}, timeout=30)))
    t.start()
    deadline = time.monotonic() + 10
    while server.metrics().slots_busy == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    server.stop()
    took = time.monotonic() - started
    t.join(10)
    assert not t.is_alive()
    assert took < 10.0, f"stop() hung for {took:.2f} s with a request in flight"
    assert server.status is ServerStatus.STOPPED
