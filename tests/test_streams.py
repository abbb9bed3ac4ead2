"""Resumable streams, as llama-server serves them (issue 18): a generation requested with an
X-Conversation-Id header outlives its client. GET /v1/stream?conv_id=ID&from=N replays it from
any byte, POST /v1/streams/lookup says which of the caller's conversations are live, DELETE
/v1/stream?conv_id=ID stops one. Real servers and pools on the tiny generated model, over
loopback; the request and response shapes are llama-server's (tools/server/tests/unit/test_stream.py
and server-stream.cpp in the pinned source)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import tiny_config, wait_until
from http_client import get, post, request
from llamaproc import LlamaServer, ModelPool, ModelSpec, ModelStatus, PoolConfig
from llamaproc.testing import Fault

CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 16, "temperature": 0}


def qs(conversation: str) -> str:
    return "conv_id=" + quote(conversation, safe="")


def open_stream(url: str, body: dict, conversation: str, timeout: float = 60.0):
    """POST a streaming chat with the conversation header; the open response (read it or drop it)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    conn.request("POST", "/v1/chat/completions", body=json.dumps({**body, "stream": True}),
                 headers={"Content-Type": "application/json", "X-Conversation-Id": conversation})
    return conn, conn.getresponse()


def stream_bytes(url: str, body: dict, conversation: str) -> bytes:
    conn, res = open_stream(url, body, conversation)
    try:
        assert res.status == 200
        return res.read()
    finally:
        conn.close()


def replay(url: str, conversation: str, start: int = 0, timeout: float = 60.0) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", f"/v1/stream?{qs(conversation)}&from={start}")
        res = conn.getresponse()
        return res.status, res.read()
    finally:
        conn.close()


def events(raw: bytes) -> list:
    out = []
    for line in raw.decode().splitlines():
        if line.startswith("data: "):
            payload = line[len("data: "):]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def finish_reason(raw: bytes) -> str | None:
    reasons = [e["choices"][0].get("finish_reason") for e in events(raw) if isinstance(e, dict) and e.get("choices")]
    return reasons[-1] if reasons else None


def lookup(url: str, ids: list[str]) -> list[dict]:
    status, found = post(url + "/v1/streams/lookup", {"conversation_ids": ids})
    assert status == 200
    return found


def leave_after_first_event(url: str, body: dict, conversation: str) -> None:
    """A client that reads the first event and goes away (a reloaded page)."""
    conn, res = open_stream(url, body, conversation)
    assert res.status == 200
    res.readline()
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()


@pytest.fixture
def server(tiny_model: Path):
    with LlamaServer.start(tiny_config(tiny_model)) as s:
        yield s


# -- one server ---------------------------------------------------------------------------------

def test_a_finished_stream_replays_byte_for_byte_from_any_offset(server):
    sent = stream_bytes(server.url, CHAT, "conv-1")
    assert sent.endswith(b"data: [DONE]\n\n")
    assert replay(server.url, "conv-1") == (200, sent)
    assert replay(server.url, "conv-1", start=10) == (200, sent[10:])
    (entry,) = lookup(server.url, ["conv-1"])
    assert entry["conversation_id"] == "conv-1" and entry["is_done"] is True
    assert entry["total_bytes"] == len(sent) and entry["completed_at"] >= entry["started_at"] > 0


def test_the_generation_goes_on_after_its_client_leaves(server):
    body = {**CHAT, "max_tokens": 60, "ignore_eos": True}
    server.inject_fault(Fault.slow_tokens(0.01), times=1)
    leave_after_first_event(server.url, body, "conv-left")
    wait_until(lambda: lookup(server.url, ["conv-left"])[0]["is_done"])
    status, raw = replay(server.url, "conv-left")
    assert status == 200 and raw.endswith(b"data: [DONE]\n\n")
    assert finish_reason(raw) == "length"  # all 60 tokens were generated for nobody, then replayed


def test_a_reader_attached_to_a_live_stream_gets_it_to_the_end(server):
    body = {**CHAT, "max_tokens": 40, "ignore_eos": True}
    server.inject_fault(Fault.slow_tokens(0.02), times=1)
    got: dict[str, bytes] = {}
    writer = threading.Thread(target=lambda: got.update(sent=stream_bytes(server.url, body, "conv-live")))
    writer.start()
    wait_until(lambda: bool(lookup(server.url, ["conv-live"])))
    status, read = replay(server.url, "conv-live")  # blocks for live bytes until the end
    writer.join()
    assert status == 200 and read == got["sent"] and finish_reason(read) == "length"


