"""Failure after READY, automatic recovery, events, and stop() bounded in every state.

Faults are injected through ``LlamaServer.inject_fault``: they act through the paths real
failures take (the inference loop returning, a GGML_ASSERT unwinding through llama.cpp's loop,
a model load failing or being slow).
"""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest

from conftest import thread_count, tiny_config
from http_client import get, post
from llamaproc import HealthStatus, LlamaServer, ServerStatus, errors
from llamaproc.recovery import EventKind, RestartPolicy

# every test here runs in this process and isolated in a child process (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("isolation")

FAST = RestartPolicy(max_restarts=3, window_s=60, backoff_s=(0.3, 1.0))


def kinds(server: LlamaServer) -> list[EventKind]:
    return [e.kind for e in server.events()]


def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def complete(url: str, **body) -> tuple[int, dict | str]:
    return post(url + "/v1/completions", {"prompt": "hello", "max_tokens": 4, **body}, timeout=30)


def open_stream(url: str, body: dict, headers: dict | None = None) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=30)
    conn.request("POST", "/v1/completions", body=json.dumps({**body, "stream": True}),
                 headers={"Content-Type": "application/json", **(headers or {})})
    res = conn.getresponse()
    assert res.status == 200
    return conn, res


def sse_payloads(res: http.client.HTTPResponse):
    for raw in res:
        line = raw.decode().strip()
        if line.startswith("data:"):
            payload = line[5:].strip()
            yield payload if payload == "[DONE]" else json.loads(payload)


LONG_STREAM = {"prompt": "once upon a time", "max_tokens": 3000, "ignore_eos": True}


def test_stop_is_bounded_with_a_resumable_stream_in_flight(tiny_model):
    """llama.cpp's web UI sends X-Conversation-Id; such streams once ignored stop()."""
    server = LlamaServer.start(tiny_config(tiny_model, context_size=4096))
    conn, res = open_stream(server.url, LONG_STREAM, {"X-Conversation-Id": "conv-1"})
    try:
        next(sse_payloads(res))  # the stream is being served
        stopper = threading.Thread(target=server.stop)
        started = time.monotonic()
        stopper.start()
        stopper.join(timeout=10)
        assert not stopper.is_alive(), "stop() hung on a resumable stream"
        assert time.monotonic() - started < 5
        assert server.status is ServerStatus.STOPPED
    finally:
        conn.close()
        server.stop()


def test_loop_death_fails_fast_then_recovers_on_the_same_port(tiny_model):
    server = LlamaServer.start(tiny_config(tiny_model, restart=RestartPolicy(backoff_s=(1.5, 1.5))))
    try:
        port = server.port
        assert complete(server.url)[0] == 200
        server.inject_fault("loop_dies")
        wait_for(lambda: EventKind.FAILED in kinds(server), 5, "FAILED")
        # while FAILED (1.5 s backoff): health and requests answer 503 at once, no hang
        t0 = time.monotonic()
        code, body = complete(server.url)
        if code == 503:  # (the restart may already have begun: then it is "Loading model")
            assert body["error"]["type"] == "unavailable_error"
            assert time.monotonic() - t0 < 2
        assert get(server.url + "/health")[0] == 503 or server.status is ServerStatus.READY
        wait_for(lambda: server.status is ServerStatus.READY and EventKind.READY in kinds(server)[2:], 20, "recovery")
        assert server.port == port
        assert complete(server.url)[0] == 200
        events = server.events()
        assert [e.kind for e in events] == [EventKind.STARTED, EventKind.READY, EventKind.FAILED,
                                            EventKind.RESTARTING, EventKind.STARTED, EventKind.READY]
        assert "inference loop stopped unexpectedly" in events[2].cause
        assert isinstance(events[2].error, errors.NativeError)
        assert (events[3].attempt, events[3].delay_s) == (1, 1.5)
        assert events[4].attempt == events[5].attempt == 1
        m = server.metrics()
        assert (m.restarts, m.failures) == (1, 1)
    finally:
        server.stop()
    assert kinds(server)[-1] is EventKind.STOPPED


