"""Process isolation (issue 19): ``isolation="process"`` runs llama.cpp in a child process with
the same API, and whatever the child does (a real native abort, SIGKILL, a hang) the host lives
on, the server goes FAILED with the cause, and its restart policy brings it back on the same port.
The lifecycle, recovery and direct-API suites also run in both modes (their `isolation` fixture);
these tests are what only an isolated server can show. Real servers on the tiny model, loopback."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client
from pathlib import Path

import pytest

from conftest import thread_count, tiny_config, wait_until
from http_client import post
from llamaproc import LlamaServer, RestartPolicy, ServerStatus, errors
from llamaproc.isolation import child_process
from llamaproc.testing import Fault

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
QUICK = RestartPolicy(backoff_s=(0.05, 0.5))


def isolated(model: Path, **changes) -> LlamaServer:
    return LlamaServer.start(tiny_config(model, isolation="process", **changes))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) is gone for our purposes
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def fails_then_recovers(server: LlamaServer, fault: Fault, cause: str, timeout: float = 30.0) -> None:
    port, pid = server.port, server.metrics().child_pid
    server.inject_fault(fault)
    wait_until(lambda: server.status is not ServerStatus.READY, timeout)
    wait_until(lambda: server.status is ServerStatus.READY, timeout)
    failed = [e for e in server.events() if e.kind.value == "failed"][-1]
    assert cause in str(failed.error)
    assert server.port == port and server.metrics().child_pid != pid and not alive(pid)
    assert post(server.url + "/v1/chat/completions", CHAT)[0] == 200


def test_a_real_native_abort_ends_the_child_not_the_host(tiny_model):
    with isolated(tiny_model, restart=QUICK) as server:
        pid = server.metrics().child_pid
        fails_then_recovers(server, Fault.native_abort(), "SIGABRT")
        failed = [e for e in server.events() if e.kind.value == "failed"][-1]
        # ggml's own assertion line, read from the dead child's stderr
        assert any("GGML_ASSERT(injected)" in line for line in failed.error.log_tail), failed.error.log_tail
        assert pid != server.metrics().child_pid


def test_a_sigkill_of_the_child_is_a_failure_with_its_signal_then_a_restart(tiny_model):
    with isolated(tiny_model, restart=QUICK) as server:
        fails_then_recovers(server, Fault.process_killed(), "SIGKILL")
        fails_then_recovers(server, Fault.process_killed(), "SIGKILL")  # and again, on the same port
        assert server.metrics().restarts == 2


def test_without_a_policy_a_dead_child_leaves_the_server_failed_with_the_cause(tiny_model):
    with isolated(tiny_model) as server:
        server.inject_fault(Fault.process_killed())
        wait_until(lambda: server.status is ServerStatus.FAILED)
        assert isinstance(server.failure, errors.NativeError) and "SIGKILL" in str(server.failure)
        report = server.health_check()
        assert report.status.value == "unhealthy" and "SIGKILL" in report.detail
        with pytest.raises(errors.ServerNotRunningError):
            server.direct.chat.completions.create(**CHAT)
        metrics = server.metrics()
        assert metrics.live is False and metrics.child_pid is None
        server.restart()  # by hand: a fresh child, the same port
        assert post(server.url + "/v1/chat/completions", CHAT)[0] == 200


def test_a_hung_child_is_found_by_the_heartbeat_killed_and_restarted(tiny_model, monkeypatch):
    monkeypatch.setattr(child_process, "HEARTBEAT_TIMEOUT_S", 1.0)
    with isolated(tiny_model, restart=QUICK) as server:
        started = time.monotonic()
        fails_then_recovers(server, Fault.process_hangs(), "stopped answering")
        assert time.monotonic() - started < 15


def test_a_direct_stream_in_flight_when_the_child_dies_ends_with_a_typed_error(tiny_model):
    with isolated(tiny_model) as server:
        server.inject_fault(Fault.slow_tokens(0.05))
        stream = server.direct.completions.create(prompt="x", max_tokens=400, ignore_eos=True, stream=True)
        next(iter(stream))
        server.inject_fault(Fault.process_killed())
        started = time.monotonic()
        with pytest.raises(errors.UnavailableError, match="SIGKILL"):
            for _ in stream:
                pass
        assert time.monotonic() - started < 10


def test_an_http_stream_in_flight_when_the_child_dies_ends_not_hangs(tiny_model):
    import http.client

    with isolated(tiny_model) as server:
        server.inject_fault(Fault.slow_tokens(0.05))
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("POST", "/completion", body=json.dumps({"prompt": "x", "n_predict": 400, "ignore_eos": True,
                                                             "stream": True}),
                     headers={"Content-Type": "application/json"})
        res = conn.getresponse()
        res.readline()
        server.inject_fault(Fault.process_killed())
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            res.read()
        conn.close()


def test_child_logs_reach_the_host_logger(tiny_model, caplog):
    with caplog.at_level(logging.INFO, logger="llamaproc"):
        with isolated(tiny_model) as server:
            post(server.url + "/v1/chat/completions", CHAT)
    assert any("n_slots" in r.getMessage() or "load_model" in r.getMessage() for r in caplog.records)


def test_stop_leaves_no_process_socket_or_folder(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the channel's private folder goes here
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    server = isolated(tiny_model)
    pid = server.metrics().child_pid
    assert any(tmp_path.iterdir())  # the folder with the channel's socket
    server.stop()
    assert not alive(pid) and list(tmp_path.iterdir()) == []


def test_a_bad_model_raises_the_same_typed_error_and_leaves_no_child(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    before = _children()
    with pytest.raises(errors.ModelLoadError):
        LlamaServer.start(tiny_config(bad, isolation="process"))
    wait_until(lambda: _children() <= before, 10)


def test_a_port_in_use_raises_startup_error_and_leaves_no_child(tiny_model):
    with isolated(tiny_model) as first:
        before = _children()
        with pytest.raises(errors.StartupError, match="in use"):
            isolated(tiny_model, port=first.port)
        wait_until(lambda: _children() <= before, 10)


def test_in_process_servers_refuse_the_faults_that_would_end_the_host(tiny_server):
    for fault in (Fault.native_abort(), Fault.process_killed(), Fault.process_hangs()):
        with pytest.raises(errors.ConfigError, match="isolation"):
            tiny_server.inject_fault(fault)


def test_isolation_must_be_a_known_mode(tiny_model):
    with pytest.raises(errors.ConfigError, match="isolation"):
        tiny_config(tiny_model, isolation="container")


def test_the_channel_refuses_a_peer_without_the_key(tmp_path):
    """A process that reaches the child's socket first, with the wrong key, is refused; the
    host's connection (the right key) is served after it."""
    address = str(tmp_path / "channel")
    key = os.urandom(32)
    child = subprocess.Popen([sys.executable, "-m", "llamaproc.isolation.child", address], stdin=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
    try:
        child.stdin.write(key.hex().encode() + b"\n")
        child.stdin.close()
        wait_until(lambda: os.path.exists(address), 30)
        assert oct(os.stat(address).st_mode & 0o777) == "0o600"
        with pytest.raises(AuthenticationError):
            while True:
                try:
                    Client(address, family="AF_UNIX", authkey=b"not the key")
                except ConnectionRefusedError:  # bound, not yet listening
                    time.sleep(0.005)
                    continue
                break
        conn = Client(address, family="AF_UNIX", authkey=key)
        conn.send(("ping", 1))
        assert conn.recv() == ("pong", 1)
        conn.send(("exit",))
        assert child.wait(30) == 0
    finally:
        child.kill()
        child.wait()


def test_the_child_exits_within_two_seconds_of_a_host_killed_with_sigkill(tiny_model, tmp_path):
    script = tmp_path / "host.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from conftest import tiny_config
        from llamaproc import LlamaServer
        server = LlamaServer.start(tiny_config({str(tiny_model)!r}, isolation="process"))
        print(server.metrics().child_pid, flush=True)
        time.sleep(600)
    """))
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as host:
        try:
            pid = int(host.stdout.readline())
            assert alive(pid)
            host.send_signal(signal.SIGKILL)
            host.wait()
            killed = time.monotonic()
            wait_until(lambda: not alive(pid), 5)
            assert time.monotonic() - killed < 2.0
        finally:
            host.kill()


@pytest.mark.slow
def test_a_hundred_isolated_cycles_leak_no_process_fd_or_thread(tiny_model):
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    with isolated(tiny_model):  # first start: imports and caches
        pass
    threads, files, children = thread_count(), fds(), _children()
    for _ in range(100):
        server = isolated(tiny_model)
        server.stop()
    wait_until(lambda: thread_count() <= threads and _children() <= children, 10)
    assert fds() <= files


def _children() -> set[int]:
    """Processes whose parent is this one."""
    return _children_of(os.getpid())


def test_child_metrics_name_its_pid_and_memory(tiny_model):
    with isolated(tiny_model) as server:
        m = server.metrics()
        assert m.child_pid is not None and alive(m.child_pid) and m.child_pid != os.getpid()
        assert m.child_rss_bytes > 10 * 2**20 and m.generated_tokens >= 0


def test_concurrent_direct_calls_through_the_channel(tiny_model):
    with isolated(tiny_model, parallel=4) as server:
        results: list[str] = []

        def ask() -> None:
            out = server.direct.completions.create(prompt="abc", max_tokens=8, ignore_eos=True, temperature=0)
            results.append(out["choices"][0]["text"])
        threads = [threading.Thread(target=ask) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 8 and len(set(results)) == 1  # temperature 0: the same text


# -- a whole pool in one child ----------------------------------------------------------------

def test_an_isolated_pool_survives_its_child_and_brings_its_models_back(tiny_model, tmp_path):
    from llamaproc import ModelPool, ModelSpec, ModelStatus, PoolConfig
    from llamaproc.testing import make_tiny_model

    other = make_tiny_model(tmp_path / "other.gguf", seed=7)
    spec = dict(context_size=256, parallel=2, threads=1)
    cfg = PoolConfig(models={"a": ModelSpec(model_path=tiny_model, **spec)}, isolation="process", restart=QUICK)
    with ModelPool.start(cfg) as pool:
        pool.add("late", ModelSpec(model_path=other, **spec))  # added after start: must survive a new child
        for name in ("a", "late"):
            assert post(pool.url + "/v1/chat/completions", {**CHAT, "model": name})[0] == 200
        port, pid = pool.port, pool.metrics("a").child_pid
        seen: list = []  # pool.events() hands each event out once
        pool.inject_fault("a", Fault.native_abort())
        def failures() -> dict[str, str]:
            return {e.model: e.error for e in seen if e.status is ModelStatus.FAILED and e.error}
        wait_until(lambda: seen.extend(pool.events()) or len(failures()) == 2)
        failed = failures()
        assert set(failed) == {"a", "late"} and all("SIGABRT" in why for why in failed.values()), failed
        wait_until(lambda: {m.name: m.status for m in pool.models()} == {"a": ModelStatus.LOADED,
                                                                         "late": ModelStatus.LOADED})
        assert pool.port == port and pool.metrics("a").child_pid not in (None, pid) and not alive(pid)
        assert pool.direct("late").chat.completions.create(**CHAT)["choices"]


def test_in_process_pools_refuse_the_faults_that_would_end_the_host(tiny_model):
    from llamaproc import ModelPool, ModelSpec, PoolConfig

    with ModelPool.start(PoolConfig(models={"a": ModelSpec(model_path=tiny_model, context_size=256, threads=1)})) as p:
        with pytest.raises(errors.ConfigError, match="isolation"):
            p.inject_fault("a", Fault.process_killed())


def test_serve_isolation_process_from_the_command_line(tiny_model):
    from conftest import free_port

    port = free_port()
    with subprocess.Popen([sys.executable, "-m", "llamaproc", "serve", "--isolation", "process", "-m", str(tiny_model),
                           "--port", str(port), "-c", "256", "-t", "1"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True) as cli:
        try:
            wait_until(lambda: _answers(port), 60)
            children = _children_of(cli.pid)
            assert len(children) == 1  # the isolated server's process
            cli.send_signal(signal.SIGINT)
            assert cli.wait(30) == 0
            wait_until(lambda: not any(alive(pid) for pid in children), 5)
        finally:
            cli.kill()


def _answers(port: int) -> bool:
    try:
        return post(f"http://127.0.0.1:{port}/v1/chat/completions", CHAT, timeout=5)[0] == 200
    except OSError:
        return False


def _children_of(parent: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().split(")")[-1].split()
            except OSError:
                continue
            if fields[1] == str(parent) and fields[0] != "Z":
                out.add(int(entry))
    return out


def test_a_hard_memory_limit_becomes_the_childs_os_limit(tiny_model):
    from llamaproc.isolation.child import STACK_ALLOWANCE

    limit = 256 << 20
    with isolated(tiny_model, memory_limit=limit, hard_memory_limit=True) as server:
        with open(f"/proc/{server.metrics().child_pid}/limits") as fh:
            row = next(line for line in fh if line.startswith("Max data size"))
        soft = int(row.split()[3])
        assert limit + STACK_ALLOWANCE <= soft <= limit + STACK_ALLOWANCE + (1 << 30)  # plus what it held before
        assert post(server.url + "/v1/chat/completions", CHAT)[0] == 200  # a model within it serves
    with isolated(tiny_model) as plain:
        with open(f"/proc/{plain.metrics().child_pid}/limits") as fh:
            assert next(line for line in fh if line.startswith("Max data size")).split()[3] == "unlimited"


@pytest.mark.parametrize("changes", [dict(isolation="none", memory_limit=1 << 30), dict(isolation="process")])
def test_a_hard_memory_limit_needs_isolation_and_a_limit(tiny_model, changes):
    with pytest.raises(errors.ConfigError, match="hard_memory_limit"):
        tiny_config(tiny_model, hard_memory_limit=True, **changes)


def test_load_faults_armed_on_a_running_isolated_server_apply_to_its_restart(tiny_model):
    # as in-process: restart() stops the child, and the load fault armed on it acts on the next one
    with isolated(tiny_model) as server:
        server.inject_fault(Fault.load_fails())
        with pytest.raises(errors.ModelLoadError):
            server.restart()
