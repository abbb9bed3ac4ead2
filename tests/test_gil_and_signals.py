"""The GIL is free while native code loads, serves and stops; Ctrl-C behaves as usual."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

from conftest import tiny_config
from http_client import post
from llamaproc import HealthStatus, LlamaServer, ServerConfig


class Counter:
    """A pure-Python thread that counts as fast as the GIL lets it."""

    def __init__(self) -> None:
        self.value = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop:
            self.value += 1

    def __enter__(self) -> Counter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join()


def _progress_during(fn) -> tuple[int, float]:
    with Counter() as counter:
        time.sleep(0.05)
        before, started = counter.value, time.monotonic()
        fn()
        return counter.value - before, time.monotonic() - started


def test_python_threads_run_while_a_request_is_served(tiny_model):
    with LlamaServer.start(tiny_config(tiny_model, context_size=2048)) as server:
        native = server._run.native

        def long_request() -> None:
            status, body = post(server.url + "/completion", {"prompt": "x", "n_predict": 400, "ignore_eos": True})
            assert status == 200, body

        # the request itself runs in a helper thread; the main thread only waits in native code
        def served_from_native_wait() -> None:
            t = threading.Thread(target=long_request)
            t.start()
            while t.is_alive():
                native.query_load(0.5)  # a native call that waits on the inference loop
            t.join()

        counted, seconds = _progress_during(served_from_native_wait)
        baseline, base_seconds = _progress_during(lambda: time.sleep(seconds))
    # with the GIL held by native waits the counter would stall; allow for the decode thread
    assert counted / seconds > 0.2 * baseline / base_seconds, (counted, seconds, baseline, base_seconds)


@pytest.mark.smollm2
def test_python_threads_run_while_the_model_loads(smollm2_model):
    cfg = ServerConfig(model_path=smollm2_model, threads=1, context_size=1024, parallel=1)
    server = None

    def start() -> None:
        nonlocal server
        server = LlamaServer.start(cfg)

    counted, seconds = _progress_during(start)
    try:
        baseline, base_seconds = _progress_during(lambda: time.sleep(seconds))
        assert counted / seconds > 0.2 * baseline / base_seconds
    finally:
        server.stop()


def _run_script(body: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(body)], capture_output=True, text=True,
                          timeout=timeout)


# Counts this process's live children (an isolated server's process, while it runs).
_CHILDREN = """
def children():
    me, n = str(os.getpid()), 0
    for e in os.listdir('/proc'):
        if e.isdigit():
            try:
                f = open(f'/proc/{e}/stat').read().split(')')[-1].split()
            except OSError:
                continue
            n += f[1] == me and f[0] != 'Z'
    return n
"""


@pytest.mark.parametrize("mode", ["none", "process"])
def test_ctrl_c_raises_keyboard_interrupt_and_with_stops_the_server(tiny_model, mode):
    result = _run_script(f"""
        import signal, threading, time, os
        from llamaproc import LlamaServer, ServerConfig
        {_CHILDREN.strip().replace(chr(10), chr(10) + ' ' * 8)}
        cfg = ServerConfig(model_path={str(tiny_model)!r}, threads=1, context_size=256, parallel=1, isolation={mode!r})
        try:
            with LlamaServer.start(cfg) as server:
                timer = threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT))
                timer.start()
                time.sleep(30)
        except KeyboardInterrupt:
            timer.join()
            print("interrupted", server.status.value, len(os.listdir('/proc/self/task')), children())
    """)
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    assert words[:2] == ["interrupted", "stopped"], result.stdout
    # the main thread, numpy's OpenBLAS worker, and llamaproc's log delivery thread; no child
    assert int(words[2]) <= 3 and words[3] == "0", result.stdout


@pytest.mark.smollm2
@pytest.mark.parametrize("mode", ["none", "process"])
def test_ctrl_c_during_model_load_cancels_it(smollm2_model, mode):
    result = _run_script(f"""
        import signal, threading, os
        from llamaproc import LlamaServer, ServerConfig, errors
        {_CHILDREN.strip().replace(chr(10), chr(10) + ' ' * 8)}
        cfg = ServerConfig(model_path={str(smollm2_model)!r}, threads=1, context_size=1024, parallel=1,
                           isolation={mode!r})
        threading.Timer(0.05 if {mode!r} == "none" else 0.15, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        try:
            LlamaServer.start(cfg)
            print("started")
        except KeyboardInterrupt:
            print("interrupted", len(os.listdir('/proc/self/task')), children())
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("interrupted"), result.stdout
    threads, children = result.stdout.split()[1:3]
    assert int(threads) <= 3 and children == "0", result.stdout  # main, timer remains, log delivery thread


def test_no_output_on_stderr_by_default(tiny_model):
    result = _run_script(f"""
        from llamaproc import LlamaServer, ServerConfig
        import urllib.request, json
        cfg = ServerConfig(model_path={str(tiny_model)!r}, threads=1, context_size=256, parallel=1)
        with LlamaServer.start(cfg) as server:
            req = urllib.request.Request(server.url + "/completion", data=json.dumps({{"prompt": "a", "n_predict": 3}}).encode())
            urllib.request.urlopen(req).read()
        print("done")
    """)
    assert result.returncode == 0
    assert result.stdout.strip() == "done"
    assert result.stderr == ""


def test_native_log_lines_reach_the_llamaproc_logger(tiny_model, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="llamaproc"):
        with LlamaServer.start(tiny_config(tiny_model)):
            pass
    messages = [r.getMessage() for r in caplog.records if r.name == "llamaproc"]
    assert any("llama_model_loader" in m for m in messages), messages[:5]
    # the server's own lines come through common_log_add(), which the link wraps: without
    # the wrap (or with a wrap that missed the symbol) they would be lost
    assert any(m.startswith("srv ") and "load_model" in m for m in messages), messages[:20]
    assert all("\n" not in m for m in messages), "whole lines, one per record"


def test_a_blocked_log_handler_does_not_stall_serving(tiny_model):
    """Native threads queue their lines; they never wait for Python's logging (or the GIL)."""
    import logging

    blocked = threading.Event()
    release = threading.Event()

    class BlockingHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if blocked.is_set():
                release.wait(30)

    logger = logging.getLogger("llamaproc")
    handler = BlockingHandler(logging.INFO)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with LlamaServer.start(tiny_config(tiny_model)) as server:
            blocked.set()  # from now on, the first line delivered blocks the delivery thread
            for _ in range(3):  # each request logs several lines on the inference loop's thread
                status, _ = post(server.url + "/completion", {"prompt": "x", "n_predict": 4}, timeout=10)
                assert status == 200
            assert server.health_check().status is HealthStatus.HEALTHY
            release.set()
    finally:
        release.set()
        logger.removeHandler(handler)
        logger.setLevel(old_level)