def test_a_stream_in_flight_gets_an_error_chunk_when_the_loop_dies(tiny_model):
    server = LlamaServer.start(tiny_config(tiny_model, context_size=4096))  # no restart policy
    conn, res = open_stream(server.url, LONG_STREAM)
    try:
        payloads = sse_payloads(res)
        next(payloads)
        server.inject_fault("loop_dies")
        t0 = time.monotonic()
        rest = list(payloads)
        assert time.monotonic() - t0 < 2.5
        assert "[DONE]" not in rest
        assert "error" in rest[-1] and rest[-1]["error"]["type"] == "unavailable_error"
    finally:
        conn.close()
    try:
        assert server.status is ServerStatus.FAILED
        report = server.health_check()
        assert report.status is HealthStatus.UNHEALTHY and "inference loop stopped" in report.detail
        assert isinstance(server.failure, errors.NativeError)
        t0 = time.monotonic()
        code, body = complete(server.url)
        assert code == 503 and "inference loop stopped" in body["error"]["message"]
        assert time.monotonic() - t0 < 1
        failed = server.metrics()  # the last counters seen while READY, and the failure counted
        assert not failed.live and failed.failures == 1 and failed.requests["unavailable"] >= 1
        assert kinds(server) == [EventKind.STARTED, EventKind.READY, EventKind.FAILED]  # no policy: no restart
    finally:
        server.stop()
    assert server.status is ServerStatus.STOPPED


def test_a_native_assert_on_the_loop_thread_during_a_request_fails_the_server_and_it_recovers(tiny_model):
    server = LlamaServer.start(tiny_config(tiny_model, restart=FAST))
    try:
        server.inject_fault("assert_in_request")
        t0 = time.monotonic()
        code, body = complete(server.url)
        assert code in (500, 503), body  # the request that hit the assertion: an error, promptly
        assert time.monotonic() - t0 < 3
        wait_for(lambda: kinds(server).count(EventKind.READY) == 2, 20, "recovery")
        failed = next(e for e in server.events() if e.kind is EventKind.FAILED)
        assert "failed assertion" in failed.cause and "injected fault" in failed.cause
        assert complete(server.url)[0] == 200
        assert server.metrics().requests["ok"] >= 1
    finally:
        server.stop()


def test_the_restart_budget_is_honoured_and_the_cause_kept(tiny_model):
    policy = RestartPolicy(max_restarts=2, window_s=60, backoff_s=(0.05, 0.1))
    server = LlamaServer.start(tiny_config(tiny_model, restart=policy))
    try:
        server.inject_fault("load_fails", times=10)
        server.inject_fault("loop_dies")
        wait_for(lambda: EventKind.GAVE_UP in kinds(server), 20, "GAVE_UP")
        assert kinds(server) == [EventKind.STARTED, EventKind.READY,
                                 EventKind.FAILED, EventKind.RESTARTING, EventKind.STARTED,
                                 EventKind.FAILED, EventKind.RESTARTING, EventKind.STARTED,
                                 EventKind.FAILED, EventKind.GAVE_UP]
        delays = [e.delay_s for e in server.events() if e.kind is EventKind.RESTARTING]
        assert delays == [0.05, 0.1]
        gave_up = server.events()[-1]
        assert isinstance(gave_up.error, errors.ModelLoadError) and "injected fault" in gave_up.cause
        time.sleep(0.3)
        assert server.status is ServerStatus.FAILED
        assert isinstance(server.failure, errors.ModelLoadError)
        assert get(server.url + "/health")[0] == 503
    finally:
        server.stop()


def test_stop_during_a_restart_backoff_returns_at_once(tiny_model):
    server = LlamaServer.start(tiny_config(tiny_model, restart=RestartPolicy(backoff_s=(30, 30))))
    try:
        server.inject_fault("loop_dies")
        wait_for(lambda: EventKind.RESTARTING in kinds(server), 5, "RESTARTING")
    finally:
        t0 = time.monotonic()
        server.stop()
        took = time.monotonic() - t0
    assert took < 2, f"stop() waited {took:.1f} s of a 30 s backoff"
    assert server.status is ServerStatus.STOPPED


def test_load_progress_and_stop_during_load(tiny_model):
    """Needs patches/0001: server_context used to replace our load-progress callback."""
    server = LlamaServer(tiny_config(tiny_model))
    server.inject_fault("slow_load", param=25)  # 25 ms per progress step of the next load
    seen: list[float] = []
    server._start(timeout=60, progress=seen.append)
    try:
        inner = [p for p in seen if 0.0 < p < 1.0]
        assert len(inner) >= 3, seen
        assert seen == sorted(seen) and seen[-1] == 1.0
    finally:
        server.stop()

    slow = LlamaServer(tiny_config(tiny_model))
    slow.inject_fault("slow_load", param=400)  # a load of many seconds
    outcome: list[BaseException | None] = []

    def start() -> None:
        try:
            slow._start(timeout=120, progress=None)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion below
            outcome.append(exc)

    starter = threading.Thread(target=start)
    starter.start()
    wait_for(lambda: slow._run is not None and slow._run.native.load_progress > 0, 10, "the load to begin")
    t0 = time.monotonic()
    slow.stop()
    took = time.monotonic() - t0
    starter.join(timeout=10)
    assert took < 1.5, f"stop() during a load took {took:.1f} s"
    assert isinstance(outcome[0], errors.ServerNotRunningError)
    assert slow.status is ServerStatus.STOPPED


