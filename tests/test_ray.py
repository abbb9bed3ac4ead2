"""llamaproc on Ray Serve (issue 22): replicas that start llamaproc in-process, behind Serve's
HTTP proxy, autoscaled on llama-server's own load.

One real local Ray cluster for the module (4 logical CPUs on this 2-core machine, no dashboard;
each test sets short autoscaling delays and metric intervals), real llamaproc servers on
generated tiny models (SmolLM2 where answers must be real text or decoding must take time),
loopback only. Streams that must last without load use ``Fault.slow_tokens`` (every chunk later,
no CPU spent); load that must count uses SmolLM2 decoding on one thread."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import pytest

with warnings.catch_warnings():  # Ray Serve's own Pydantic models warn at import time
    warnings.simplefilter("ignore", DeprecationWarning)
    serve = pytest.importorskip("ray.serve")
    import ray

from conftest import free_port, wait_until
from http_client import get, post
from llamaproc import LlamaServer, ModelPool, ModelSpec, PoolConfig, RestartPolicy, ServerConfig, errors
from llamaproc.testing import Fault, make_tiny_model
import llamaproc.ray as lray
from llamaproc.ray import ScaleOptions

CHAT = {"messages": [{"role": "user", "content": "Say hello."}], "temperature": 0}
VOLATILE = ("created", "id", "timings", "system_fingerprint")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster and Serve's HTTP proxy on a free loopback port; yields the port."""
    ray.init(num_cpus=4, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False,
             configure_logging=False)
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ray-models")
    return {"a": make_tiny_model(folder / "a.gguf", seed=1), "b": make_tiny_model(folder / "b.gguf", seed=2)}


def tiny(model: Path, **changes) -> ServerConfig:
    return ServerConfig(**{"model_path": model, "context_size": 512, "threads": 1, "parallel": 2, **changes})


def deploy(cluster_port: int, config, options: ScaleOptions, name: str) -> lray.ServeApp:
    return lray.run(config, options, name=name, route_prefix=f"/{name}", port=cluster_port)


