"""The asyncio twins of ModelPool (astart, astop, aload, aunload, aswap, aevents, ahealth_check,
ametrics, ``async with``) on real pools of generated tiny models: each does what its blocking
twin does, and none of them blocks the event loop while it waits."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from llamaproc import HealthStatus, ModelPool, ModelSpec, ModelStatus, PoolConfig, errors
from llamaproc.testing import make_tiny_model

from http_client import get, post

# every test here runs in this process and with the pool isolated in a child process (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("isolation")

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small models that differ in weights, and a corrupt file (a valid header, then nothing)."""
    folder = tmp_path_factory.mktemp("async-pool-models")
    out = {name: make_tiny_model(folder / f"{name}.gguf", seed=seed) for seed, name in enumerate("ab", start=1)}
    out["corrupt"] = folder / "corrupt.gguf"
    out["corrupt"].write_bytes(out["a"].read_bytes()[:4096])
    return out


def spec(path: Path, **changes) -> ModelSpec:
    """Small and single-threaded, as in test_pool.py."""
    fields = dict(model_path=path, context_size=256, parallel=2, threads=1, extra_args=("--cache-ram", "0"))
    fields.update(changes)
    return ModelSpec(**fields)


async def achat(pool: ModelPool, model: str) -> tuple[int, dict | str]:
    return await asyncio.to_thread(post, pool.url + "/v1/chat/completions", {**CHAT, "model": model})


def statuses(pool: ModelPool) -> dict[str, ModelStatus]:
    return {m.name: m.status for m in pool.models()}


