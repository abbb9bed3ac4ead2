"""The portable build (-DLLAMAPROC_PORTABLE=ON): every CPU level built, the best loaded at import.

These tests need that build: they skip on a native one. `python scripts/check_portable_build.py`
builds it into its own environment and runs them there (docs/builds.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from llamaproc._native import core

VARIANT = core.system_info()["cpu_variant"]
pytestmark = pytest.mark.skipif(VARIANT is None, reason="a native build: the CPU backend is linked in")


def run_python(code: str, *args: str, variant: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LLAMAPROC_CPU_VARIANT"}
    if variant is not None:
        env["LLAMAPROC_CPU_VARIANT"] = variant
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=300, env=env)


def info_json(variant: str | None = None) -> dict:
    r = run_python("import sys; from llamaproc.__main__ import main; sys.exit(main(['info', '--json']))",
                   variant=variant)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_the_best_variant_this_cpu_runs_is_loaded():
    scores = VARIANT["available"]
    assert len(scores) >= 8 and {"x64", "sse42", "haswell"} <= set(scores)
    best = max(scores, key=lambda name: scores[name])
    assert VARIANT["name"] == best and scores[best] > 0 and not VARIANT["forced"]
    assert VARIANT["path"].endswith(f"libggml-cpu-{best}.so")
    from llamaproc.build import detect

    cpu = detect().cpu
    if cpu.has("avx512f", "avx512_vnni", "avx512_bf16", "avx512vbmi", "amx_int8", "amx_tile"):
        assert VARIANT["name"] == "sapphirerapids"  # this project's machine: AVX-512 and AMX


def test_info_names_the_variant_in_use():
    r = run_python("import sys; from llamaproc.__main__ import main; sys.exit(main(['info']))")
    assert r.returncode == 0, r.stderr
    assert f"cpu variant: {VARIANT['name']} (the best this CPU runs" in r.stdout


SERVE = """
    import sys
    from llamaproc import LlamaServer, ServerConfig
    from llamaproc._native import core
    from llamaproc.testing import make_tiny_model
    cpu = next(b for b in core.system_info()["backends"] if b["name"] == "CPU")
    print("AVX2", cpu["features"].get("AVX2", "0"), "AVX", cpu["features"].get("AVX", "0"))
    model = make_tiny_model(sys.argv[1])
    with LlamaServer.start(ServerConfig(model_path=model, context_size=256, threads=1, parallel=1)) as server:
        reply = server.direct.completions.create(prompt="hello world " * 20, max_tokens=8, ignore_eos=True)
        print("tokens", reply["usage"]["completion_tokens"])
"""


@pytest.mark.parametrize("variant, avx", [("sandybridge", "1"), ("x64", "0")])
def test_a_cpu_without_avx2_is_served_by_a_lower_variant(tmp_path, variant, avx):
    # emulated by forcing the variant: what a CPU without AVX2 (or without AVX) would load
    facts = info_json(variant)["cpu_variant"]
    assert (facts["name"], facts["forced"], facts["problem"]) == (variant, True, None)
    r = run_python(SERVE, str(tmp_path / "tiny.gguf"), variant=variant)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"AVX2 0 AVX {avx}" in r.stdout and "tokens 8" in r.stdout


def test_a_variant_that_cannot_be_honoured_falls_back_to_the_best_with_the_reason():
    facts = info_json("pentium4")["cpu_variant"]
    assert facts["name"] == VARIANT["name"] and not facts["forced"]
    assert "pentium4 is not a CPU variant of this build" in facts["problem"]
    unrunnable = [name for name, score in VARIANT["available"].items() if score == 0]
    if unrunnable:  # a variant this CPU lacks instructions for is never loaded (it would die of SIGILL)
        facts = info_json(unrunnable[0])["cpu_variant"]
        assert facts["name"] == VARIANT["name"] and "lacks instructions" in facts["problem"]


@pytest.mark.smollm2
def test_the_amx_variant_keeps_the_tile_config_fix(smollm2_model, tmp_path):
    # multi-row matmuls of a Q4 model run AMX kernels where the CPU has AMX: without the gcc < 13
    # fix the first prompt dies with SIGILL (in a child process, so that this test can report it)
    code = """
        import sys
        from llamaproc import LlamaServer, ServerConfig
        with LlamaServer.start(ServerConfig(model_path=sys.argv[1], context_size=1024, parallel=1)) as server:
            reply = server.direct.completions.create(prompt="The history of computing " * 40, max_tokens=8,
                                                     temperature=0)
            print("prompt tokens", reply["usage"]["prompt_tokens"])
    """
    r = run_python(code, str(smollm2_model))
    assert r.returncode == 0, (r.returncode, r.stderr[-3000:])
    assert int(r.stdout.split("prompt tokens")[1]) > 100