def test_delete_stops_the_generation_and_forgets_the_conversation(server):
    body = {**CHAT, "max_tokens": 400, "ignore_eos": True}
    server.inject_fault(Fault.slow_tokens(0.05), times=1)  # 20 s if nothing stops it
    conn, res = open_stream(server.url, body, "conv-stop")
    res.readline()
    started = time.monotonic()
    assert request("DELETE", f"{server.url}/v1/stream?{qs('conv-stop')}")[0] == 204
    rest = res.read()  # the stream ends at once, unfinished
    conn.close()
    assert time.monotonic() - started < 10
    assert b"[DONE]" not in rest
    assert replay(server.url, "conv-stop")[0] == 404
    assert lookup(server.url, ["conv-stop"]) == []
    wait_until(lambda: not any(slot["is_processing"] for slot in get(server.url + "/slots")[1]))
    assert request("DELETE", f"{server.url}/v1/stream?{qs('never-seen')}")[0] == 204  # idempotent


def test_a_new_request_of_the_conversation_cancels_the_one_before(server):
    slow = {**CHAT, "max_tokens": 400, "ignore_eos": True}
    server.inject_fault(Fault.slow_tokens(0.05), times=1)
    conn, first = open_stream(server.url, slow, "conv-again")
    first.readline()
    second = stream_bytes(server.url, CHAT, "conv-again")
    rest = first.read()
    conn.close()
    assert b"[DONE]" not in rest and second.endswith(b"data: [DONE]\n\n")
    assert replay(server.url, "conv-again") == (200, second)


def test_a_request_that_does_not_stream_leaves_no_session(server):
    status, _ = post(server.url + "/v1/chat/completions", CHAT, headers={"X-Conversation-Id": "conv-plain"})
    assert status == 200
    assert replay(server.url, "conv-plain")[0] == 404 and lookup(server.url, ["conv-plain"]) == []


def test_lookup_answers_only_for_the_ids_asked_and_their_per_model_variants(server):
    for conversation in ("a1", "a1::model-x", "b2", "a10"):
        stream_bytes(server.url, CHAT, conversation)
    assert sorted(e["conversation_id"] for e in lookup(server.url, ["a1"])) == ["a1", "a1::model-x"]
    assert lookup(server.url, []) == [] and lookup(server.url, ["zz"]) == []
    entry = lookup(server.url, ["b2"])[0]
    assert set(entry) == {"conversation_id", "is_done", "total_bytes", "started_at", "completed_at"}
    status, body = request("POST", server.url + "/v1/streams/lookup", None)
    assert status == 400 and body["error"]["type"] == "invalid_request_error"


def test_the_stream_routes_refuse_bad_requests_as_llama_server_does(server):
    stream_bytes(server.url, CHAT, "conv-bad")
    status, body = get(server.url + "/v1/stream")
    assert status == 400 and "Missing conversation id" in body["error"]["message"]
    status, body = get(server.url + "/v1/stream?conv_id=unknown")
    assert status == 404 and body["error"]["type"] == "not_found_error"
    status, body = get(server.url + "/v1/stream?conv_id=conv-bad&from=abc")
    assert status == 400 and "Invalid 'from' offset" in body["error"]["message"]
    assert request("DELETE", server.url + "/v1/stream")[0] == 400


def test_the_routes_need_the_api_key_like_every_other(tiny_model):
    with LlamaServer.start(tiny_config(tiny_model, api_key="sesame")) as s:
        assert get(s.url + "/v1/stream?conv_id=x")[0] == 401
        assert get(s.url + "/v1/stream?conv_id=x", headers={"Authorization": "Bearer sesame"})[0] == 404


def test_two_servers_in_one_process_keep_their_conversations_apart(server, tiny_model):
    with LlamaServer.start(tiny_config(tiny_model)) as other:
        sent = stream_bytes(server.url, CHAT, "conv-shared-name")
        assert replay(other.url, "conv-shared-name")[0] == 404
        assert lookup(other.url, ["conv-shared-name"]) == []
        assert request("DELETE", f"{other.url}/v1/stream?{qs('conv-shared-name')}")[0] == 204
        assert replay(server.url, "conv-shared-name") == (200, sent)  # the other's DELETE did not reach it


def test_sessions_end_with_the_model_instance_that_made_them(server):
    stream_bytes(server.url, CHAT, "conv-restart")
    server.restart()
    assert replay(server.url, "conv-restart")[0] == 404  # as llama-server's, after its restart


