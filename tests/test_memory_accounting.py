"""Memory limits and pool budgets, judged before a load by llama.cpp's dry-run estimate or by an
earlier load's measurement (llamaproc.memory), on every CPU path: weights repacked for the CPU
(Q4_0 here; AMX on Xeons), not repacked (Q4_1, F32), mapped or read.

Each configuration is estimated with no measurement on record, loaded, and compared with what
the load holds (llama.cpp's own accounting of its buffers). The portable build runs
``test_every_cpu_variant_estimates_what_it_holds`` once per instruction-set level.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llamaproc import (LlamaServer, ModelPool, ModelSpec, PoolConfig, ServerConfig, errors, estimate_memory,
                       quantize)
from llamaproc.memory import forget_measurements, measurements_file, set_measurements_file
from llamaproc.testing import make_tiny_model

from conftest import assert_one_model_live_at_a_time, rss_bytes
from http_client import post

MiB = 2**20
#: The estimate's tolerance against what a load holds (the issue's target; measured here: ~1 %).
TOLERANCE = 0.15


@pytest.fixture(autouse=True)
def _no_measurements():
    """Each test starts with nothing measured: the estimate alone is on trial."""
    forget_measurements()
    yield
    forget_measurements()


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny model as generated (F32) and quantized to Q4_0, whose matrices the CPU backend
    repacks on AVX2/AVX-512 (a second copy beside the mapped file)."""
    folder = tmp_path_factory.mktemp("memory-models")
    f32 = make_tiny_model(folder / "tiny-f32.gguf", n_embd=256, n_ff=512, n_layers=4, n_vocab=2048)
    q4_0 = quantize(f32, folder / "tiny-q4_0.gguf", "Q4_0").destination
    return {"f32": f32, "q4_0": q4_0}


