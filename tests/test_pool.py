"""ModelPool: several models behind one port. Real pools on generated tiny models over loopback:
llama-server router compatibility, the queue, LRU and byte budget, drains, swaps under load,
idle unload, stop, per-model recovery, and bad configuration."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from llamaproc import ModelPool, ModelSpec, ModelStatus, PoolConfig, RestartPolicy, errors, serve_from_args
from llamaproc.testing import Fault, make_tiny_model

from conftest import assert_one_model_live_at_a_time, free_port, rss_bytes, thread_count
from http_client import get, post, request, stream_events

# every test here runs in this process and with the pool isolated in a child process (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("isolation")

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three small models that differ in weights (one file each)."""
    folder = tmp_path_factory.mktemp("pool-models")
    return {name: make_tiny_model(folder / f"{name}.gguf", seed=seed) for seed, name in enumerate("abc", start=1)}


def spec(path: Path, **changes) -> ModelSpec:
    """Small, single-threaded, no prompt cache: the byte figures are the model's own."""
    fields = dict(model_path=path, context_size=256, parallel=2, threads=1, extra_args=("--cache-ram", "0"))
    fields.update(changes)
    return ModelSpec(**fields)


def chat(pool: ModelPool, model: str | None, **changes) -> tuple[int, dict | str]:
    body = {**CHAT, **changes}
    if model is not None:
        body["model"] = model
    return post(pool.url + "/v1/chat/completions", body)


def long_stream(pool: ModelPool, model: str, tokens: int = 40) -> list:
    """A stream that ends by length (ignore_eos): the events, '[DONE]' last."""
    body = {**CHAT, "model": model, "max_tokens": tokens, "ignore_eos": True}
    return list(stream_events(pool.url + "/v1/chat/completions", body))


def stream_ended_cleanly(events: list) -> bool:
    finishes = [e["choices"][0].get("finish_reason") for e in events if isinstance(e, dict) and e.get("choices")]
    return bool(events) and events[-1] == "[DONE]" and finishes[-1] in ("length", "stop")


def statuses(pool: ModelPool) -> dict[str, ModelStatus]:
    return {m.name: m.status for m in pool.models()}


