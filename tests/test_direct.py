"""Direct calls (server.direct / server.adirect): the same handlers as HTTP, without the hop."""

from __future__ import annotations

import asyncio
import base64
import gc
import threading
import time

import numpy as np
import pytest

from conftest import tiny_config
from http_client import post, stream_events
from llamaproc import LlamaServer, ServerStatus, errors

# every test here runs in this process and isolated in a child process (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("isolation")

MESSAGES = [{"role": "user", "content": "Tell me about rivers"}]


@pytest.fixture(scope="module")
def server(tiny_model):
    srv = LlamaServer.start(tiny_config(tiny_model, parallel=4, context_size=4096, embeddings=True,
                                        extra_args=("--pooling", "mean")))
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _no_leaked_servers():
    """(overrides conftest's: the module-scoped server above is stopped by its fixture)"""
    yield


def wait_idle(server: LlamaServer, timeout: float = 5.0) -> float:
    t0 = time.monotonic()
    while True:
        load = server._run.native.query_load(1.0)
        if load is not None and load["n_processing"] == 0 and load["n_deferred"] == 0:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"slots still busy: {load}")
        time.sleep(0.002)


def test_chat_direct_equals_http_and_streaming_equals_non_streaming(server):
    params = {"max_tokens": 16, "temperature": 0, "seed": 7}
    direct = server.direct.chat.completions.create(messages=MESSAGES, **params)
    status, http = post(server.url + "/v1/chat/completions", {"messages": MESSAGES, **params})
    assert status == 200
    assert direct["choices"][0]["message"]["content"] == http["choices"][0]["message"]["content"]
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):  # (the second one hits the prompt cache)
        assert direct["usage"][key] == http["usage"][key]
    assert direct["object"] == "chat.completion" and set(direct) >= {"id", "created", "model", "choices", "usage"}
    chunks = list(server.direct.chat.completions.create(messages=MESSAGES, stream=True, **params))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert text == direct["choices"][0]["message"]["content"]
    assert chunks[-1]["object"] == "chat.completion.chunk"
    assert any(c["choices"] and c["choices"][0]["finish_reason"] == "length" for c in chunks)
    http_chunks = [e for e in stream_events(server.url + "/v1/chat/completions", {"messages": MESSAGES, **params})
                   if e != "[DONE]"]
    assert len(http_chunks) == len(chunks)


def test_completions_and_post_reach_any_route(server):
    r = server.direct.completions.create(prompt="once upon", max_tokens=4, temperature=0, ignore_eos=True)
    assert r["object"] == "text_completion" and r["usage"]["completion_tokens"] == 4
    legacy = server.direct.post("/completion", {"prompt": "once upon", "n_predict": 4, "temperature": 0, "ignore_eos": True})
    assert legacy["content"] == r["choices"][0]["text"]
    applied = server.direct.post("/apply-template", {"messages": MESSAGES})
    assert "rivers" in applied["prompt"]
    streamed = list(server.direct.post("/completion", {"prompt": "once upon", "n_predict": 3, "stream": True}))
    assert streamed[-1]["stop"] is True


def test_tokenize_detokenize_and_embeddings_are_exact(server):
    tokens = server.direct.tokenize("hello world")
    assert tokens.dtype == np.int32 and tokens.ndim == 1 and len(tokens) > 0
    assert post(server.url + "/tokenize", {"content": "hello world"})[1]["tokens"] == tokens.tolist()
    assert server.direct.detokenize(tokens) == post(server.url + "/detokenize", {"tokens": tokens.tolist()})[1]["content"]
    vectors = server.direct.embed(["a river", "a mountain"])
    assert vectors.shape[0] == 2 and vectors.dtype == np.float32 and vectors.shape[1] > 0
    status, body = post(server.url + "/v1/embeddings", {"input": ["a river", "a mountain"], "encoding_format": "base64"})
    assert status == 200
    http_vectors = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in body["data"]])
    assert vectors.tobytes() == http_vectors.tobytes()  # bit for bit
    assert server.direct.embed("one").shape == (1, vectors.shape[1])


def test_bad_parameters_raise_typed_errors(server):
    with pytest.raises(errors.BadRequestError) as info:
        server.direct.chat.completions.create(messages=[{"role": "user"}])
    assert info.value.status_code == 400 and info.value.type == "invalid_request_error"
    with pytest.raises(errors.ContextSizeExceededError):
        server.direct.completions.create(prompt="word " * 5000, max_tokens=1)
    with pytest.raises(errors.NotFoundError):
        server.direct.post("/no/such/route", {})
    with pytest.raises(errors.NotSupportedError):
        server.direct.rerank("q", ["a", "b"])  # started without --reranking
    with pytest.raises(errors.BadRequestError):
        list(server.direct.chat.completions.create(messages="not a list", stream=True))


def test_breaking_out_of_a_stream_frees_the_slot(server):
    wait_idle(server)
    stream = server.direct.completions.create(prompt="count", max_tokens=3000, ignore_eos=True, stream=True)
    for i, _ in enumerate(stream):
        if i == 5:
            break
    stream.close()
    assert wait_idle(server) < 1.0
    # the next request is served
    assert server.direct.completions.create(prompt="x", max_tokens=2, ignore_eos=True)["usage"]["completion_tokens"] == 2


def test_dropping_a_stream_or_a_timeout_cancels_it(server):
    wait_idle(server)
    stream = server.direct.completions.create(prompt="count", max_tokens=3000, ignore_eos=True, stream=True)
    next(stream)
    del stream
    gc.collect()
    assert wait_idle(server) < 1.0
    t0 = time.monotonic()
    with pytest.raises(errors.RequestTimeoutError):
        server.direct.completions.create(prompt="count", max_tokens=100000, ignore_eos=True, timeout=0.3)
    assert time.monotonic() - t0 < 2
    assert wait_idle(server) < 2.0