class Ticker:
    """Counts event-loop turns while it runs: a twin that blocked the loop would stop it."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0.01)

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)  # let it take its first turn
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


def test_astart_aload_ametrics_aunload_astop(models):
    cfg = PoolConfig(models={"a": spec(models["a"]), "b": spec(models["b"])})

    async def main() -> None:
        pool = await ModelPool.astart(cfg)
        try:
            assert pool.running and statuses(pool) == {"a": ModelStatus.UNLOADED, "b": ModelStatus.UNLOADED}
            health = await pool.ahealth_check()
            assert health.status is HealthStatus.HEALTHY and health.detail.endswith("0 of 2 models loaded")
            never = await pool.ametrics("a")  # never loaded: zeros, not live
            assert not never.live and never.slots_total == 0 and never.model_bytes == 0

            # a slow load: aload waits for it while the loop runs on
            pool.inject_fault("a", "slow_load", param=50)
            async with Ticker() as ticker:
                started = time.monotonic()
                await pool.aload("a")
                took = time.monotonic() - started
            assert statuses(pool) == {"a": ModelStatus.LOADED, "b": ModelStatus.UNLOADED}
            assert took > 0.3, "the slow load was not slow"
            assert ticker.ticks >= took / 0.01 / 10, f"{ticker.ticks} loop turns in {took:.2f} s: the loop was blocked"

            assert (await achat(pool, "a"))[0] == 200
            m = await pool.ametrics("a")
            assert m.live and m.slots_total == 2 and m.model_bytes > 0 and m.kv_cache_bytes > 0
            assert m.requests["ok"] >= 1 and m.generated_tokens > 0
            assert (await pool.ahealth_check()).detail.endswith("1 of 2 models loaded")

            pool.inject_fault("b", "load_fails")
            with pytest.raises(errors.ModelLoadError, match="injected fault"):
                await pool.aload("b")
            health = await pool.ahealth_check()
            assert health.status is HealthStatus.DEGRADED and health.detail.startswith("failed: b:")

            assert await pool.aunload("a") is True  # waits until its memory is freed
            assert pool.model("a").status is ModelStatus.UNLOADED and pool.instances_alive == 0
            assert await pool.aunload("a") is False  # not loaded any more
            last = await pool.ametrics("a")  # unloaded: the last counters seen while it served
            assert not last.live and last.slots_total == 2 and last.generated_tokens >= m.generated_tokens
            events = await pool.aevents()
            assert [e.status for e in events if e.model == "a"] == [
                ModelStatus.LOADING, ModelStatus.LOADED, ModelStatus.UNLOADED]
            assert [e.status for e in events if e.model == "b"] == [ModelStatus.LOADING, ModelStatus.FAILED]
            assert "injected fault" in next(e.error for e in events if e.status is ModelStatus.FAILED)
        finally:
            await pool.astop()
        assert not pool.running and pool.instances_alive == 0
        assert (await pool.ahealth_check()).status is HealthStatus.UNHEALTHY
        with pytest.raises(errors.ServerNotRunningError):
            await pool.aload("a")
        await pool.astop()  # idempotent, like stop()

    asyncio.run(main())


def test_aevents_waits_for_an_event_without_blocking_the_loop(models):
    async def main() -> None:
        async with await ModelPool.astart(PoolConfig(models={"a": spec(models["a"])})) as pool:
            assert await pool.aevents() == []  # nothing happened yet: no wait without a timeout
            # the request that causes the event runs on the same loop while aevents waits
            waiting = asyncio.create_task(pool.aevents(timeout=30))
            status, _ = await achat(pool, "a")
            events = await waiting
            assert status == 200
            assert events and (events[0].model, events[0].kind, events[0].status) == (
                "a", "status_change", ModelStatus.LOADING)
            rest = events[1:] + await pool.aevents(timeout=5)
            assert [(e.model, e.status) for e in rest][:1] == [("a", ModelStatus.LOADED)]
            assert rest[0].data["info"]["id"] == "a"  # the SSE event's data, as GET /models/sse sends it
            started = time.monotonic()
            assert await pool.aevents(timeout=0.2) == []  # nothing more: it waits, then returns empty
            assert time.monotonic() - started >= 0.15
        assert not pool.running

    asyncio.run(main())


@pytest.mark.parametrize("max_loaded, mode", [(2, "hot"), (1, "cold")])
def test_aswap_serves_the_new_file_and_reports_how(models, max_loaded, mode):
    async def main() -> None:
        async with await ModelPool.astart(PoolConfig(models={"m": spec(models["a"])}, max_loaded=max_loaded)) as pool:
            await pool.aload("m")
            await pool.aevents()
            report = await pool.aswap("m", spec(models["b"]))
            assert report.mode == mode and report.load_s > 0 and report.drain_s >= 0
            assert report.finished_on_old == 0  # nothing was in flight
            assert (await asyncio.to_thread(get, pool.url + "/props?model=m"))[1]["model_path"] == str(models["b"])
            assert (await achat(pool, "m"))[0] == 200
            assert pool.model("m").status is ModelStatus.LOADED and pool.instances_alive == 1
            with pytest.raises(errors.ModelLoadError):  # a swap that fails keeps the old model serving
                await pool.aswap("m", spec(models["corrupt"]), mode=mode)
            assert (await asyncio.to_thread(get, pool.url + "/props?model=m"))[1]["model_path"] == str(models["b"])
            assert (await achat(pool, "m"))[0] == 200
            with pytest.raises(errors.ConfigError, match="mode"):
                await pool.aswap("m", spec(models["a"]), mode="warm")
        assert not pool.running and pool.instances_alive == 0

    asyncio.run(main())


def test_astart_loads_startup_models_and_delivers_events_to_on_event(models):
    loaded = threading.Event()
    seen: list[tuple[str, ModelStatus | None]] = []

    def on_event(event) -> None:
        seen.append((event.model, event.status))
        if event.status is ModelStatus.LOADED:
            loaded.set()

    async def main() -> None:
        cfg = PoolConfig(models={"a": spec(models["a"], load_on_startup=True), "b": spec(models["b"])})
        pool = await ModelPool.astart(cfg, on_event=on_event)
        async with pool:
            assert statuses(pool) == {"a": ModelStatus.LOADED, "b": ModelStatus.UNLOADED}  # loaded before it returned
            assert await asyncio.to_thread(loaded.wait, 10)
            assert seen[:2] == [("a", ModelStatus.LOADING), ("a", ModelStatus.LOADED)]
            assert (await pool.ametrics("a")).slots_total == 2
        assert not pool.running

    asyncio.run(main())


def test_async_with_stops_the_pool_when_the_body_raises(models):
    async def main() -> ModelPool:
        pool = await ModelPool.astart(PoolConfig(models={"a": spec(models["a"])}))
        with pytest.raises(RuntimeError, match="boom"):
            async with pool:
                await pool.aload("a")
                raise RuntimeError("boom")
        return pool

    pool = asyncio.run(main())
    assert not pool.running and pool.instances_alive == 0


def test_astart_raises_the_configuration_error(models):
    cfg = PoolConfig(models={"a": spec(models["a"], aliases=("x",)), "b": spec(models["b"], aliases=("x",))})
    with pytest.raises(errors.ConfigError, match="conflicts"):
        asyncio.run(ModelPool.astart(cfg))
