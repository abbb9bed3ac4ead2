"""Shared fixtures: a tiny generated model for unit tests, the real SmolLM2 for integration."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

# Every load records what it held (llamaproc.memory); the suite keeps those records in its own
# process, out of the user's cache and independent of earlier runs.
os.environ["LLAMAPROC_MEMORY_MEASUREMENTS"] = ""

from llamaproc import ServerConfig  # pure Python, like everything imported here: tests of what
from llamaproc.testing import make_tiny_model  # runs before `_core` is built need no `_core`


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="session")
def smollm2_model() -> Path:
    """The real SmolLM2-135M-Instruct Q4_1, fetched once into the user cache."""
    from llamaproc.default_model import fetch_model

    return fetch_model(quiet=True)


# The isolation tiny_config() uses unless a test says otherwise: modules whose tests must hold
# in both modes ask for the `isolation` fixture (pytestmark = pytest.mark.usefixtures("isolation")).
_isolation = "none"


@pytest.fixture(params=["none", "process"])
def isolation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Runs a test once in this process and once isolated in a child process: tiny_config()
    and every PoolConfig the test makes use that mode. A test that shows something only the
    in-process mode has (this process's memory or threads) is marked `in_process_only`."""
    global _isolation
    if request.param == "process" and request.node.get_closest_marker("in_process_only"):
        pytest.skip(request.node.get_closest_marker("in_process_only").kwargs.get("reason", "in-process only"))
    from llamaproc import PoolConfig

    _isolation = request.param
    monkeypatch.setitem(PoolConfig.__init__.__kwdefaults__, "isolation", request.param)
    try:
        yield request.param
    finally:
        _isolation = "none"


def tiny_config(model: Path, **changes) -> ServerConfig:
    """Small and single-threaded: tests run beside other work on a 2-core machine."""
    fields = dict(model_path=model, context_size=512, threads=1, parallel=2, isolation=_isolation)
    fields.update(changes)
    return ServerConfig(**fields)


@pytest.fixture
def tiny_server(tiny_model: Path):
    from llamaproc import LlamaServer

    server = LlamaServer.start(tiny_config(tiny_model))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _no_leaked_servers():
    """Every test stops what it starts: no server threads outlive a test."""
    server_mod = sys.modules.get("llamaproc.server")  # never imported: no server can have started
    before = set(server_mod._live_servers) if server_mod else set()
    pool_mod = sys.modules.get("llamaproc.pool.pool")
    pools_before = set(pool_mod._live_pools) if pool_mod else set()
    yield
    pool_mod = sys.modules.get("llamaproc.pool.pool")
    if pool_mod is not None:
        pools = [p for p in list(pool_mod._live_pools) if p not in pools_before and p.running]
        for p in pools:
            p.stop()
        assert not pools, f"test left model pools running: {pools}"
    server_mod = sys.modules.get("llamaproc.server")
    if server_mod is None:
        return
    running = [s for s in list(server_mod._live_servers)
               if s not in before and s.status.value in ("starting", "ready")]
    for s in running:
        s.stop()
    assert not running, f"test left servers running: {running}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float = 30.0, every: float = 0.01) -> None:
    """Polls ``check()`` until it is true; fails the test after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(every)


def thread_count() -> int:
    """Native and Python threads of this process (Linux: /proc/self/task)."""
    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else threading.active_count()


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def assert_one_model_live_at_a_time(events) -> None:
    """In a pool's event order, a model starts loading only once the others are unloaded
    (sampling the pool can miss a short load; the events cannot)."""
    from llamaproc import ModelStatus

    live: set[str] = set()
    for e in events:
        if e.status in (ModelStatus.LOADING, ModelStatus.LOADED):
            live.add(e.model)
        elif e.status in (ModelStatus.UNLOADED, ModelStatus.FAILED):
            live.discard(e.model)
        assert len(live) <= 1, f"two models live at once after {e}"