def stream(url: str, body: dict, *, timeout: float = 120.0, events: list | None = None,
           headers: dict | None = None) -> dict:
    """A streamed completion, read raw: its events (JSON, or the text '[DONE]'; appended to
    ``events`` as they come when given) and how it ended."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    events = [] if events is None else events
    try:
        conn.request("POST", parts.path, body=json.dumps({**body, "stream": True}),
                     headers={"Content-Type": "application/json", **(headers or {})})
        res = conn.getresponse()
        if res.status != 200:
            return {"status": res.status, "events": [res.read()], "done": False, "error": None}
        for raw in res:
            line = raw.decode("utf-8").strip()
            if line.startswith("data:"):
                payload = line[5:].strip()
                events.append(payload if payload == "[DONE]" else json.loads(payload))
        return {"status": 200, "events": events, "done": events[-1:] == ["[DONE]"], "error": None}
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return {"status": 200, "events": events, "done": False, "error": exc}
    finally:
        conn.close()


def content_chunks(result: dict) -> int:
    return sum(1 for e in result["events"] if isinstance(e, dict) and e["choices"]
               and e["choices"][0]["delta"].get("content"))


def stable(body: dict) -> dict:
    """A response without what differs between two runs of the same request."""
    return {k: v for k, v in body.items() if k not in VOLATILE}


class Load:
    """``workers`` threads sending streams of ``tokens`` tokens until stopped; every result kept."""

    def __init__(self, url: str, workers: int, tokens: int, model: str | None = None) -> None:
        self.results: list[dict] = []
        self._stop = threading.Event()
        body = {**CHAT, "max_tokens": tokens, "ignore_eos": True, **({"model": model} if model else {})}
        self._threads = [threading.Thread(target=self._run, args=(url, body), daemon=True) for _ in range(workers)]
        for t in self._threads:
            t.start()

    def _run(self, url: str, body: dict) -> None:
        while not self._stop.is_set():
            self.results.append(stream(url, body))

    def stop(self) -> list[dict]:
        self._stop.set()
        for t in self._threads:
            t.join(120)
        return self.results


def failures(results: list[dict], tokens: int) -> list[dict]:
    return [r for r in results if r["status"] != 200 or not r["done"] or content_chunks(r) != tokens]


# -- no cluster needed ------------------------------------------------------------------------


def test_missing_ray_is_a_dependency_error_naming_the_extra(monkeypatch, models):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` finds without the extra
    monkeypatch.setitem(sys.modules, "ray.serve", None)
    with pytest.raises(errors.DependencyMissingError, match=r'pip install "llamaproc\[ray\]"') as info:
        lray.build_app(tiny(models["a"]))
    assert info.value.install_hint == 'pip install "llamaproc[ray]"'


@pytest.mark.parametrize("bad, match", [
    ({"min_replicas": 3, "max_replicas": 2}, "min_replicas <= initial_replicas <= max_replicas"),
    ({"max_replicas": 0}, "max_replicas must be >= 1"),
    ({"target_load": 0}, "target_load must be a number > 0"),
    ({"upscale_delay_s": -1}, "upscale_delay_s must be a number >= 0"),
    ({"faults": ["slow_tokens"]}, "faults must be a sequence of llamaproc.testing.Fault"),
    ({"scale_on": "cpu"}, "scale_on must be one of slots, requests"),
])
def test_bad_options_are_config_errors(bad, match):
    with pytest.raises(errors.ConfigError, match=match):
        ScaleOptions(**bad)


def test_a_pool_reading_a_models_folder_is_refused(models):
    with pytest.raises(errors.ConfigError, match="models_dir is not supported"):
        lray.build_app(PoolConfig(models_dir=str(models["a"].parent)))


def test_serve_config_file_is_one_rays_cli_accepts_and_builds_the_same_app(tmp_path, models):
    yaml = pytest.importorskip("yaml")
    from ray.serve.schema import ServeDeploySchema

    config = tiny(models["a"], restart=RestartPolicy(max_restarts=2))
    options = ScaleOptions(min_replicas=1, max_replicas=3, faults=(Fault.slow_tokens(0.01),))
    path = lray.write_serve_config(tmp_path / "serve.yaml", config, options, name="chat", port=8123)
    loaded = yaml.safe_load(path.read_text())
    schema = ServeDeploySchema.model_validate(loaded)  # what `serve run` / `serve deploy` parse
    assert schema.applications[0].import_path == "llamaproc.ray:app_builder"
    assert loaded["http_options"] == {"host": "127.0.0.1", "port": 8123}
    args = loaded["applications"][0]["args"]
    app = lray.app_builder(args)
    assert type(app).__name__ == "Application"
    spec = app._bound_deployment.init_args[0]  # what each replica starts
    assert spec.config == config and spec.faults == options.faults
    with pytest.raises(errors.ConfigError, match="need 'server', 'pool' or 'flags'"):
        lray.app_builder({"scale": {}})


def _context(busy: list[float], waiting: list[float], slots: list[float], *, queued: float = 0.0,
             low: int = 1, high: int = 4):
    """A Serve AutoscalingContext with these per-replica averages, as the controller builds it."""
    from ray.serve._private.common import DeploymentID, ReplicaID
    from ray.serve.config import AutoscalingContext

    from llamaproc.ray.autoscaling import REQUESTS_WAITING, SLOTS_BUSY, SLOTS_TOTAL

    dep = DeploymentID(name="llamaproc", app_name="t")
    ids = [ReplicaID(unique_id=f"r{i}", deployment_id=dep) for i in range(len(slots))]
    metrics = {key: dict(zip(ids, values)) for key, values in
               ((SLOTS_BUSY, busy), (REQUESTS_WAITING, waiting), (SLOTS_TOTAL, slots))}
    return AutoscalingContext(
        deployment_id=dep, deployment_name="llamaproc", app_name="t", current_num_replicas=len(slots),
        target_num_replicas=len(slots), running_replicas=ids, total_num_requests=0.0, total_queued_requests=queued,
        aggregated_metrics=metrics, raw_metrics=None, capacity_adjusted_min_replicas=low,
        capacity_adjusted_max_replicas=high, policy_state={}, last_scale_up_time=None, last_scale_down_time=None,
        current_time=None, config=None)


@pytest.mark.parametrize("busy, waiting, slots, queued, target, replicas", [
    ([2], [3], [2], 0, 1.0, 3),          # 5 requests on 2 slots: 3 replicas of 2 slots
    ([2, 2], [0, 0], [2, 2], 0, 1.0, 2),  # full, nobody waiting: keep 2
    ([1, 1], [0, 0], [2, 2], 0, 1.0, 1),  # half full: one replica takes it all
    ([0.4], [0], [2], 0, 1.0, 1),         # a trickle keeps one (min_replicas)
    ([2], [0], [2], 3, 1.0, 3),           # requests queued in Serve's routers count too
    ([2], [1], [4], 0, 0.5, 2),           # target_load 0.5: 3 of 4 slots is 1.5 replicas' worth
    ([4, 4], [20, 20], [4, 4], 0, 1.0, 4),  # capped at max_replicas
])
def test_the_slot_policy_asks_for_replicas_by_busy_slots_and_waiting_requests(busy, waiting, slots, queued, target,
                                                                              replicas):
    from llamaproc.ray import SlotLoadPolicy

    assert SlotLoadPolicy(target)(_context(busy, waiting, slots, queued=queued)) == (replicas, {})


def test_scale_on_requests_is_serves_own_policy_at_a_target_of_the_slots(models):
    def autoscaling(options: ScaleOptions) -> dict:
        return lray.build_app(tiny(models["a"]), options)._bound_deployment._deployment_config.autoscaling_config

    slots = autoscaling(ScaleOptions(max_replicas=3))
    assert slots.policy.policy_function.endswith("SlotLoadPolicy") and slots.policy.policy_kwargs == {
        "target_load": 1.0}
    requests = autoscaling(ScaleOptions(max_replicas=3, scale_on="requests", target_load=1.5))
    assert requests.policy.is_default_policy_function() and requests.target_ongoing_requests == 3.0
    fixed = lray.build_app(tiny(models["a"]), ScaleOptions(min_replicas=2, max_replicas=2))._bound_deployment
    assert fixed._deployment_config.autoscaling_config is None and fixed.num_replicas == 2


# -- on the cluster ---------------------------------------------------------------------------


@pytest.mark.smollm2
def test_same_answers_as_a_plain_server_through_the_openai_sdk(cluster, smollm2_model):
    openai = pytest.importorskip("openai")
    config = ServerConfig(model_path=smollm2_model, context_size=2048, threads=1, parallel=2, api_key="k")
    key = {"Authorization": "Bearer k"}  # Serve's proxy passes it through; each replica checks it
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                               "parameters": {"type": "object", "required": ["city"],
                                                              "properties": {"city": {"type": "string"}}}}}]
    with deploy(cluster, config, ScaleOptions(), "same") as app, LlamaServer.start(config) as plain:
        clients = [openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0) for url in (app.url, plain.url)]
        chats = [c.chat.completions.create(model="m", max_tokens=24, **CHAT) for c in clients]
        assert chats[0].choices[0].message.content == chats[1].choices[0].message.content
        assert chats[0].choices[0].message.content
        streamed = ["".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
            model="m", max_tokens=24, stream=True, **CHAT) if ch.choices) for c in clients]
        assert streamed[0] == streamed[1] == chats[0].choices[0].message.content
        asked = [c.chat.completions.create(model="m", max_tokens=48, tools=tools, temperature=0, messages=[
            {"role": "user", "content": "What is the weather in Paris?"}]) for c in clients]
        assert asked[0].choices[0].message.model_dump() == asked[1].choices[0].message.model_dump()
        # byte for byte, but for ids and timings: a whole response, an SSE stream, an error body
        raw = [post(url + "/v1/chat/completions", {**CHAT, "max_tokens": 8}, headers=key)
               for url in (app.url, plain.url)]
        assert raw[0][0] == raw[1][0] == 200 and stable(raw[0][1]) == stable(raw[1][1])
        events = [stream(url + "/v1/chat/completions", {**CHAT, "max_tokens": 8}, headers=key)
                  for url in (app.url, plain.url)]
        assert events[0]["done"] and events[1]["done"]
        assert [stable(e) if isinstance(e, dict) else e for e in events[0]["events"]] == \
               [stable(e) if isinstance(e, dict) else e for e in events[1]["events"]]
        bad = [post(url + "/v1/chat/completions", {"messages": "not a list"}, headers=key)
               for url in (app.url, plain.url)]
        assert bad[0] == bad[1] and bad[0][0] == 400
        keyless = [post(url + "/v1/chat/completions", CHAT) for url in (app.url, plain.url)]
        assert keyless[0] == keyless[1] and keyless[0][0] == 401
        assert get(app.url + "/health") == get(plain.url + "/health") == (200, {"status": "ok"})
        assert get(app.url + "/props", headers=key)[1]["default_generation_settings"] == \
               get(plain.url + "/props", headers=key)[1]["default_generation_settings"]


def test_a_bad_model_fails_the_deploy_with_llamaprocs_typed_error(cluster, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF but not really a model" * 10)
    with pytest.raises(errors.ModelLoadError, match="deploying 'badmodel' on Ray Serve failed") as info:
        deploy(cluster, tiny(bad), ScaleOptions(), "badmodel")
    assert str(bad) in str(info.value)
    assert any("gguf" in line for line in info.value.log_tail)  # the replica's native log came along
    assert "badmodel" not in serve.status().applications  # nothing left behind


def test_a_public_proxy_without_an_api_key_is_refused(models):
    with pytest.raises(errors.ConfigError, match="refusing to listen on 0.0.0.0 without an API key"):
        lray.run(tiny(models["a"]), host="0.0.0.0")


def test_more_replicas_than_the_cluster_can_place_is_refused_at_once(cluster, models):
    with pytest.raises(errors.ResourceError, match="the 5 replicas to start need 5 CPUs .* has 4 CPUs"):
        deploy(cluster, tiny(models["a"]), ScaleOptions(min_replicas=5, max_replicas=5), "toobig")
    assert "toobig" not in serve.status().applications


@pytest.mark.smollm2
def test_load_scales_1_to_2_and_idleness_back_to_1_without_losing_a_request(cluster, smollm2_model):
    """Replicas follow busy slots + waiting requests (real decoding: SmolLM2 on one thread); the
    replica removed while streams run lets them finish (every stream ends with [DONE] and all
    its tokens)."""
    options = ScaleOptions(min_replicas=1, max_replicas=2, upscale_delay_s=0.5, downscale_delay_s=2.0,
                           look_back_period_s=1.0, metrics_interval_s=0.25, health_check_period_s=2.0)
    config = ServerConfig(model_path=smollm2_model, context_size=2048, threads=1, parallel=2)
    with deploy(cluster, config, options, "scale") as app:
        url = app.url + "/v1/chat/completions"
        load = Load(url, workers=5, tokens=40)  # 5 clients on 2 slots: requests wait for a slot
        try:
            up = app.wait_for_replicas(2, timeout=90)
        finally:
            results = load.stop()
        assert up.deployments["llamaproc"].running == 2
        assert len(results) >= 5 and not failures(results, 40)
        # two long streams, one per replica; load for one replica: the other drains its stream
        long_streams: list[dict] = []
        threads = []
        for _ in range(2):
            threads.append(threading.Thread(target=lambda: long_streams.append(
                stream(url, {**CHAT, "max_tokens": 300, "ignore_eos": True}))))
            threads[-1].start()
            time.sleep(0.3)
        wait_until(lambda: sum(x.slots_busy for x in app.status().deployments["llamaproc"].loads) == 2, 10, 0.1)
        busy = app.status().deployments["llamaproc"].loads
        wait_until(lambda: app.status().deployments["llamaproc"].running < 2, 90, 0.1)  # one is draining
        still_running = [t.is_alive() for t in threads]
        down = app.wait_for_replicas(1, timeout=90)
        for t in threads:
            t.join(180)
        assert all(still_running), "the downscale came after the streams ended: nothing was drained"
        assert len(long_streams) == 2 and not failures(long_streams, 300)
        assert len(busy) == 2 and all(x.slots_busy == 1 for x in busy), busy  # each replica had one
        assert down.deployments["llamaproc"].running == 1


def test_a_replica_killed_mid_stream_is_replaced_and_later_requests_succeed(cluster, models):
    options = ScaleOptions(metrics_interval_s=0.25, health_check_period_s=1.0, health_check_timeout_s=5.0,
                           faults=(Fault.slow_tokens(0.05),))
    with deploy(cluster, tiny(models["a"]), options, "killed") as app:
        url = app.url + "/v1/chat/completions"
        wait_until(lambda: len(app.status().deployments["llamaproc"].loads) == 1, 20, 0.1)
        victim = app.status().deployments["llamaproc"].loads[0]
        result: list[dict] = []
        seen: list = []
        t = threading.Thread(target=lambda: result.append(
            stream(url, {**CHAT, "max_tokens": 200, "ignore_eos": True}, events=seen)))
        t.start()
        wait_until(lambda: len(seen) >= 3, 20)  # mid-stream
        os.kill(victim.pid, signal.SIGKILL)  # as a native abort() or the OOM killer would
        t.join(60)
        assert not result[0]["done"]  # that stream is lost with its process: it says so
        wait_until(lambda: [x.pid for x in app.status().deployments["llamaproc"].loads] not in ([], [victim.pid]),
                   60, 0.25)
        app.wait_for_replicas(1, timeout=60)
        after = [stream(url, {**CHAT, "max_tokens": 5, "ignore_eos": True}) for _ in range(3)]
        assert not failures(after, 5)


def test_an_isolated_replica_recovers_a_native_abort_in_place(cluster, models):
    config = tiny(models["a"], isolation="process", restart=RestartPolicy(backoff_s=(0.05, 0.5)))
    with deploy(cluster, config, ScaleOptions(metrics_interval_s=0.25, health_check_period_s=1.0), "isolated") as app:
        url = app.url + "/v1/chat/completions"
        wait_until(lambda: len(app.status().deployments["llamaproc"].loads) == 1, 20, 0.1)
        before = app.status().deployments["llamaproc"].loads[0]
        handle = serve.get_deployment_handle("llamaproc", "isolated")
        assert handle.load.remote().result().replica == before.replica
        # the fault a test arms through the replica's own server: a real abort() in its child
        handle.check_health.remote().result()
        _abort_child(before.pid)
        wait_until(lambda: post(url, {**CHAT, "max_tokens": 3})[0] == 200, 60, 0.25)
        after = handle.load.remote().result()
        assert (after.replica, after.pid) == (before.replica, before.pid)  # the same replica process
        assert after.requests  # its server counted requests again after the restart
        handle.check_health.remote().result()  # and Serve finds it healthy


def _abort_child(replica_pid: int) -> None:
    """SIGABRT to the llama.cpp child of an isolated replica (what ggml's abort() does to it)."""
    children = []
    for task in Path(f"/proc/{replica_pid}/task").iterdir():  # spawned by any of its threads
        try:
            children += (task / "children").read_text().split()
        except FileNotFoundError:  # that thread ended meanwhile
            pass
    pids = [int(p) for p in children if b"llamaproc" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(pids) == 1, children
    os.kill(pids[0], signal.SIGABRT)


@pytest.mark.smollm2
def test_two_models_route_by_name_and_scale_separately(cluster, models, smollm2_model):
    """A chat model (SmolLM2, real decoding) and an embedding model, each a deployment: requests
    go by their "model", load on one scales that one only."""
    pool = PoolConfig(models={"a": ModelSpec(model_path=smollm2_model, context_size=2048, threads=1, parallel=2),
                              "e": ModelSpec(model_path=models["b"], context_size=512, threads=1, parallel=2,
                                             embeddings=True, extra_args=("--pooling", "mean"), aliases=("emb",))})
    options = ScaleOptions(min_replicas=1, max_replicas=2, upscale_delay_s=0.5, downscale_delay_s=30.0,
                           look_back_period_s=1.0, metrics_interval_s=0.25)
    plain_pool = PoolConfig(models={"a": ModelSpec(model_path=models["a"], context_size=512, threads=1, parallel=2)})
    with deploy(cluster, pool, options, "two") as app, ModelPool.start(plain_pool) as plain, \
            LlamaServer.start(tiny(models["b"], embeddings=True, extra_args=("--pooling", "mean"))) as embedder:
        chat = post(app.url + "/v1/chat/completions", {**CHAT, "model": "a", "max_tokens": 3})
        assert chat[0] == 200 and chat[1]["model"] == "a"
        openai = pytest.importorskip("openai")
        vectors = [openai.OpenAI(base_url=url + "/v1", api_key="-", max_retries=0).embeddings.create(
            model="emb", input=["hello", "a lighthouse"]) for url in (app.url, embedder.url)]
        assert [d.embedding for d in vectors[0].data] == [d.embedding for d in vectors[1].data]
        assert len(vectors[0].data) == 2 and len(vectors[0].data[0].embedding) == 64
        names = [m["id"] for m in get(app.url + "/v1/models")[1]["data"]]
        assert names == ["a", "e"]
        for body in ({**CHAT, "model": "nope"}, CHAT):  # unknown, and no model: llama-server's router bodies
            assert post(app.url + "/v1/chat/completions", body) == post(plain.url + "/v1/chat/completions", body)
        load = Load(app.url + "/v1/chat/completions", workers=5, tokens=25, model="a")
        try:
            now = app.wait_for_replicas(2, deployment="model-a", timeout=60)
        finally:
            results = load.stop()
        assert not failures(results, 25)
        assert now.deployments["model-e"].running == 1  # no load on it: it did not scale
        placed = {x.deployment: x.model for x in now.deployments["model-a"].loads + now.deployments["model-e"].loads}
        assert placed == {"model-a": "a", "model-e": "e"}


@pytest.mark.slow
def test_cli_serve_ray_joins_the_cluster_and_serves_until_sigint(cluster, models):
    address = ray.get_runtime_context().gcs_address
    proc = subprocess.Popen([sys.executable, "-m", "llamaproc", "serve", "--ray", "--ray-address", address,
                             "--ray-app", "cli", str(models["a"]), "-t", "1", "-c", "256", "-np", "1",
                             "--port", str(cluster)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("serving Ray Serve application 'cli'" in line for line in lines) or
                   proc.poll() is not None, 120, 0.1)
        assert proc.poll() is None, "".join(lines)
        url = f"http://127.0.0.1:{cluster}"
        # the proxy learns the new route a moment after the app runs: 404 until then
        wait_until(lambda: post(url + "/v1/chat/completions", {**CHAT, "max_tokens": 3})[0] == 200, 30, 0.25)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(120)
        reader.join(10)
        proc.stdout.close()
    assert proc.returncode == 0, "".join(lines)
    assert "cli" not in serve.status().applications  # deleted on the way out
