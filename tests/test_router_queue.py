"""The router's queue at its edges, as llama-server's own router tests check it
(tools/server/tests/unit/test_router.py in the pinned source): they set
LLAMA_SERVER_DEBUG_FAKE_TIMING, which makes every load take 2 s more and every routed request
hold its model 2 s, so that queueing is observable. Same flags, same requests, same asserts,
against a pool made from llama-server's flags (--models-dir, --models-max)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from http_client import get, post
from llamaproc import ModelPool
from llamaproc.testing import make_tiny_model

pytestmark = pytest.mark.slow  # each test waits through several 2 s loads and requests

A, B, C = "model-a", "model-b", "model-c"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("router-models")
    for seed, name in enumerate((A, B, C), start=1):
        make_tiny_model(folder / f"{name}.gguf", seed=seed)
    return folder


@pytest.fixture
def router(models_dir, monkeypatch):
    """A pool as `llama-server --models-dir DIR --models-max N` with fake timing on."""
    monkeypatch.setenv("LLAMA_SERVER_DEBUG_FAKE_TIMING", "1")
    started: list[ModelPool] = []

    def start(models_max: int) -> ModelPool:
        pool = ModelPool.from_args(["--models-dir", str(models_dir), "--models-max", str(models_max), "--port", "0",
                                    "-c", "256", "-t", "1", "-np", "1"], use_env=True, read_cache=False)
        started.append(pool)
        return pool
    yield start
    for pool in started:
        pool.stop()


def status_of(pool: ModelPool, name: str) -> str:
    return next(m["status"]["value"] for m in get(pool.url + "/models")[1]["data"] if m["id"] == name)


def load(pool: ModelPool, name: str) -> None:
    assert post(pool.url + "/models/load", {"model": name})[0] == 200
    deadline = time.monotonic() + 120
    while status_of(pool, name) != "loaded":
        assert time.monotonic() < deadline, f"{name} did not load"
        time.sleep(0.05)


class Background:
    """One request in a thread: its status and when it finished."""

    def __init__(self, pool: ModelPool, model: str, timeout: float = 180.0):
        self.status: int | None = None
        self.error: Exception | None = None
        self.done_at = 0.0
        self._thread = threading.Thread(target=self._run, args=(pool, model, timeout), daemon=True)
        self._thread.start()

    def _run(self, pool: ModelPool, model: str, timeout: float) -> None:
        try:
            self.status, _ = post(pool.url + "/tokenize", {"model": model, "content": "hello world"}, timeout=timeout)
        except Exception as e:  # noqa: BLE001 - kept for the assert that reads it
            self.error = e
        self.done_at = time.monotonic()

    def join(self) -> Background:
        self._thread.join(180)
        assert not self._thread.is_alive(), "the request did not finish"
        return self

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200


def test_models_max_evicts_the_least_recently_used(router):
    pool = router(2)
    load(pool, A)
    load(pool, B)
    load(pool, C)
    assert (status_of(pool, A), status_of(pool, B), status_of(pool, C)) == ("unloaded", "loaded", "loaded")


def test_the_queue_does_not_evict_a_busy_model(router):
    pool = router(1)
    load(pool, A)
    busy = Background(pool, A)
    time.sleep(0.5)  # the request holds A (2 s of fake timing)
    queued = Background(pool, B)  # no room and A is busy: it waits instead of evicting A mid-request
    assert busy.join().ok and queued.join().ok
    assert (status_of(pool, A), status_of(pool, B)) == ("unloaded", "loaded")


def test_requests_for_one_missing_model_share_one_eviction(router):
    pool = router(2)
    load(pool, A)
    load(pool, B)
    busy = Background(pool, A)
    time.sleep(0.5)
    waiters = [Background(pool, C) for _ in range(3)]
    assert busy.join().ok and all(w.join().ok for w in waiters)
    # one queue entry for three requests: one model (the idle B) gave up its place, A kept it
    assert (status_of(pool, A), status_of(pool, B), status_of(pool, C)) == ("loaded", "unloaded", "loaded")


def test_a_client_that_leaves_the_queue_costs_no_model_its_place(router):
    pool = router(1)
    load(pool, A)
    busy = Background(pool, A)
    time.sleep(0.5)
    with pytest.raises(OSError):  # queued behind A, gives up long before A is idle
        post(pool.url + "/tokenize", {"model": B, "content": "hello world"}, timeout=1)
    assert busy.join().ok
    time.sleep(3)  # nobody waits for B any more: A keeps its place
    assert (status_of(pool, A), status_of(pool, B)) == ("loaded", "unloaded")


def test_the_queue_is_first_in_first_out(router):
    pool = router(1)
    load(pool, A)
    busy = Background(pool, A)
    time.sleep(0.5)
    first = Background(pool, B)
    time.sleep(1)  # an unambiguous arrival order
    second = Background(pool, C)
    assert busy.join().ok and first.join().ok and second.join().ok
    assert first.done_at < second.done_at


def test_two_waiters_for_one_idle_model_share_its_eviction(router):
    pool = router(1)
    load(pool, A)
    first, second = Background(pool, B), Background(pool, C)
    assert first.join().ok and second.join().ok
    assert status_of(pool, A) == "unloaded"