def test_concurrent_lifecycle_calls_never_hang_and_end_consistent(tiny_model):
    server = LlamaServer.start(tiny_config(tiny_model))
    baseline_threads = None
    errors_seen: list[BaseException] = []

    def worker(i: int) -> None:
        ops = [server.stop, lambda: server._start(timeout=60, progress=None), server.restart,
               server.health_check, lambda: server.metrics(timeout=2)]
        for n in range(6):
            try:
                ops[(i + n) % len(ops)]()
            except errors.LlamaProcError:
                pass  # "already running", "not running", "stopped before ready": all legitimate
            except BaseException as exc:  # noqa: BLE001
                errors_seen.append(exc)

    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=90)
        assert not any(t.is_alive() for t in threads), "a lifecycle call hung"
        assert not errors_seen, errors_seen
        assert server.status in (ServerStatus.READY, ServerStatus.STOPPED)
        if server.status is ServerStatus.READY:
            assert complete(server.url)[0] == 200
    finally:
        server.stop()
    assert server.status is ServerStatus.STOPPED
    baseline_threads = thread_count()
    with LlamaServer.start(tiny_config(tiny_model)):
        pass
    assert thread_count() <= baseline_threads


def test_the_first_prompt_progress_event_is_delivered(tiny_model):
    """A stream's first chunk used to be dropped by the handler wrapper."""
    server = LlamaServer.start(tiny_config(tiny_model, batch_size=16, context_size=1024))
    try:
        prompt = " ".join(f"w{i}" for i in range(60))
        for text in (prompt, prompt + " and a few more words at the end of it"):  # the second reuses the cache
            conn, res = open_stream(server.url, {"prompt": text, "max_tokens": 2, "return_progress": True})
            try:
                events = list(sse_payloads(res))
            finally:
                conn.close()
            progress = [e["prompt_progress"] for e in events if isinstance(e, dict) and "prompt_progress" in e]
            assert progress, events[:3]
            assert progress[0]["processed"] == progress[0]["cache"]  # the one sent before any decode
            total, cached = progress[-1]["total"], progress[0]["cache"]
            assert total - cached > 16  # the new part spans several 16-token batches
            assert [p["processed"] for p in progress] == sorted(p["processed"] for p in progress)
            assert progress[-1]["processed"] == total
            assert len(progress) == -(-(total - cached) // 16) + 1
            assert events[-1] == "[DONE]"
        assert cached > 0
    finally:
        server.stop()


def test_metrics_report_memory_rates_and_outcomes(tiny_model):
    server = LlamaServer.start(tiny_config(tiny_model))
    try:
        assert complete(server.url)[0] == 200
        assert post(server.url + "/v1/completions", {"prompt": 5})[0] == 400
        # the recent rates need a watchdog sample at least a second old
        wait_for(lambda: server.metrics().window_s > 0, 10, "a watchdog sample")
        assert complete(server.url)[0] == 200
        m = server.metrics()
        assert m.requests["ok"] == 2 and m.requests["client_error"] == 1
        assert m.recent_requests_per_second > 0 and m.recent_tokens_per_second > 0 and m.window_s > 0
        assert m.model_bytes > 0 and m.kv_cache_bytes > 0 and m.compute_bytes > 0
        assert m.rss_bytes > m.model_bytes
        assert 0 < m.prompt_cache_limit_bytes <= 8 * 2**30
        assert m.memory_bytes == m.model_bytes + m.kv_cache_bytes + m.compute_bytes + m.prompt_cache_limit_bytes
    finally:
        server.stop()


def test_memory_limit_covers_the_prompt_cache(tiny_model):
    limit = 64 * 2**20
    server = LlamaServer.start(tiny_config(tiny_model, memory_limit=limit))
    try:
        m = server.metrics()
        assert m.prompt_cache_limit_bytes > 0
        assert m.memory_bytes <= limit
    finally:
        server.stop()
    with pytest.raises(errors.ResourceError, match="cache-ram"):
        LlamaServer.start(tiny_config(tiny_model, memory_limit=limit, extra_args=("--cache-ram", "1024")))
