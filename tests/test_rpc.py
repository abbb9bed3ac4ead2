"""One model over several machines: RPC workers in-process and llama-server's --rpc, on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from conftest import free_port, tiny_config
from http_client import post
from llamaproc import LlamaServer, ModelPool, ModelSpec, PoolConfig, RpcWorker, ServerStatus, errors
from llamaproc.rpc import rpc_supported

pytestmark = pytest.mark.skipif(not rpc_supported(), reason="this build has no RPC backend (GGML_RPC=OFF)")


def greedy(url: str, prompt: str = "hello world", n: int = 16) -> str:
    status, body = post(f"{url}/completion", {"prompt": prompt, "n_predict": n, "temperature": 0,
                                              "cache_prompt": False})
    assert status == 200, body
    return body["content"]


@pytest.fixture
def workers():
    started = [RpcWorker(port=free_port()).start() for _ in range(2)]
    try:
        yield started
    finally:
        for w in started:
            w.stop()


def test_two_workers_hold_the_layers_and_the_result_matches_one_machine(tiny_model, workers):
    local = LlamaServer.start(tiny_config(tiny_model))
    try:
        expected = greedy(local.url)
        assert local.metrics().devices is None  # the CPU only
    finally:
        local.stop()
    server = LlamaServer.start(tiny_config(tiny_model, rpc_workers=[w.endpoint for w in workers]))
    try:
        assert greedy(server.url) == expected
        devices = server.metrics().devices
        assert devices is not None and {d.description for d in devices} == {w.endpoint for w in workers}
        assert all(d.name.startswith("RPC") and d.server_bytes > 0 for d in devices)
        assert all(w.connections > 0 for w in workers)
    finally:
        server.stop()


def test_a_server_without_rpc_keeps_off_the_workers_another_server_attached(tiny_model, workers):
    with_rpc = LlamaServer.from_args(["-m", str(tiny_model), "-c", "256", "-t", "1", "--port", "0",
                                      "--rpc", workers[0].endpoint], use_env=False)
    try:
        plain = LlamaServer.start(tiny_config(tiny_model))
        try:
            assert plain.metrics().devices is None
            assert greedy(plain.url) == greedy(with_rpc.url)
        finally:
            plain.stop()
        assert [d.description for d in with_rpc.metrics().devices] == [workers[0].endpoint]
    finally:
        with_rpc.stop()


def test_the_pool_places_one_model_on_a_worker_and_not_the_others(tiny_model, workers):
    pool = ModelPool.start(PoolConfig(models={
        "remote": ModelSpec(model_path=tiny_model, context_size=256, threads=1, parallel=1,
                            rpc_workers=[workers[1].endpoint]),
        "local": ModelSpec(model_path=tiny_model, context_size=256, threads=1, parallel=1)}))
    try:
        for name in ("remote", "local"):
            status, body = post(f"{pool.url}/completion", {"model": name, "prompt": "hi", "n_predict": 4})
            assert status == 200, body
        assert [d.description for d in pool.metrics("remote").devices] == [workers[1].endpoint]
        assert pool.metrics("local").devices is None
    finally:
        pool.stop()


def test_unreachable_or_foreign_workers_are_config_errors(tiny_model):
    port = free_port()
    with pytest.raises(errors.ConfigError, match=f"127.0.0.1:{port} is unreachable"):
        LlamaServer.from_args(["-m", str(tiny_model), "--port", "0", "--rpc", f"127.0.0.1:{port}"], use_env=False)
    with pytest.raises(errors.ConfigError, match="host:port"):
        LlamaServer.from_args(["-m", str(tiny_model), "--port", "0", "--rpc", "nowhere"], use_env=False)
    with pytest.raises(errors.ConfigError, match="rpc_workers"):
        tiny_config(tiny_model, rpc_workers="127.0.0.1:1")
    # a peer that accepts and hangs up is not an RPC worker: an error, not an abort of this process
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def hang_up() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                listener.accept()[0].close()
            except OSError:
                pass

    thread = threading.Thread(target=hang_up)
    thread.start()
    try:
        endpoint = f"127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(errors.ConfigError, match=f"{endpoint} did not answer as a ggml RPC worker"):
            LlamaServer.from_args(["-m", str(tiny_model), "--port", "0", "--rpc", endpoint], use_env=False)
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_llama_arg_rpc_attaches_workers_where_environment_defaults_apply(tiny_model, workers, monkeypatch):
    monkeypatch.setenv("LLAMA_ARG_RPC", workers[0].endpoint)
    server = LlamaServer.from_args(["-m", str(tiny_model), "-c", "256", "-t", "1", "--port", "0"], use_env=True)
    try:
        assert [d.description for d in server.metrics().devices] == [workers[0].endpoint]
    finally:
        server.stop()


def test_a_worker_binds_loopback_unless_told_and_reports_a_taken_port():
    with pytest.raises(errors.ConfigError, match="no authentication"):
        RpcWorker(host="0.0.0.0", port=free_port()).start()
    with pytest.raises(errors.ConfigError, match="IPv4"):
        RpcWorker(host="not-an-address", port=free_port()).start()
    with pytest.raises(errors.ConfigError, match="port"):
        RpcWorker(port=70000).start()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        with pytest.raises(errors.StartupError, match="cannot listen"):
            RpcWorker(port=taken.getsockname()[1]).start()
    remote = RpcWorker(host="0.0.0.0", port=free_port(), allow_remote=True).start()
    try:
        assert remote.running
    finally:
        remote.stop()


def test_a_worker_stops_promptly_restarts_and_serves_again(tiny_model):
    worker = RpcWorker(port=free_port(), threads=1)
    with worker:
        assert worker.running and "CPU" in worker.devices
    assert not worker.running and worker.failure is None
    worker.stop()  # idempotent
    worker.start()
    try:
        server = LlamaServer.start(tiny_config(tiny_model, rpc_workers=[worker.endpoint]))
        try:
            greedy(server.url, n=4)
        finally:
            server.stop()
    finally:
        began = time.monotonic()
        worker.stop()
        stopped_in = time.monotonic() - began
    assert stopped_in < 2.0 and not worker.running


_WORKER_GOES_AWAY = textwrap.dedent("""
    import json, sys, urllib.error, urllib.request
    from llamaproc import LlamaServer, RpcWorker, ServerConfig, ServerStatus
    model, port = sys.argv[1], int(sys.argv[2])

    def complete(url):
        body = json.dumps({"prompt": "hello", "n_predict": 8, "temperature": 0}).encode()
        req = urllib.request.Request(url + "/completion", body, {"Content-Type": "application/json"})
        try:
            return urllib.request.urlopen(req, timeout=60).status
        except urllib.error.HTTPError as exc:
            return exc.code

    worker = RpcWorker(port=port, threads=1).start()
    config = ServerConfig(model_path=model, context_size=256, threads=1, parallel=1, rpc_workers=[worker.endpoint])
    server = LlamaServer.start(config)
    assert complete(server.url) == 200
    worker.stop()                     # the worker goes away under a loaded server
    print("after", complete(server.url), server.status.value, flush=True)
    server.stop()                     # tearing the failed server down must not abort either
    worker.start()                    # the same endpoint serves a new server
    again = LlamaServer.start(config)
    print("again", complete(again.url), flush=True)
    again.stop()
    worker.stop()
    print("process alive", flush=True)
""")


def test_a_worker_that_goes_away_fails_its_server_not_the_process(tiny_model):
    # in a child process: without patches/0005 ggml aborts the whole process
    r = subprocess.run([sys.executable, "-c", _WORKER_GOES_AWAY, str(tiny_model), str(free_port())],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-4000:])
    lines = r.stdout.splitlines()
    assert any(line.startswith("after 5") and line.endswith(ServerStatus.FAILED.value) for line in lines), r.stdout
    assert "again 200" in lines and "process alive" in lines


def test_rpc_worker_command_serves_until_sigterm(tiny_model):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llamaproc", "rpc-worker", "--port", str(port), "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        server = LlamaServer.start(tiny_config(tiny_model, rpc_workers=[f"127.0.0.1:{port}"]))
        try:
            greedy(server.url, n=4)
        finally:
            server.stop()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped after" in err and "connection(s)" in err


def test_rpc_worker_command_refuses_a_remote_bind_without_opt_in():
    r = subprocess.run([sys.executable, "-m", "llamaproc", "rpc-worker", "--host", "0.0.0.0",
                        "--port", str(free_port())], capture_output=True, text=True, timeout=60,
                       env={**os.environ})
    assert r.returncode == 2 and "--allow-remote" in r.stderr
