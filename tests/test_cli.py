"""python -m llamaproc serve|info, as a service manager would run it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import free_port
from http_client import get, post


def _serve(*args: str, env: dict | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llamaproc", "serve", *args, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    return proc, port


def _wait_healthy(proc: subprocess.Popen, port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if get(f"http://127.0.0.1:{port}/health", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("server did not become healthy")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_signal(tiny_model, sig):
    proc, port = _serve(str(tiny_model), "-t", "1", "-c", "256")
    try:
        _wait_healthy(proc, port)
        assert post(f"http://127.0.0.1:{port}/completion", {"prompt": "a", "n_predict": 2})[0] == 200
        sent = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
        assert time.monotonic() - sent < 10
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in err


def test_a_second_signal_while_stopping_is_not_a_traceback(tiny_model):
    proc, port = _serve(str(tiny_model), "-t", "1", "-c", "256")
    try:
        _wait_healthy(proc, port)
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "stopped" in err


def test_serve_accepts_llama_server_flags_and_env_defaults(tiny_model):
    proc, port = _serve("-m", str(tiny_model), "--threads", "1", env={"LLAMA_ARG_CTX_SIZE": "768"})
    try:
        _wait_healthy(proc, port)
        status, props = get(f"http://127.0.0.1:{port}/props")
        assert status == 200
        assert props["default_generation_settings"]["n_ctx"] == 768
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)


def test_serve_with_a_bad_model_exits_with_a_message(tmp_path):
    proc, _ = _serve(str(tmp_path / "missing.gguf"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "does not exist" in err


def test_serve_help_lists_our_options_and_llama_servers():
    result = subprocess.run([sys.executable, "-m", "llamaproc", "serve", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    assert "llamaproc options" in result.stdout
    for flag in ("--ctx-size", "--parallel", "--api-key", "--n-gpu-layers"):
        assert flag in result.stdout


def test_info_reports_commit_backends_and_devices():
    result = subprocess.run([sys.executable, "-m", "llamaproc", "info"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "llama.cpp commit 0c1e57098" in result.stdout
    assert "CPU" in result.stdout
    import json

    facts = json.loads(subprocess.run([sys.executable, "-m", "llamaproc", "info", "--json"], capture_output=True,
                                      text=True, timeout=60).stdout)
    cpu = next(b for b in facts["backends"] if b["name"] == "CPU")
    assert cpu["features"], cpu  # the CPU backend lists its instruction sets
    assert any(d["type"] == "cpu" for d in facts["devices"])


@pytest.mark.smollm2
def test_serve_without_a_model_is_the_router_with_the_default_model_loaded(smollm2_model, tiny_model, tmp_path):
    # llama-server with no -m is its router over the local model cache; serve is that router, and
    # the default model (smollm2_model filled the user cache) joins its models, loaded
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "cache" / "models--someone--tiny-GGUF" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text(commit)
    shutil.copy(tiny_model, snapshot / "tiny-Q4_1.gguf")
    proc, port = _serve("-t", "1", "-c", "512", env={"LLAMA_CACHE": str(tmp_path / "cache")})
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, port)
        chat = {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8}
        status, body = post(url + "/v1/chat/completions", chat)  # no model named: the default model
        assert status == 200 and body["choices"][0]["message"]["content"]
        listing = {m["id"]: m for m in get(url + "/models")[1]["data"]}
        default = next(name for name in listing if name.startswith("SmolLM2"))
        assert body["model"] == default and listing[default]["status"]["value"] == "loaded"
        assert listing["someone/tiny-GGUF:Q4_1"]["status"]["value"] == "unloaded"
        assert post(url + "/v1/chat/completions", {**chat, "model": "someone/tiny-GGUF:Q4_1"})[0] == 200
        status, body = post(url + "/models/load", {"model": "nope"})  # the router's own answer (llama.cpp's
        assert status == 404 and body["error"]["type"] == "not_found_error"  # HTTP layer rewrites 404 bodies)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)


@pytest.mark.parametrize("args, env", [(("-v",), {}), ((), {"LLAMA_ARG_LOG_VERBOSITY": "5"})], ids=["-v", "env"])
def test_serve_verbosity_prints_debug_lines(tiny_model, args, env):
    # llama.cpp's -v / LLAMA_ARG_LOG_VERBOSITY map to the log level of the CLI and the `llamaproc` logger
    proc, port = _serve(str(tiny_model), "-t", "1", "-c", "256", *args, env=env)
    try:
        _wait_healthy(proc, port)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert " DEBUG llamaproc: " in err


def test_serve_low_verbosity_quiets_the_cli(tiny_model):
    # -lv 2 (warnings) is what --quiet does: no info lines, not even the CLI's own
    proc, port = _serve(str(tiny_model), "-t", "1", "-c", "256", "-lv", "2")
    try:
        _wait_healthy(proc, port)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert " INFO " not in err and " DEBUG " not in err


@pytest.mark.parametrize("args, env, message", [
    (("--log-file", "serve.log"), {}, "--log-file: the native log goes to the 'llamaproc' Python logger"),
    (("--prio", "1"), {}, "--prio: process priority is a process-wide setting"),
    ((), {"LLAMA_ARG_LOG_FILE": "serve.log"}, "unset the environment variable LLAMA_ARG_LOG_FILE (--log-file)"),
], ids=["--log-file", "--prio", "LLAMA_ARG_LOG_FILE"])
def test_serve_refuses_process_wide_flags_with_the_reason(tiny_model, tmp_path, args, env, message):
    port = free_port()
    result = subprocess.run([sys.executable, "-m", "llamaproc", "serve", str(tiny_model), *args, "--port", str(port)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path, env={**os.environ, **env})
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "serve.log").exists()


def test_info_flags_what_the_build_leaves_unused():
    from types import SimpleNamespace

    from llamaproc.__main__ import build_mismatches

    cpu_only = {"backends": [{"name": "CPU", "features": {"AVX2": "1", "AVX512": "0", "AMX_INT8": "0"}}]}
    avx512_cpu = SimpleNamespace(features=("avx2", "avx512f", "amx_int8"), features_known=True)
    gpu = SimpleNamespace(name="NVIDIA H200")
    found = build_mismatches(cpu_only, SimpleNamespace(gpus=(gpu,), cpu=avx512_cpu))
    assert any("NVIDIA H200" in m and "only CPU backends" in m for m in found)
    assert any("AVX512" in m and "AMX_INT8" in m for m in found)
    # a portable build loads ggml's fixed variants: what the best one leaves out is by design
    portable = {**cpu_only, "cpu_variant": {"name": "haswell"}}
    assert not any("AVX512" in m for m in build_mismatches(portable, SimpleNamespace(gpus=(), cpu=avx512_cpu)))
    with_cuda = {"backends": [{"name": "CUDA", "features": {}},
                              {"name": "CPU", "features": {"AVX2": "1", "AVX512": "1", "AMX_INT8": "1"}}]}
    assert build_mismatches(with_cuda, SimpleNamespace(gpus=(gpu,), cpu=avx512_cpu)) == []
    # the other way round: a GPU build where no GPU device can be used (as the CUDA build here)
    no_device = {**with_cuda, "devices": [{"name": "CPU", "type": "cpu"}]}
    found = build_mismatches(no_device, SimpleNamespace(gpus=(), cpu=avx512_cpu))
    assert found == ["this build has the CUDA backend but no GPU device is usable here (no driver, or none visible): "
                     "models run on the CPU"]


def test_info_reports_the_machine_next_to_the_build():
    r = subprocess.run([sys.executable, "-m", "llamaproc", "info", "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["machine"]["cpu"]["physical_cores"] >= 1 and isinstance(data["mismatches"], list)


def test_serve_passes_llama_server_flags_through_in_order():
    from llamaproc.__main__ import parse_args

    args = parse_args(["serve", "m.gguf", "--quiet", "-lv", "4", "--temp", "-0.5", "--memory-budget=5", "--ctx-size=64",
                       "--default-model", "a", "--rpc", "h:1"])
    assert args.llama_server_flags == ["--model", "m.gguf", "-lv", "4", "--temp", "-0.5", "--ctx-size=64",
                                       "--rpc", "h:1"]
    assert (args.quiet, args.memory_budget, args.default_model, args.router) == (True, 5, "a", False)
    with pytest.raises(SystemExit):  # only serve passes unknown flags on
        parse_args(["info", "--ctx-size", "64"])


@pytest.mark.parametrize("flags, router, env, pool", [
    ([], False, {}, False),  # the default model
    ([], True, {}, True),
    (["--models-dir", "d"], False, {}, True),
    (["--models-preset=p.ini"], False, {}, True),
    ([], False, {"LLAMA_ARG_MODELS_DIR": "d"}, True),
    (["-m", "x.gguf", "--models-dir", "d"], False, {}, False),
    (["--models-dir", "d"], False, {"LLAMA_ARG_MODEL": "x.gguf"}, False),
    ([], True, {"LLAMA_ARG_MODEL": "x.gguf"}, True),  # --router outranks the environment's model
])
def test_serve_decides_between_one_server_and_a_pool(monkeypatch, flags, router, env, pool):
    from llamaproc.flags import ServeMode, serve_mode

    for name in ("LLAMA_ARG_MODEL", "LLAMA_ARG_MODELS_DIR", "LLAMA_ARG_MODELS_PRESET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert (serve_mode(flags, use_env=True, router=router) is ServeMode.POOL) is pool


@pytest.mark.parametrize("args, message", [
    (("--router", "-m", "x.gguf"), "--router serves several models: drop the model (-m) or drop --router"),
    (("x.gguf", "--memory-budget", "1000"), "--default-model, --memory-budget and --idle-unload are for a model pool"),
], ids=["router-with-model", "pool-option-without-pool"])
def test_serve_refuses_contradictory_options(args, message):
    result = subprocess.run([sys.executable, "-m", "llamaproc", "serve", *args, "--port", str(free_port())],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_quantize_refuses_an_existing_destination_naming_the_cli_option(tiny_model, tmp_path):
    dst = tmp_path / "out.gguf"
    dst.write_bytes(b"keep")
    result = subprocess.run([sys.executable, "-m", "llamaproc", "quantize", str(tiny_model), str(dst), "q8_0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "exists; use --overwrite to replace it" in result.stderr and "overwrite=True" not in result.stderr
    assert dst.read_bytes() == b"keep"


def test_a_signal_that_interrupts_the_watchdogs_start_still_stops_cleanly():
    # SIGINT can land while start() starts its watchdog thread (the server already answers
    # /health then): the thread may run without start() having seen it begin, and
    # Thread.join() refuses it. Stopping must join it anyway, not fail with RuntimeError.
    import threading

    from llamaproc.server import _join_started

    release = threading.Event()
    running = threading.Thread(target=release.wait)
    never_started = threading.Thread(target=release.wait)
    _join_started(never_started, start_grace_s=0.05)  # returns: nothing to join
    running.start()
    running._started.clear()  # as if start() had been interrupted before it saw the thread begin
    seen: dict[str, bool] = {}

    def join_it() -> None:
        _join_started(running)
        seen["running after the join"] = running.is_alive()

    joiner = threading.Thread(target=join_it)
    joiner.start()
    running._started.set()
    release.set()
    joiner.join(5)
    assert seen == {"running after the join": False}