@pytest.fixture(scope="module")
def smollm2_q4_0(smollm2_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 requantized to Q4_0 (repacked on AVX2/AVX-512; its Q4_1 original is not)."""
    out = tmp_path_factory.mktemp("memory-smollm2") / "smollm2-q4_0.gguf"
    return quantize(smollm2_model, out, "Q4_0", allow_requantize=True).destination


def held_bytes(server: LlamaServer) -> int:
    m = server.metrics()
    return m.model_bytes + m.kv_cache_bytes + m.compute_bytes


def assert_estimate_close(config: ServerConfig) -> int:
    """Estimates ``config`` (nothing measured), loads it, and checks the estimate against what
    the load holds; returns the bytes held."""
    est = estimate_memory(config)
    assert est.source == "estimate" and est.measured_bytes is None
    with LlamaServer.start(config) as server:
        held = held_bytes(server)
    assert abs(est.estimated_bytes - held) <= TOLERANCE * held, (
        f"estimate {est.estimated_bytes / MiB:.1f} MiB vs held {held / MiB:.1f} MiB for {config.to_argv()}")
    return held


@pytest.mark.parametrize("context_size", [512, 2048])
@pytest.mark.parametrize("kind", ["f32", "q4_0"])
def test_the_estimate_is_close_to_what_a_tiny_model_holds(tiny_models, kind, context_size):
    assert_estimate_close(ServerConfig(model_path=tiny_models[kind], threads=1, parallel=2,
                                       context_size=context_size))


@pytest.mark.parametrize("load", [(), ("--load-mode", "none"), ("--no-repack",)], ids=["mapped", "read", "no-repack"])
def test_the_estimate_holds_however_the_weights_are_loaded(tiny_models, load):
    assert_estimate_close(ServerConfig(model_path=tiny_models["q4_0"], threads=1, parallel=2, context_size=512,
                                       extra_args=load))


@pytest.mark.smollm2
@pytest.mark.parametrize("context_size,parallel", [(1024, 1), (4096, 4)])
@pytest.mark.parametrize("which", ["q4_1", "q4_0"])
def test_the_estimate_is_close_to_what_smollm2_holds(smollm2_model, smollm2_q4_0, which, context_size, parallel):
    """The compute buffer is sized for the output rows the server reserves (one per slot), not a
    whole batch of logits (~96 MiB for SmolLM2's 49k vocabulary), and repacked weights count."""
    path = smollm2_model if which == "q4_1" else smollm2_q4_0
    assert_estimate_close(ServerConfig(model_path=path, threads=1, parallel=parallel, context_size=context_size))


@pytest.mark.smollm2
def test_embeddings_reserve_a_batch_of_outputs_and_the_estimate_follows(smollm2_model):
    assert_estimate_close(ServerConfig(model_path=smollm2_model, threads=1, parallel=2, context_size=1024,
                                       embeddings=True, extra_args=("--pooling", "mean")))


@pytest.mark.smollm2
@pytest.mark.parametrize("which", ["q4_1", "q4_0"])
def test_a_limit_of_what_the_model_holds_plus_32_mib_admits_it_on_the_estimate_alone(smollm2_model, smollm2_q4_0,
                                                                                      which):
    path = smollm2_model if which == "q4_1" else smollm2_q4_0
    base = dict(model_path=path, threads=1, parallel=2, context_size=2048)
    with LlamaServer.start(ServerConfig(**base)) as probe:
        held = held_bytes(probe)
    forget_measurements()  # judged by the estimate, as a first load in a new process is
    limit = held + 32 * MiB
    with LlamaServer.start(ServerConfig(**base, memory_limit=limit)) as server:
        m = server.metrics()
        assert m.memory_expected_source == "estimate"
        assert m.memory_expected_bytes is not None and abs(m.memory_expected_bytes - held) <= TOLERANCE * held
        assert m.memory_bytes <= limit  # the prompt cache got what the limit leaves
        assert server.direct.completions.create(prompt="Hi", max_tokens=2, ignore_eos=True)["usage"][
            "completion_tokens"] == 2
    # restarted, the same file and flags are judged by what the first load held
    with LlamaServer.start(ServerConfig(**base, memory_limit=limit)) as server:
        m = server.metrics()
        assert m.memory_expected_source == "measured" and m.memory_expected_bytes == held


def test_a_refusal_says_whether_it_was_estimated_or_measured(tiny_models):
    base = dict(model_path=tiny_models["q4_0"], threads=1, parallel=2, context_size=512)
    with pytest.raises(errors.ResourceError, match="estimated by llama.cpp's dry run: weights .* compute"):
        LlamaServer.start(ServerConfig(**base, memory_limit=MiB))
    with LlamaServer.start(ServerConfig(**base)) as server:
        held = held_bytes(server)
    assert estimate_memory(ServerConfig(**base)).measured_bytes == held
    with pytest.raises(errors.ResourceError, match="measured when this file was last loaded with these flags"):
        LlamaServer.start(ServerConfig(**base, memory_limit=held - MiB))


def test_a_measurement_belongs_to_one_file_and_one_configuration(tiny_models, tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(tiny_models["q4_0"].read_bytes())
    cfg = ServerConfig(model_path=path, threads=1, parallel=2, context_size=512)
    with LlamaServer.start(cfg):
        pass
    assert estimate_memory(cfg).source == "measured"
    # other memory-relevant flags: not measured
    assert estimate_memory(ServerConfig(model_path=path, threads=1, parallel=2, context_size=1024)).source == "estimate"
    assert estimate_memory(ServerConfig(model_path=path, threads=1, parallel=3, context_size=512)).source == "estimate"
    # flags that do not change what is held share the measurement
    assert estimate_memory(ServerConfig(model_path=path, threads=2, parallel=2, context_size=512)).source == "measured"
    # the file changed (a new quantization written over it): not measured
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert estimate_memory(cfg).source == "estimate"


def test_measurements_persist_in_a_file_for_the_next_process(tiny_models, tmp_path):
    store = tmp_path / "measured.txt"
    code = textwrap.dedent("""
        import json, sys
        from llamaproc import LlamaServer, ServerConfig, estimate_memory
        cfg = ServerConfig(model_path=sys.argv[1], threads=1, parallel=2, context_size=512)
        before = estimate_memory(cfg).source
        held = None
        if sys.argv[2] == "load":
            with LlamaServer.start(cfg) as s:
                m = s.metrics()
                held = m.model_bytes + m.kv_cache_bytes + m.compute_bytes
        print(json.dumps({"before": before, "held": held, "after": estimate_memory(cfg).measured_bytes}))
    """)
    env = {**os.environ, "LLAMAPROC_MEMORY_MEASUREMENTS": str(store)}

    def run(action: str) -> dict:
        r = subprocess.run([sys.executable, "-c", code, str(tiny_models["q4_0"]), action], capture_output=True,
                           text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout.strip().splitlines()[-1])

    first = run("load")
    assert first["before"] == "estimate" and first["after"] == first["held"]
    assert store.is_file() and len(store.read_text().splitlines()) == 1
    second = run("look")
    assert second == {"before": "measured", "held": None, "after": first["held"]}


def test_the_measurements_file_is_this_process_only_in_the_suite():
    assert measurements_file() is None  # conftest: LLAMAPROC_MEMORY_MEASUREMENTS=""


def test_an_unwritable_measurements_file_is_ignored(tiny_models, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    set_measurements_file(blocker / "measured.txt")
    try:
        cfg = ServerConfig(model_path=tiny_models["f32"], threads=1, parallel=1, context_size=256)
        with LlamaServer.start(cfg):
            pass
        assert estimate_memory(cfg).source == "measured"  # kept in the process
    finally:
        set_measurements_file(None)


# -- pools ---------------------------------------------------------------------------------------

def pool_spec(path: Path, **changes) -> ModelSpec:
    fields = dict(model_path=path, threads=1, parallel=1, context_size=512, extra_args=("--cache-ram", "0"))
    fields.update(changes)
    return ModelSpec(**fields)


CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


def _budget_never_holds_two_never_refuses_one(path: Path, **changes) -> None:
    spec = pool_spec(path, **changes)
    with LlamaServer.start(ServerConfig(model_path=path, threads=1, parallel=spec.parallel,
                                        context_size=spec.context_size, extra_args=spec.extra_args)) as probe:
        held = held_bytes(probe)
    forget_measurements()  # the first load is admitted on the estimate
    budget = int(held * 1.5)
    with ModelPool.start(PoolConfig(models={"x": spec, "y": spec}, memory_budget=budget, max_loaded=0)) as pool:
        assert not pool.model("x").memory_measured
        base = rss_bytes()
        peak_alive, peak_reserved, peak_rss = 0, 0, 0
        for i, name in enumerate("xyxy"):
            status, body = post(pool.url + "/v1/chat/completions", {**CHAT, "model": name})
            assert status == 200, body
            if i == 0:  # x's load measured: y, on the same file and flags, is judged by that
                assert pool.model("y").memory_measured and pool.model("y").memory_estimate == held
            peak_alive = max(peak_alive, pool.instances_alive)
            peak_reserved = max(peak_reserved, pool.reserved_bytes)
            peak_rss = max(peak_rss, rss_bytes())
        assert peak_alive == 1 and peak_reserved <= budget
        assert peak_rss <= base + budget + 64 * MiB
        # the second model on the same file was judged by what the first really held
        assert pool.model("y").memory_measured and pool.model("y").memory_estimate == held
        assert_one_model_live_at_a_time(pool.events())


def test_a_budget_of_one_and_a_half_models_never_holds_two_and_never_refuses_one(tiny_models):
    _budget_never_holds_two_never_refuses_one(tiny_models["q4_0"])


@pytest.mark.smollm2
@pytest.mark.parametrize("which", ["q4_1", "q4_0"])
def test_a_budget_of_one_and_a_half_smollm2_never_holds_two_and_never_refuses_one(smollm2_model, smollm2_q4_0,
                                                                                   which):
    _budget_never_holds_two_never_refuses_one(smollm2_model if which == "q4_1" else smollm2_q4_0,
                                              context_size=1024)


def test_a_model_over_the_budget_is_a_503_and_a_resource_error(tiny_models):
    spec = pool_spec(tiny_models["q4_0"])
    need = estimate_memory(spec).expected_bytes
    with ModelPool.start(PoolConfig(models={"big": spec}, memory_budget=need // 2)) as pool:
        with pytest.raises(errors.ResourceError, match="memory budget"):
            pool.load("big")
        status, body = post(pool.url + "/v1/chat/completions", {**CHAT, "model": "big"})
        assert status == 503, body
        error = body["error"]
        assert error["code"] == 503 and error["type"] == "unavailable_error"
        assert "memory budget" in error["message"] and "estimated by llama.cpp's dry run" in error["message"]
        assert pool.instances_alive == 0 and pool.reserved_bytes == 0


def test_a_reservation_shrinks_to_what_the_load_holds(tiny_models):
    """A pool reserves the estimate while a model loads and what it holds once loaded."""
    spec = pool_spec(tiny_models["f32"])
    with ModelPool.start(PoolConfig(models={"m": spec}, memory_budget=1 << 30)) as pool:
        pool.load("m")
        info = pool.model("m")
        assert info.memory_measured
        assert pool.reserved_bytes == info.memory_estimate == info.memory_bytes


# -- every CPU variant (portable build) ----------------------------------------------------------

VARIANT_PROBE = """
    import json, sys
    from llamaproc import LlamaServer, ServerConfig, estimate_memory
    from llamaproc._native import core
    out = {"variant": (core.system_info()["cpu_variant"] or {}).get("name"), "rows": []}
    for path in sys.argv[1:]:
        for ctx in (512, 2048):
            cfg = ServerConfig(model_path=path, threads=1, parallel=2, context_size=ctx)
            est = estimate_memory(cfg)
            with LlamaServer.start(cfg) as s:
                m = s.metrics()
            out["rows"].append({"model": path, "ctx": ctx, "estimate": est.estimated_bytes,
                                "held": m.model_bytes + m.kv_cache_bytes + m.compute_bytes,
                                "weights_held": m.model_bytes})
    print(json.dumps(out))
"""


def _variants_to_try() -> list[str]:
    """The repack paths this CPU can run: AMX (where the CPU has it), AVX-512 without AMX,
    AVX2, and plain x86-64 (no repack)."""
    from llamaproc._native import core

    info = core.system_info()["cpu_variant"]
    if info is None:
        return []
    runnable = {name for name, score in info["available"].items() if score > 0}
    wanted = ["sapphirerapids", "zen4", "icelake", "skylakex", "haswell", "x64"]
    picked = [v for v in wanted if v in runnable]
    # one AVX-512 level without AMX is enough
    avx512 = [v for v in picked if v in ("zen4", "icelake", "skylakex")]
    return [v for v in picked if v not in avx512[1:]]


@pytest.mark.parametrize("variant", _variants_to_try() or [None])
def test_every_cpu_variant_estimates_what_it_holds(tiny_models, variant, request):
    if variant is None:
        pytest.skip("a native build: one CPU variant, covered by the tests above")
    models = [str(tiny_models["q4_0"]), str(tiny_models["f32"])]
    env = {**os.environ, "LLAMAPROC_CPU_VARIANT": variant}
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(VARIANT_PROBE), *models], capture_output=True,
                       text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["variant"] == variant
    for row in out["rows"]:
        assert abs(row["estimate"] - row["held"]) <= TOLERANCE * row["held"], row


# Models that load at once, each with llama.cpp's dry-run fit of context and layers to memory
# (on whenever context_size is 0, and always with a GPU), in a child process: before
# patches/0008 the fits swapped the process's log callback for one holding a pointer into the
# fitting thread's stack, and overlapping fits left a dead one installed, so the next log line
# of any thread crashed the host (SIGSEGV within a few rounds).
CONCURRENT_FITS = """
import sys
from llamaproc import LlamaServer, ModelPool, ModelSpec, PoolConfig, ServerConfig
path = sys.argv[1]
for _ in range(10):
    models = {f"m{i}": ModelSpec(model_path=path, context_size=0, parallel=1, threads=1, load_on_startup=True)
              for i in range(4)}
    with ModelPool.start(PoolConfig(models=models)) as pool:
        assert len(pool.models()) == 4
with LlamaServer.start(ServerConfig(model_path=path, context_size=0, threads=1)) as server:
    # the process's log callback is llamaproc's again: llama.cpp's lines reach the server's tail
    print(sum(line.startswith("sched_reserve:") for line in server.log_tail(200)))
"""


def test_models_loading_at_once_with_the_memory_fit_keep_the_process_and_its_log_alive(tiny_models):
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(CONCURRENT_FITS), str(tiny_models["f32"])],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert int(r.stdout.strip().splitlines()[-1]) > 0, r.stdout