def test_stop_is_bounded_with_a_resumable_stream_and_its_reader_in_flight(tiny_model):
    s = LlamaServer.start(tiny_config(tiny_model))
    s.inject_fault(Fault.slow_tokens(0.2), times=1)  # 80 s of generation if nothing stops it
    leave_after_first_event(s.url, {**CHAT, "max_tokens": 400, "ignore_eos": True}, "conv-long")
    reader_done = threading.Event()
    threading.Thread(target=lambda: (replay(s.url, "conv-long"), reader_done.set()), daemon=True).start()
    time.sleep(0.5)
    assert not reader_done.is_set()
    started = time.monotonic()
    s.stop()
    assert time.monotonic() - started < 10
    assert reader_done.wait(5)


# -- a pool, as llama-server's router -------------------------------------------------------------

MODEL = "ggml-org/tinygemma3-GGUF:Q8_0"  # a slashed name, as llama-server's test uses
STREAM_ID = f"conv-stream-test::{MODEL}"


@pytest.fixture
def pool(tiny_model: Path):
    spec = ModelSpec(model_path=tiny_model, context_size=256, parallel=2, threads=1)
    with ModelPool.start(PoolConfig(models={MODEL: spec})) as p:
        yield p


def test_router_resume_and_stop_with_a_slashed_model_name(pool):
    sent = stream_bytes(pool.url, {**CHAT, "model": MODEL}, STREAM_ID)
    assert replay(pool.url, STREAM_ID) == (200, sent)
    assert request("DELETE", f"{pool.url}/v1/stream?{qs(STREAM_ID)}")[0] == 204
    assert replay(pool.url, STREAM_ID)[0] == 404


def test_router_lookup_of_a_bad_body_answers_an_empty_list(pool):
    assert request("POST", pool.url + "/v1/streams/lookup", None) == (200, [])


def test_router_stop_during_the_model_load_cancels_the_parked_request(pool):
    pool.inject_fault(MODEL, Fault.slow_load(0.1))  # a few seconds of loading
    answer: dict = {}

    def fire() -> None:
        answer["status"], answer["body"] = post(pool.url + "/v1/chat/completions",
                                                {**CHAT, "model": MODEL, "stream": True},
                                                headers={"X-Conversation-Id": STREAM_ID})
    t = threading.Thread(target=fire)
    t.start()
    wait_until(lambda: pool.model(MODEL).status is ModelStatus.LOADING)
    assert request("DELETE", f"{pool.url}/v1/stream?{qs(STREAM_ID)}")[0] == 204
    t.join(60)
    assert answer["status"] == 400 and "cancelled" in json.dumps(answer["body"])
    assert replay(pool.url, STREAM_ID)[0] == 404


def test_router_stream_resumes_after_a_page_reload_during_the_model_load(pool):
    pool.inject_fault(MODEL, Fault.slow_load(0.05))
    body = json.dumps({**CHAT, "model": MODEL, "stream": True})
    host, port = pool.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                  f"X-Conversation-Id: {STREAM_ID}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                  f"{body}").encode())
    wait_until(lambda: pool.model(MODEL).status is ModelStatus.LOADING)
    sock.close()  # the page reloads while the model loads
    assert replay(pool.url, STREAM_ID)[0] == 503  # "retry later": the owner model is loading
    statuses: set[int] = set()
    raw = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, raw = replay(pool.url, STREAM_ID)
        statuses.add(status)
        if status == 200:
            break
        time.sleep(0.05)
    assert statuses <= {503, 200} and raw.endswith(b"data: [DONE]\n\n")


def test_router_sessions_end_when_their_model_is_unloaded(pool):
    stream_bytes(pool.url, {**CHAT, "model": MODEL}, STREAM_ID)
    assert replay(pool.url, STREAM_ID)[0] == 200
    pool.unload(MODEL)
    assert replay(pool.url, STREAM_ID)[0] == 404
    assert lookup(pool.url, [STREAM_ID]) == []


def test_pool_stop_is_bounded_with_a_parked_resumable_request(tiny_model):
    spec = ModelSpec(model_path=tiny_model, context_size=256, parallel=2, threads=1)
    p = ModelPool.start(PoolConfig(models={"m": spec}))
    p.inject_fault("m", Fault.slow_load(1.0))  # a load that would take a minute
    answer: dict = {}
    t = threading.Thread(target=lambda: answer.update(r=post(p.url + "/v1/chat/completions", {**CHAT, "model": "m"},
                                                             headers={"X-Conversation-Id": "parked"})))
    t.start()
    wait_until(lambda: p.model("m").status is ModelStatus.LOADING)
    started = time.monotonic()
    p.stop()
    t.join(10)
    assert time.monotonic() - started < 10 and answer["r"][0] == 503