def wait_for(predicate, timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


# -- one port, several models; llama-server's router API ------------------------------------

def test_two_models_on_one_port_chosen_per_request(models):
    cfg = PoolConfig(models={"a": spec(models["a"], aliases=("default",)), "b": spec(models["b"])})
    with ModelPool.start(cfg) as pool:
        assert chat(pool, "a")[0] == 200 and chat(pool, "b")[0] == 200
        # GET routes take ?model=; each instance serves its own file
        assert get(pool.url + "/props?model=a")[1]["model_path"] == str(models["a"])
        assert get(pool.url + "/props?model=b")[1]["model_path"] == str(models["b"])
        # an alias is the same model: no second load
        assert chat(pool, "default")[0] == 200
        assert pool.model("a").loads == 1 and pool.model("default").name == "a"
        # llama-server's error bodies
        status, body = chat(pool, "nope")
        assert status == 400 and body["error"] == {"code": 400, "message": "model 'nope' not found",
                                                   "type": "invalid_request_error"}
        status, body = chat(pool, None)
        assert status == 400 and body["error"]["message"] == "model name is missing from the request"


def test_router_endpoints_answer_with_llama_servers_shapes(models):
    cfg = PoolConfig(models={"a": spec(models["a"], tags=("small",)), "b": spec(models["b"])}, max_loaded=3)
    with ModelPool.start(cfg) as pool:
        status, props = get(pool.url + "/props")
        assert status == 200 and props["role"] == "router" and props["max_instances"] == 3
        assert props["models_autoload"] is True and props["model_path"] == "none"
        assert get(pool.url + "/health") == (200, {"status": "ok"})

        assert post(pool.url + "/models/load", {"model": "a"}) == (200, {"success": True})
        assert wait_for(lambda: statuses(pool)["a"] is ModelStatus.LOADED)
        status, listing = get(pool.url + "/v1/models")
        assert status == 200 and listing["object"] == "list"
        by_id = {m["id"]: m for m in listing["data"]}
        assert set(by_id) == {"a", "b"}
        a, b = by_id["a"], by_id["b"]
        assert a["status"]["value"] == "loaded" and b["status"]["value"] == "unloaded"
        assert a["object"] == "model" and a["owned_by"] == "llamacpp" and a["tags"] == ["small"]
        assert "--model" in a["status"]["args"] and a["meta"]["n_ctx"] > 0  # the instance's own info, once loaded
        assert "meta" not in b

        assert post(pool.url + "/models/load", {"model": "a"})[1]["error"]["message"] == "model is already running"
        status, body = post(pool.url + "/models/load", {"model": "zz"})
        # llama-server's 404 (its HTTP layer writes every 404 body as "File Not Found")
        assert status == 404 and body["error"]["type"] == "not_found_error"
        assert post(pool.url + "/models/unload", {"model": "b"})[1]["error"]["message"] == "model is not running"
        assert post(pool.url + "/models/unload", {"model": "a"}) == (200, {"success": True})
        assert wait_for(lambda: statuses(pool)["a"] is ModelStatus.UNLOADED)
        # downloads stay refused, with the reason
        status, body = post(pool.url + "/models", {"model": "some/repo"})
        assert status == 501 and "local GGUF files only" in body["error"]["message"]
        assert request("DELETE", pool.url + "/models?model=a")[0] == 501


def test_models_sse_streams_status_events(models):
    with ModelPool.start(PoolConfig(models={"a": spec(models["a"])})) as pool:
        events: list[dict] = []
        subscribed = threading.Event()

        def listen() -> None:
            import http.client
            conn = http.client.HTTPConnection("127.0.0.1", pool.port, timeout=10)
            conn.request("GET", "/models/sse")
            res = conn.getresponse()  # the pool subscribes this client before it sends the headers
            subscribed.set()
            for raw in res:
                line = raw.decode().strip()
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
                    if events[-1].get("data", {}).get("status") == "loaded":
                        break
            conn.close()

        listener = threading.Thread(target=listen)
        listener.start()
        assert subscribed.wait(timeout=10), "GET /models/sse did not answer"
        assert chat(pool, "a")[0] == 200
        listener.join(timeout=10)
        assert [(e["model"], e["event"], e["data"]["status"]) for e in events] == [
            ("a", "status_change", "loading"), ("a", "status_change", "loaded")]
        assert events[-1]["data"]["info"]["id"] == "a"
        # Python gets the same events
        assert [(e.model, e.status) for e in pool.events()] == [("a", ModelStatus.LOADING), ("a", ModelStatus.LOADED)]


def test_without_autoload_a_model_serves_after_an_explicit_load(models):
    with ModelPool.start(PoolConfig(models={"a": spec(models["a"])}, autoload=False)) as pool:
        status, body = chat(pool, "a")
        assert status == 400 and body["error"]["message"] == "model is not loaded"
        assert post(pool.url + "/v1/chat/completions?autoload=true", {**CHAT, "model": "a"})[0] == 200
        pool.unload("a")
        pool.load("a")
        assert chat(pool, "a")[0] == 200


def test_default_model_takes_requests_that_name_none(models):
    cfg = PoolConfig(models={"a": spec(models["a"]), "b": spec(models["b"])}, default_model="b")
    with ModelPool.start(cfg) as pool:
        assert chat(pool, None)[0] == 200
        assert statuses(pool) == {"a": ModelStatus.UNLOADED, "b": ModelStatus.LOADED}


def test_direct_calls_route_by_model_and_load_it(models):
    with ModelPool.start(PoolConfig(models={"a": spec(models["a"]), "b": spec(models["b"])})) as pool:
        reply = pool.direct("b").chat.completions.create(messages=CHAT["messages"], max_tokens=3)
        assert reply["choices"][0]["finish_reason"] in ("length", "stop")
        assert statuses(pool)["b"] is ModelStatus.LOADED and statuses(pool)["a"] is ModelStatus.UNLOADED
        assert len(pool.direct("a").tokenize("hello")) > 0


# -- the queue, LRU and the byte budget ------------------------------------------------------

def test_max_loaded_unloads_the_least_recently_used(models):
    cfg = PoolConfig(models={n: spec(p) for n, p in models.items()}, max_loaded=2)
    with ModelPool.start(cfg) as pool:
        for name in ("a", "b", "a", "c"):  # b is now the least recently used
            assert chat(pool, name)[0] == 200
        assert wait_for(lambda: statuses(pool) == {"a": ModelStatus.LOADED, "b": ModelStatus.UNLOADED,
                                                   "c": ModelStatus.LOADED})
        assert pool.instances_alive == 2


def test_a_busy_model_is_never_evicted(models):
    cfg = PoolConfig(models={"a": spec(models["a"]), "b": spec(models["b"])}, max_loaded=1)
    with ModelPool.start(cfg) as pool:
        pool.load("a")
        pool.inject_fault("a", Fault.slow_tokens(0.04))  # a's stream takes about 1.6 s
        stream: dict = {}
        streamer = threading.Thread(target=lambda: stream.update(events=long_stream(pool, "a"), end=time.monotonic()))
        streamer.start()
        assert wait_for(lambda: pool.model("a").active_requests == 1)
        status, _ = chat(pool, "b")  # waits for a's stream, then takes its place
        b_done = time.monotonic()
        streamer.join()
        assert status == 200 and stream_ended_cleanly(stream["events"])
        assert b_done >= stream["end"] - 0.05, "b was served before a's stream finished: a was evicted while busy"
        assert statuses(pool) == {"a": ModelStatus.UNLOADED, "b": ModelStatus.LOADED}


def test_requests_for_one_unloaded_model_share_one_load(models):
    with ModelPool.start(PoolConfig(models={"a": spec(models["a"])})) as pool:
        pool.inject_fault("a", "slow_load", param=100)  # about 2 s: every client asks while it loads
        results: list[int] = []
        clients = [threading.Thread(target=lambda: results.append(chat(pool, "a")[0])) for _ in range(3)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        assert results == [200, 200, 200]
        assert pool.model("a").loads == 1


def test_models_waiting_for_room_load_first_in_first_out(models):
    cfg = PoolConfig(models={n: spec(p) for n, p in models.items()}, max_loaded=1)
    with ModelPool.start(cfg) as pool:
        pool.load("a")
        pool.inject_fault("a", Fault.slow_tokens(0.03))
        streamer = threading.Thread(target=lambda: long_stream(pool, "a", 30))
        streamer.start()
        assert wait_for(lambda: pool.model("a").active_requests == 1)
        pool.events()
        # POST /models/load answers once the model is queued (no room while a streams), so the
        # queue's order is known; c first: not the names' order
        for name in ("c", "b"):
            assert post(pool.url + "/models/load", {"model": name}) == (200, {"success": True})
        assert pool.model("a").active_requests == 1, "a's stream ended before both models were queued"
        served: dict[str, int] = {}
        clients = [threading.Thread(target=lambda n=n: served.__setitem__(n, chat(pool, n)[0])) for n in ("b", "c")]
        for t in clients:
            t.start()
        for t in clients + [streamer]:
            t.join()
        assert served == {"b": 200, "c": 200}
        loads = [e.model for e in pool.events() if e.status is ModelStatus.LOADING]
        assert loads[:2] == ["c", "b"], loads


def test_a_client_that_leaves_the_queue_causes_no_eviction(models):
    cfg = PoolConfig(models={"a": spec(models["a"]), "b": spec(models["b"])}, max_loaded=1)
    with ModelPool.start(cfg) as pool:
        pool.load("a")
        pool.inject_fault("a", Fault.slow_tokens(0.04))
        streamer = threading.Thread(target=lambda: long_stream(pool, "a", 30))
        streamer.start()
        assert wait_for(lambda: pool.model("a").active_requests == 1)
        pool.events()
        with pytest.raises(OSError):  # TimeoutError: the client gives up while b waits for room
            post(pool.url + "/v1/chat/completions", {**CHAT, "model": "b"}, timeout=0.4)
        streamer.join()
        assert wait_for(lambda: pool.model("a").active_requests == 0)  # idle: a queued b would load now
        assert [e for e in pool.events(timeout=0.5) if e.model == "b"] == []
        assert statuses(pool)["a"] is ModelStatus.LOADED and pool.model("b").loads == 0


def _budget_for_one(models) -> int:
    """A byte budget that holds one of the tiny models, not two."""
    with ModelPool.start(PoolConfig(models={"a": spec(models["a"])})) as probe:
        probe.load("a")
        need = probe.model("a").memory_estimate
    return int(need * 1.5)


def test_a_budget_for_one_model_never_holds_two(models):
    budget = _budget_for_one(models)
    cfg = PoolConfig(models={"a": spec(models["a"]), "b": spec(models["b"])}, memory_budget=budget, max_loaded=0)
    with ModelPool.start(cfg) as pool:
        base_rss = rss_bytes()
        samples: list[tuple[int, int, int]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append((pool.instances_alive, pool.reserved_bytes, rss_bytes()))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            for name in "abab":
                assert chat(pool, name)[0] == 200
        finally:
            stop.set()
            sampler.join()
        assert max(s[0] for s in samples) <= 1
        assert max(s[1] for s in samples) <= budget
        # in event order too (sampling can miss a short load): a model starts loading only
        # once the other one is unloaded
        assert_one_model_live_at_a_time(pool.events())
        assert max(s[2] for s in samples) <= base_rss + budget + 64 * 2**20
        assert statuses(pool) == {"a": ModelStatus.UNLOADED, "b": ModelStatus.LOADED}


def test_a_model_over_the_budget_fails_at_once_and_loads_nothing(models):
    budget = _budget_for_one(models)
    with ModelPool.start(PoolConfig(models={"a": spec(models["a"])}, memory_budget=budget)) as pool:
        pool.add("big", spec(models["b"], context_size=2048, parallel=1, extra_args=("--cache-ram", "4096")))
        with pytest.raises(errors.ResourceError, match="memory budget"):
            pool.load("big")
        assert pool.instances_alive == 0 and pool.reserved_bytes == 0
        status, body = chat(pool, "big")
        assert status == 503 and "memory budget" in body["error"]["message"]
        assert pool.model("big").status is ModelStatus.FAILED
        assert chat(pool, "a")[0] == 200  # the others serve on


# -- swaps with zero failed requests ---------------------------------------------------------

class _Load:
    """Clients hammering one model: half stream, half not; every outcome recorded."""

    def __init__(self, pool: ModelPool, model: str, clients: int = 8) -> None:
        self.pool, self.model = pool, model
        self.failures: list[str] = []
        self.ok = 0
        self._served = threading.Condition()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i % 2 == 0,)) for i in range(clients)]

    def _run(self, streaming: bool) -> None:
        while not self.stop.is_set():
            try:
                if streaming:
                    events = long_stream(self.pool, self.model, 8)
                    if not stream_ended_cleanly(events):
                        self.failures.append(f"stream ended badly: {events[-3:]}")
                        continue
                else:
                    status, body = chat(self.pool, self.model)
                    if status != 200:
                        self.failures.append(f"HTTP {status}: {body}")
                        continue
                with self._served:
                    self.ok += 1
                    self._served.notify_all()
            except Exception as exc:  # noqa: BLE001 - every failure counts
                self.failures.append(repr(exc))

    def wait_served(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` more requests succeeded: the load is flowing."""
        with self._served:
            target = self.ok + count
            assert self._served.wait_for(lambda: self.ok >= target or bool(self.failures), timeout), (
                f"{self.ok} of {target} requests served within {timeout} s")

    def __enter__(self) -> _Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


@pytest.mark.parametrize("max_loaded, expected_mode", [(2, "hot"), (1, "cold")])
def test_swaps_under_load_fail_no_request(models, max_loaded, expected_mode):
    cfg = PoolConfig(models={"m": spec(models["a"])}, max_loaded=max_loaded)
    with ModelPool.start(cfg) as pool:
        pool.load("m")
        threads_before = thread_count()
        with _Load(pool, "m") as load:
            reports = []
            for i in range(4):
                load.wait_served(5)  # requests flow before each swap
                reports.append(pool.swap("m", spec(models["b" if i % 2 == 0 else "a"])))
            load.wait_served(5)  # and after the last one
        assert load.failures == [] and load.ok > 20
        assert {r.mode for r in reports} == {expected_mode}
        assert get(pool.url + "/props?model=m")[1]["model_path"] == str(models["a"])
        assert pool.instances_alive == 1  # every old instance was freed
        assert wait_for(lambda: thread_count() <= threads_before + 2)


@pytest.mark.parametrize("max_loaded", [2, 1])
def test_a_swap_to_a_corrupt_file_keeps_the_old_model_serving(models, tmp_path, max_loaded):
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(models["b"].read_bytes()[:4096])  # a valid header, then nothing
    cfg = PoolConfig(models={"m": spec(models["a"])}, max_loaded=max_loaded)
    with ModelPool.start(cfg) as pool:
        pool.load("m")
        with _Load(pool, "m", clients=4) as load:
            load.wait_served(3)
            with pytest.raises(errors.ModelLoadError):
                pool.swap("m", spec(corrupt))
            load.wait_served(3)  # the old model serves on
        assert load.failures == []
        assert get(pool.url + "/props?model=m")[1]["model_path"] == str(models["a"])
        assert pool.model("m").status is ModelStatus.LOADED


# -- drain, idle unload, stop -----------------------------------------------------------------

def test_unload_during_a_stream_lets_it_finish(models):
    with ModelPool.start(PoolConfig(models={"a": spec(models["a"])})) as pool:
        pool.load("a")
        pool.inject_fault("a", Fault.slow_tokens(0.03))
        out: dict = {}
        streamer = threading.Thread(target=lambda: out.update(events=long_stream(pool, "a", 30)))
        streamer.start()
        assert wait_for(lambda: pool.model("a").active_requests == 1)
        assert pool.unload("a", drain_timeout=30) is True  # returns once drained and freed
        streamer.join()
        finishes = [e["choices"][0]["finish_reason"] for e in out["events"][:-1] if e.get("choices")]
        assert stream_ended_cleanly(out["events"]) and finishes[-1] == "length"  # all its tokens, not cut
        assert statuses(pool)["a"] is ModelStatus.UNLOADED and pool.instances_alive == 0


def test_idle_models_unload_and_the_next_request_loads_again(models):
    cfg = PoolConfig(models={"a": spec(models["a"]), "p": spec(models["b"], pinned=True)}, idle_unload_s=0.5)
    with ModelPool.start(cfg) as pool:
        assert chat(pool, "a")[0] == 200 and chat(pool, "p")[0] == 200
        assert wait_for(lambda: statuses(pool)["a"] is ModelStatus.UNLOADED, timeout=5)
        assert statuses(pool)["p"] is ModelStatus.LOADED  # pinned
        assert chat(pool, "a")[0] == 200 and pool.model("a").loads == 2


def test_stop_with_requests_on_three_models_is_prompt_and_frees_everything(models):
    threads_before = thread_count()
    cfg = PoolConfig(models={n: spec(p) for n, p in models.items()}, max_loaded=3)
    pool = ModelPool.start(cfg)
    for name in models:
        pool.load(name)
    for name in models:  # each stream stays open for 10 s unless the stop ends it
        pool.inject_fault(name, Fault.slow_tokens(0.1))
    streaming = {n: threading.Event() for n in models}

    def consume(n: str) -> None:
        for _ in stream_events(pool.url + "/v1/chat/completions",
                               {**CHAT, "model": n, "max_tokens": 100, "ignore_eos": True}):
            streaming[n].set()

    streams = [threading.Thread(target=consume, args=(n,)) for n in models]
    for s in streams:
        s.start()
    # every stream has its 200 and a first token (a stop before that answers 503, not a stream)
    assert all(e.wait(10) for e in streaming.values())
    assert wait_for(lambda: sum(m.active_requests for m in pool.models()) == 3)
    started = time.monotonic()
    pool.stop()
    took = time.monotonic() - started
    for s in streams:
        s.join(timeout=10)
    assert took < 2.5, f"stop took {took:.2f} s"
    assert pool.instances_alive == 0 and not pool.running
    assert wait_for(lambda: thread_count() <= threads_before + 1)


# -- recovery and events ----------------------------------------------------------------------

def test_a_dead_model_recovers_by_its_policy_and_the_others_never_notice(models):
    cfg = PoolConfig(models={"a": spec(models["a"]), "b": spec(models["b"])},
                     restart=RestartPolicy(max_restarts=2, backoff_s=(0.1, 0.1)))
    with ModelPool.start(cfg) as pool:
        pool.load("a")
        pool.load("b")
        pool.events()
        with _Load(pool, "b", clients=2) as load:
            pool.inject_fault("a", "loop_dies")
            assert wait_for(lambda: pool.model("a").loads == 2 and statuses(pool)["a"] is ModelStatus.LOADED)
        assert load.failures == [] and load.ok > 0
        kinds = [(e.model, e.kind, e.status) for e in pool.events() if e.model == "a"]
        assert kinds[:2] == [("a", "status_change", ModelStatus.FAILED), ("a", "restarting", ModelStatus.FAILED)]
        assert kinds[-1] == ("a", "status_change", ModelStatus.LOADED)
        assert chat(pool, "a")[0] == 200


def test_add_and_remove_models_at_runtime(models):
    with ModelPool.start(PoolConfig(models={"a": spec(models["a"])})) as pool:
        pool.add("b", spec(models["b"], aliases=("bee",)))
        assert chat(pool, "bee")[0] == 200
        with pytest.raises(errors.ConfigError, match="conflicts"):
            pool.add("c", spec(models["c"], aliases=("a",)))
        pool.remove("b")
        assert chat(pool, "b")[0] == 400 and pool.instances_alive == 0
        with pytest.raises(errors.ModelNotFoundError):
            pool.load("b")


# -- sources and bad configuration ------------------------------------------------------------

def test_models_dir_and_preset_serve_like_llama_servers_router(models, tmp_path):
    folder = tmp_path / "dir"
    folder.mkdir()
    shutil.copy(models["a"], folder / "alpha.gguf")
    (folder / "broken.gguf").write_bytes(b"GGUF" + b"\0" * 60)  # corrupt: listed as failed, others serve
    preset = tmp_path / "models.ini"
    preset.write_text(f"[*]\nctx-size = 256\nthreads = 1\ncache-ram = 0\n\n"
                      f"[beta]\nmodel = {models['b']}\nalias = bee\nload-on-startup = true\n")
    with ModelPool.from_args(["--models-dir", str(folder), "--models-preset", str(preset), "--port", "0",
                              "-np", "1"], use_env=False, read_cache=False) as pool:
        info = {m.name: m for m in pool.models()}
        assert set(info) == {"alpha", "broken", "beta"}
        assert info["beta"].status is ModelStatus.LOADED and info["beta"].source == "preset"
        assert info["alpha"].source == "models_dir" and "--ctx-size" in info["alpha"].args
        assert info["broken"].status is ModelStatus.FAILED and isinstance(info["broken"].failure, errors.LlamaProcError)
        assert chat(pool, "alpha")[0] == 200 and chat(pool, "bee")[0] == 200
        status, body = chat(pool, "broken")
        assert status == 500 and "broken" in body["error"]["message"]


def test_reloading_the_sources_adds_removes_and_swaps_without_failures(models, tmp_path):
    preset = tmp_path / "models.ini"
    head = "[*]\nctx-size = 256\nthreads = 1\ncache-ram = 0\nparallel = 2\n\n"
    preset.write_text(head + f"[a]\nmodel = {models['a']}\n\n[b]\nmodel = {models['b']}\n")
    with ModelPool.start(PoolConfig(models_preset=preset)) as pool:
        pool.load("b")
        preset.write_text(head + f"[b]\nmodel = {models['c']}\n\n[c]\nmodel = {models['c']}\n")
        with _Load(pool, "b", clients=2) as load:
            load.wait_served(2)
            status, listing = get(pool.url + "/models?reload=1")
            load.wait_served(2)  # and go on after the reload
        assert status == 200 and sorted(m["id"] for m in listing["data"]) == ["b", "c"]
        assert load.failures == [] and load.ok > 0
        assert get(pool.url + "/props?model=b")[1]["model_path"] == str(models["c"])  # swapped while serving
        preset.write_text(head + "[c]\nthis is not ini\n")
        with pytest.raises(errors.ConfigError):
            pool.reload_sources()
        assert sorted(m.name for m in pool.models()) == ["b", "c"]  # a broken edit changes nothing


def test_sleep_idle_seconds_unloads_the_model_through_the_pool(models, tmp_path):
    preset = tmp_path / "models.ini"
    preset.write_text(f"[a]\nmodel = {models['a']}\nctx-size = 256\nthreads = 1\nsleep-idle-seconds = 1\n")
    with ModelPool.start(PoolConfig(models_preset=preset)) as pool:
        assert chat(pool, "a")[0] == 200
        assert wait_for(lambda: statuses(pool)["a"] is ModelStatus.UNLOADED, timeout=6)
        assert wait_for(lambda: pool.reserved_bytes == 0)  # unloaded, not asleep: its room is freed
        assert chat(pool, "a")[0] == 200


@pytest.mark.in_process_only(reason="reads this process's decode gate counters")
def test_models_decoding_at_once_share_the_cpus_through_the_gate(models):
    from llamaproc._native import core

    cpus = core.decode_gate_stats()["cpus"]
    wide = dict(threads=cpus, extra_args=("--cache-ram", "0"))
    cfg = PoolConfig(models={"a": spec(models["a"], **wide), "b": spec(models["b"], **wide)})
    with ModelPool.start(cfg) as pool:
        pool.load("a")
        pool.load("b")
        before = core.decode_gate_stats()
        # long enough that the two overlap whatever the machine does meanwhile
        streams = [threading.Thread(target=lambda n=n: long_stream(pool, n, 200)) for n in ("a", "b")]
        for t in streams:
            t.start()
        for t in streams:
            t.join()
        after = core.decode_gate_stats()
        assert after["decodes"] - before["decodes"] >= 100
        if after["active"]:  # (Linux builds): models wider than the CPUs took turns
            assert after["waited"] > before["waited"]


def test_serve_from_args_runs_a_pool_without_a_model_and_a_server_with_one(models, tmp_path):
    folder = tmp_path / "dir"
    folder.mkdir()
    shutil.copy(models["a"], folder / "a.gguf")
    with serve_from_args(["--models-dir", str(folder), "--port", "0", "-c", "256", "-t", "1"], use_env=False,
                         read_cache=False) as pool:
        assert isinstance(pool, ModelPool) and chat(pool, "a")[0] == 200  # type: ignore[arg-type]
    with serve_from_args(["-m", str(models["a"]), "--port", "0", "-c", "256", "-t", "1"], use_env=False) as server:
        assert not isinstance(server, ModelPool)


@pytest.mark.parametrize("text, where", [
    ("[a]\nmodel = x.gguf\nthis is not ini\n", ":3:"),
    ("ctx-size = 5\n[a]\n", ":1:"),
    ("[a\nmodel = x\n", ":1:"),
])
def test_preset_syntax_errors_name_the_file_and_line(tmp_path, text, where):
    preset = tmp_path / "p.ini"
    preset.write_text(text)
    with pytest.raises(errors.ConfigError, match=rf"p\.ini{where}"):
        PoolConfig(models_preset=preset)


def test_an_unknown_preset_key_is_reported_at_its_line(models, tmp_path):
    preset = tmp_path / "p.ini"
    preset.write_text(f"[a]\nmodel = {models['a']}\nctx-size = 256\nnot-a-flag = 1\n")
    with pytest.raises(errors.ConfigError, match=r"p\.ini:4: unknown key 'not-a-flag'"):
        ModelPool.start(PoolConfig(models_preset=preset))


def test_configuration_errors_are_config_errors(models, tmp_path):
    with pytest.raises(errors.ConfigError, match="does not exist"):
        PoolConfig(models_dir=tmp_path / "missing")
    with pytest.raises(errors.ConfigError, match="conflicts"):
        ModelPool.start(PoolConfig(models={"a": spec(models["a"], aliases=("x",)),
                                           "b": spec(models["b"], aliases=("x",))}))
    with pytest.raises(errors.ConfigError, match="needs models"):
        PoolConfig()
    with pytest.raises(errors.ConfigError, match="PoolConfig"):
        ModelSpec(model_path=models["a"], extra_args=("--port", "1"))
    with pytest.raises(errors.ConfigError, match="--numa"):
        ModelSpec(model_path=models["a"], extra_args=("--numa", "distribute"))
    from llamaproc import LlamaServer
    with pytest.raises(errors.ConfigError, match="model pool"):
        LlamaServer.from_args(["--models-dir", str(tmp_path)], use_env=False)


def test_cli_serves_a_models_dir(models, tmp_path):
    folder = tmp_path / "dir"
    folder.mkdir()
    shutil.copy(models["a"], folder / "a.gguf")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llamaproc", "serve", "--models-dir", str(folder), "-c", "256",
                             "-t", "1", "--port", str(port), "--default-model", "a"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: _answers(url) or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, proc.communicate()[1]
        assert post(url + "/v1/chat/completions", CHAT)[0] == 200  # names no model: the default one
        assert [m["id"] for m in get(url + "/models")[1]["data"]] == ["a"]
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "serving a model pool at" in stderr and "its models (1): a" in stderr


def test_cli_router_serves_the_local_model_cache_offline(models, tmp_path):
    """llama-server's router also lists llama.cpp's model cache (Hugging Face hub layout);
    llamaproc serves those files as they are, and never downloads."""
    import os
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--someone--tiny-GGUF"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    shutil.copy(models["a"], repo / "snapshots" / commit / "tiny-Q4_1.gguf")
    port = free_port()
    env = {**os.environ, "LLAMA_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "llamaproc", "serve", "--router", "-c", "256", "-t", "1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: _answers(url) or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, proc.communicate()[1]
        listing = get(url + "/models")[1]["data"]
        assert [(m["id"], m["source"]) for m in listing] == [("someone/tiny-GGUF:Q4_1", "cache")]
        assert post(url + "/v1/chat/completions", {**CHAT, "model": "someone/tiny-GGUF:Q4_1"})[0] == 200
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr


def _answers(url: str) -> bool:
    try:
        return get(url + "/health", timeout=1)[0] == 200
    except OSError:
        return False


def test_hostile_bodies_on_the_router_endpoints_get_400_and_the_pool_serves_on(models):
    import http.client
    with ModelPool.start(PoolConfig(models={"a": spec(models["a"])})) as pool:
        for path in ("/models/load", "/models/unload", "/v1/chat/completions"):
            for raw in (b"not json", b"[1, 2]", b'{"model": 5}', b'{"model": "' + b"x" * 10000 + b'"}', b"\xff\xfe"):
                conn = http.client.HTTPConnection("127.0.0.1", pool.port, timeout=10)
                conn.request("POST", path, body=raw, headers={"Content-Type": "application/json"})
                res = conn.getresponse()
                res.read()
                conn.close()
                assert res.status in (400, 404), (path, raw[:20], res.status)
        assert chat(pool, "a")[0] == 200 and pool.health_check().ok


def test_with_starts_a_pool_made_with_its_constructor(models):
    pool = ModelPool(PoolConfig(models={"a": spec(models["a"])}))
    assert not pool.running
    with pool as entered:
        assert entered is pool and pool.running and chat(pool, "a")[0] == 200
    assert not pool.running