def test_a_cancelled_non_streaming_call_frees_its_slot_at_once(server):
    """Needs patches/0002: a waiting handler used to check its stop flag once a quiet second."""
    wait_idle(server)
    for _ in range(3):
        with pytest.raises(errors.RequestTimeoutError):
            server.direct.completions.create(prompt="count", max_tokens=100000, ignore_eos=True, timeout=0.2)
        assert wait_idle(server) < 0.3  # 10 ms polling + a decode step, not a second


def test_eight_threads_and_eight_tasks_stream_at_once(server):
    results: dict[int, str] = {}

    def worker(i: int) -> None:
        text = "".join(c["choices"][0]["text"] for c in server.direct.completions.create(
            prompt=f"story {i}", max_tokens=12, temperature=0, ignore_eos=True, stream=True))
        results[i] = text

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 8 and all(results.values())

    async def main() -> list[str]:
        async def one(i: int) -> str:
            stream = await server.adirect.completions.create(prompt=f"story {i}", max_tokens=12, temperature=0,
                                                             ignore_eos=True, stream=True)
            return "".join([c["choices"][0]["text"] async for c in stream])

        return await asyncio.gather(*(one(i) for i in range(8)))

    texts = asyncio.run(main())
    # (not compared with the threads' texts: batches of different make-up may round differently)
    assert len(texts) == 8 and all(texts)


def test_asyncio_cancellation_frees_the_slot(server):
    wait_idle(server)

    async def main() -> None:
        streaming = asyncio.Event()

        async def consume() -> None:
            stream = await server.adirect.completions.create(prompt="count", max_tokens=3000, ignore_eos=True,
                                                             stream=True)
            async for _ in stream:
                streaming.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(streaming.wait(), timeout=30)  # the slot decodes: cancel mid-stream
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert wait_idle(server) < 1.0
    r = asyncio.run(server.adirect.chat.completions.create(messages=MESSAGES, max_tokens=3, ignore_eos=True))
    assert r["usage"]["completion_tokens"] == 3
    assert asyncio.run(server.adirect.tokenize("hello")).tolist() == server.direct.tokenize("hello").tolist()


def test_a_slow_consumer_does_not_stall_other_clients(server):
    stream = server.direct.completions.create(prompt="slow", max_tokens=200, ignore_eos=True, stream=True,
                                              stream_options={"include_usage": True})
    next(stream)  # then nobody reads it for a while
    t0 = time.monotonic()
    status, body = post(server.url + "/v1/completions", {"prompt": "fast", "max_tokens": 8, "ignore_eos": True}, timeout=30)
    assert status == 200 and body["usage"]["completion_tokens"] == 8
    assert time.monotonic() - t0 < 5
    rest = list(stream)  # everything generated meanwhile is still there
    assert rest[-1]["usage"]["completion_tokens"] == 200


def test_ctrl_c_during_a_direct_call(tiny_model):
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import os, signal, threading, time
        from llamaproc import LlamaServer, ServerConfig
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
        cfg = ServerConfig(model_path={str(tiny_model)!r}, threads=1, context_size=8192, parallel=1)
        with LlamaServer.start(cfg) as server:
            def decoding():  # None: the loop did not answer in time (busy): ask again
                load = server._run.native.query_load(1.0)
                return load is not None and load["n_processing"] > 0

            def idle():
                load = server._run.native.query_load(1.0)
                return load is not None and load["n_processing"] == 0

            def interrupt_once_decoding():
                deadline = time.monotonic() + 30
                while not decoding() and time.monotonic() < deadline:
                    time.sleep(0.005)
                os.kill(os.getpid(), signal.SIGINT)
            threading.Thread(target=interrupt_once_decoding, daemon=True).start()
            try:
                server.direct.completions.create(prompt="x", max_tokens=100000, ignore_eos=True)
                print("finished")
            except KeyboardInterrupt:
                t0 = time.monotonic()
                while not idle():
                    time.sleep(0.005)
                print("interrupted", round(time.monotonic() - t0, 3))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    words = r.stdout.split()
    assert words[0] == "interrupted", r.stdout
    assert float(words[1]) < 0.5  # the slot is freed promptly


def test_stop_during_iteration_and_calls_on_a_stopped_server(tiny_model):
    srv = LlamaServer.start(tiny_config(tiny_model, context_size=4096))
    stream = srv.direct.completions.create(prompt="x", max_tokens=3000, ignore_eos=True, stream=True)
    next(stream)
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 3
    with pytest.raises(errors.ServerNotRunningError):
        for _ in stream:
            pass
    with pytest.raises(errors.ServerNotRunningError):
        srv.direct.tokenize("x")
    assert srv.status is ServerStatus.STOPPED


def test_openai_sdk_over_the_in_process_transport(server):
    openai = pytest.importorskip("openai")
    client = server.openai_client()
    assert isinstance(client, openai.OpenAI)
    params = {"max_tokens": 8, "temperature": 0, "seed": 3}
    r = client.chat.completions.create(model="tiny", messages=MESSAGES, **params)
    expected = server.direct.chat.completions.create(messages=MESSAGES, **params)
    assert r.choices[0].message.content == expected["choices"][0]["message"]["content"]
    chunks = list(client.chat.completions.create(model="tiny", messages=MESSAGES, stream=True, **params))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == r.choices[0].message.content
    emb = client.embeddings.create(model="tiny", input=["a river"])
    assert np.allclose(np.asarray(emb.data[0].embedding, np.float32), server.direct.embed("a river")[0])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[{"role": "user"}])  # type: ignore[typeddict-item]
