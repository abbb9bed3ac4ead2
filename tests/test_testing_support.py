"""llamaproc.testing: the fake server, faults on real and fake servers, the README's example."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import tiny_config
from llamaproc import HealthStatus, LlamaServer, ServerStatus, errors
from llamaproc.recovery import EventKind, RestartPolicy
from llamaproc.testing import Fault, FakeServer


# -- the README's example client: what an app built on llamaproc would have ---------------------

class IncompleteStream(Exception):
    pass


class ChatClient:
    """A tiny OpenAI-style client with retries and a timeout (the README's example)."""

    def __init__(self, base_url: str, *, retries: int = 2, timeout: float = 5.0) -> None:
        self.base_url, self.retries, self.timeout = base_url, retries, timeout
        self.http_errors: list[int] = []  # the status of every attempt answered with an HTTP error

    def _post(self, path: str, body: dict):
        req = urllib.request.Request(self.base_url + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        return urllib.request.urlopen(req, timeout=self.timeout)

    def ask(self, text: str) -> str:
        for attempt in range(self.retries + 1):
            try:
                with self._post("/v1/chat/completions", {"messages": [{"role": "user", "content": text}]}) as r:
                    return json.load(r)["choices"][0]["message"]["content"]
            except urllib.error.HTTPError as exc:
                self.http_errors.append(exc.code)
                if exc.code < 500 or attempt == self.retries:
                    raise
                exc.close()
                time.sleep(0.05 * 2 ** attempt)
        raise AssertionError("unreachable")

    def stream(self, text: str) -> str:
        parts, done = [], False
        with self._post("/v1/chat/completions", {"messages": [{"role": "user", "content": text}], "stream": True}) as r:
            for raw in r:
                line = raw.decode().strip()
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    event = json.loads(line[6:])
                    if "error" in event:
                        raise IncompleteStream(event["error"]["message"])
                    parts += [c["delta"].get("content") or "" for c in event["choices"]]
        if not done:
            raise IncompleteStream("the stream ended without [DONE]")
        return "".join(parts)


# -- servers under test --------------------------------------------------------------------------

@pytest.fixture(params=["fake", "real"])
def any_server(request, tiny_model):
    if request.param == "fake":
        server = FakeServer.start(replies="Hello there, friend.")
    else:
        # random weights may end a reply at any token: fixed-length replies keep the tests exact
        server = LlamaServer.start(tiny_config(tiny_model, context_size=2048, extra_args=("--ignore-eos", "-n", "16")))
    try:
        yield server
    finally:
        server.stop()


def test_fake_scripts_replies_and_records_requests():
    replies = iter(["one", "two"])
    with FakeServer.start(replies=["Hi!", "Bye."]) as fake:
        client = ChatClient(fake.url)
        assert [client.ask("a"), client.ask("b"), client.ask("c")] == ["Hi!", "Bye.", "Bye."]
        assert [r.body["messages"][0]["content"] for r in fake.requests] == ["a", "b", "c"]
        assert fake.direct.chat.completions.create(messages=[{"role": "user", "content": "d"}])["choices"][0][
            "message"]["content"] == "Bye."
    with FakeServer.start(replies=lambda request: next(replies)) as fake:
        assert ChatClient(fake.url).stream("x") == "one"
    with FakeServer.start() as fake:  # echo
        assert ChatClient(fake.url).ask("echo me") == "echo me"
        vectors = fake.direct.embed(["a", "b", "a"])
        assert vectors.shape == (3, 16) and (vectors[0] == vectors[2]).all() and not (vectors[0] == vectors[1]).all()


def test_an_injected_error_is_retried_and_a_persistent_one_raises(any_server):
    client = ChatClient(any_server.url)
    any_server.inject_fault(Fault.error(503, nth=1))
    assert isinstance(client.ask("hi"), str)
    assert client.http_errors == [503]  # the first attempt got 503, the retry succeeded
    any_server.inject_fault(Fault.error(500, times=5))
    with pytest.raises(urllib.error.HTTPError) as info:
        client.ask("hi")
    assert info.value.code == 500 and client.http_errors == [503, 500, 500, 500]  # every attempt
    body = json.load(info.value)["error"]
    assert body["type"] == "server_error" and "injected fault" in body["message"]
    info.value.close()
    any_server.clear_faults()
    any_server.inject_fault(Fault.error(400, match="forbidden-word", nth=0, times=1))
    assert isinstance(client.ask("fine"), str)
    assert client.http_errors == [503, 500, 500, 500]  # a request without the word is not matched
    with pytest.raises(errors.BadRequestError, match="injected fault"):  # the same fault, from the direct API
        any_server.direct.chat.completions.create(messages=[{"role": "user", "content": "forbidden-word"}])


def test_slow_tokens_trip_a_client_timeout(any_server):
    any_server.inject_fault(Fault.slow_tokens(1.0))
    with pytest.raises(OSError) as info:  # (urllib wraps a timeout while sending in URLError)
        ChatClient(any_server.url, timeout=0.5).stream("hi")
    timed_out = info.value if isinstance(info.value, TimeoutError) else getattr(info.value, "reason", None)
    assert isinstance(timed_out, TimeoutError), f"not a timeout: {info.value!r}"
    any_server.clear_faults()
    assert isinstance(ChatClient(any_server.url, timeout=0.5).stream("hi"), str)  # the same client, without it


def test_a_cut_stream_is_detected(any_server):
    any_server.inject_fault(Fault.cut_stream(after_chunks=2))
    with pytest.raises(IncompleteStream, match="without \\[DONE\\]"):
        ChatClient(any_server.url).stream("hi")
    assert isinstance(ChatClient(any_server.url).stream("hi"), str)  # only the next stream was cut
    any_server.inject_fault(Fault.cut_stream(after_chunks=1))
    with pytest.raises((errors.ServerNotRunningError, errors.UnavailableError)):
        list(any_server.direct.chat.completions.create(messages=[{"role": "user", "content": "x"}], stream=True))


def test_busy_slots_show_as_degraded_until_cleared(any_server):
    any_server.inject_fault(Fault.slots_busy())
    answers: list[str] = []
    waiter = threading.Thread(target=lambda: answers.append(ChatClient(any_server.url, timeout=30).ask("hi")))
    waiter.start()
    deadline = time.monotonic() + 10
    while any_server.health_check().status is not HealthStatus.DEGRADED:
        assert time.monotonic() < deadline, any_server.health_check()
        time.sleep(0.02)
    assert not answers  # still waiting for a slot
    any_server.clear_faults()
    waiter.join(timeout=10)
    assert len(answers) == 1
    assert any_server.health_check().status is HealthStatus.HEALTHY


def test_loop_death_fails_the_server_and_load_faults_fail_its_restart(any_server):
    any_server.inject_fault(Fault.loop_dies())
    deadline = time.monotonic() + 5
    while any_server.status is not ServerStatus.FAILED:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(urllib.error.HTTPError) as info:
        ChatClient(any_server.url, retries=0).ask("hi")
    assert info.value.code == 503
    info.value.close()
    assert any_server.health_check().status is HealthStatus.UNHEALTHY
    while [e.kind for e in any_server.events()][-1] is not EventKind.FAILED:  # (the watchdog reports it)
        assert time.monotonic() < deadline, any_server.events()
        time.sleep(0.01)
    any_server.inject_fault(Fault.load_fails())
    with pytest.raises(errors.ModelLoadError, match="injected fault"):
        any_server.restart()
    any_server.inject_fault(Fault.over_memory())
    with pytest.raises(errors.ResourceError, match="injected fault"):
        any_server.restart()
    any_server.restart()
    assert isinstance(ChatClient(any_server.url).ask("hi"), str)


def test_an_assert_while_serving_answers_an_error_then_recovers_by_policy(tiny_model):
    for server in (FakeServer.start(restart=RestartPolicy(backoff_s=(0.05, 0.1))),
                   LlamaServer.start(tiny_config(tiny_model, restart=RestartPolicy(backoff_s=(0.05, 0.1)),
                                                 extra_args=("--ignore-eos", "-n", "16")))):
        try:
            server.inject_fault(Fault.assert_in_request())
            with pytest.raises(urllib.error.HTTPError) as info:
                ChatClient(server.url, retries=0).ask("hi")
            assert info.value.code in (500, 503)
            info.value.close()
            deadline = time.monotonic() + 20
            while [e.kind for e in server.events()].count(EventKind.READY) < 2:
                assert time.monotonic() < deadline, server.events()
                time.sleep(0.02)
            assert isinstance(ChatClient(server.url).ask("hi"), str)
        finally:
            server.stop()


# -- fidelity: the fake answers with the real server's shapes -----------------------------------
# (ignore_eos and temperature 0: the tiny model's random weights may otherwise end a reply at its
# first token or sample only halves of UTF-8 characters, which changes the event sequence; the
# fake ignores both fields, as it ignores sampling)

def shape(value):
    """Keys and JSON types, recursively (lists by their first element)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def _is_role_event(event) -> bool:
    return isinstance(event, dict) and bool(event.get("choices")) and "role" in event["choices"][0].get("delta", {})


def raw_exchange(url: str, method: str, path: str, body: dict | None) -> tuple[int, str, bytes]:
    port = int(url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Content-Type": "application/json"})
        res = conn.getresponse()
        return res.status, res.getheader("Content-Type", ""), res.read()
    finally:
        conn.close()


def sse_events(data: bytes) -> list:
    assert data.endswith(b"\n\n")
    blocks = data.decode().strip().split("\n\n")
    assert all(b.startswith("data: ") for b in blocks), blocks
    return [b[6:] if b[6:] == "[DONE]" else json.loads(b[6:]) for b in blocks]


CASES = [
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "ignore_eos": True, "temperature": 0}),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True, "ignore_eos": True, "temperature": 0}),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True,
                                      "ignore_eos": True, "temperature": 0, "stream_options": {"include_usage": True}}),
    ("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 3, "ignore_eos": True, "temperature": 0}),
    ("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 3, "stream": True, "ignore_eos": True, "temperature": 0}),
    ("POST", "/v1/embeddings", {"input": ["a", "b"]}),
    ("POST", "/v1/embeddings", {"input": "a", "encoding_format": "base64"}),
    ("POST", "/tokenize", {"content": "hi"}),
    ("POST", "/detokenize", {"tokens": [300, 301]}),
    ("GET", "/health", None),
    ("GET", "/v1/models", None),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user"}]}),
    ("GET", "/no/such/route", None),
]
PROPS_KEYS = {"default_generation_settings", "total_slots", "model_alias", "model_path", "modalities", "chat_template",
              "bos_token", "eos_token", "build_info"}


def test_the_fake_answers_with_the_real_servers_shapes(tiny_model):
    real = LlamaServer.start(tiny_config(tiny_model, embeddings=True, extra_args=("--pooling", "mean")))
    fake = FakeServer.start(replies="two words here")
    try:
        for method, path, body in CASES:
            (rs, rt, rb), (fs, ft, fb) = (raw_exchange(s.url, method, path, body) for s in (real, fake))
            assert (rs, rt.split(";")[0]) == (fs, ft.split(";")[0]), (path, body, rb, fb)
            if rt.startswith("text/event-stream"):
                real_events, fake_events = sse_events(rb), sse_events(fb)
                assert real_events[-1] == fake_events[-1] == "[DONE]"
                assert shape(fake_events[-2]) == shape(real_events[-2]), (path, body)  # the final event
                # every kind of event the fake sends, the real server sends too (llama.cpp sends
                # the chat role event with the first decoded token; when the tiny model's first
                # token is half a UTF-8 character, it has none: so the converse is not required)
                real_shapes = [shape(e) for e in real_events[:-1]]
                assert all(shape(e) in real_shapes for e in fake_events[:-1] if not _is_role_event(e)), (path, body)
                role = [e for e in real_events if _is_role_event(e)]
                if role:
                    assert shape(role[0]) == shape(fake_events[0])
            else:
                assert shape(json.loads(fb)) == shape(json.loads(rb)), (path, body)
        real_props, fake_props = (json.loads(raw_exchange(s.url, "GET", "/props", None)[2]) for s in (real, fake))
        assert PROPS_KEYS <= set(real_props) and PROPS_KEYS <= set(fake_props)
    finally:
        real.stop()
        fake.stop()


def test_the_openai_sdk_reads_the_fake_like_the_real_server(tiny_model):
    openai = pytest.importorskip("openai")
    real = LlamaServer.start(tiny_config(tiny_model, extra_args=("--ignore-eos",)))
    fake = FakeServer.start(replies="two words here")
    try:
        for server in (real, fake):
            for client in (openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0),
                           server.openai_client()):
                r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
                assert r.object == "chat.completion" and r.usage.completion_tokens > 0
                chunks = list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                                             max_tokens=3, stream=True))
                assert chunks[-1].choices[0].finish_reason in ("stop", "length")
                with pytest.raises(openai.BadRequestError):
                    client.chat.completions.create(model="m", messages=[{"role": "user"}])
                client.close()
    finally:
        real.stop()
        fake.stop()
