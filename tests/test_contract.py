"""The server-like contract (llamaproc.contract.ServerLike): the same checks on every class that
claims it — LlamaServer, one model of a ModelPool (pool.server(name)), both isolated in a child
process, and the FakeServer. A
method that drifts on one of them (a missing argument, another error type, a state it does not
work in) fails here."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import tiny_config
from llamaproc import (EventKind, Fault, HealthStatus, LlamaServer, ModelPool, ModelSpec, PoolConfig, ServerLike,
                       ServerStatus, errors)
from llamaproc.testing import FakeServer

KINDS = ("llama", "pool", "fake", "isolated llama", "isolated pool")


def _pool_server(model: Path, isolation: str = "none") -> tuple[ServerLike, Callable[[], None]]:
    pool = ModelPool.start(PoolConfig(models={"m": ModelSpec(model_path=model, context_size=512, parallel=2,
                                                             threads=1, extra_args=("--cache-ram", "0"))},
                                      isolation=isolation))
    server = pool.server("m").start()
    return server, pool.stop


def make(kind: str, model: Path) -> tuple[ServerLike, Callable[[], None]]:
    """A READY server-like object of ``kind`` and what stops everything it started."""
    if kind == "llama":
        server = LlamaServer.start(tiny_config(model))
        return server, server.stop
    if kind == "pool":
        return _pool_server(model)
    if kind == "isolated llama":  # the same contract, served by a child process
        server = LlamaServer.start(tiny_config(model, isolation="process"))
        return server, server.stop
    if kind == "isolated pool":
        return _pool_server(model, isolation="process")
    fake = FakeServer.start(["one two three"])
    return fake, fake.stop


@pytest.fixture(params=KINDS)
def server_like(request: pytest.FixtureRequest, tiny_model: Path) -> Iterator[ServerLike]:
    server, stop = make(request.param, tiny_model)
    try:
        yield server
    finally:
        stop()


def complete(server: ServerLike, **extra) -> dict:
    return server.direct.completions.create(prompt="hello", max_tokens=3, **extra)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# -- the surface --------------------------------------------------------------------------

PROTOCOL_METHODS = [name for name, value in vars(ServerLike).items()
                    if not name.startswith("_") or name in ("__enter__", "__exit__", "__aenter__", "__aexit__")
                    if callable(value) or isinstance(value, property)]


@pytest.mark.parametrize("cls", ["LlamaServer", "PooledServer", "FakeServer"])
def test_every_class_has_the_protocols_members_with_its_signatures(cls):
    import llamaproc

    klass = getattr(llamaproc, cls) if cls != "FakeServer" else FakeServer
    for name in PROTOCOL_METHODS:
        want = vars(ServerLike)[name]
        assert hasattr(klass, name), f"{cls} lacks {name}"
        have = getattr(klass, name)
        if isinstance(want, property):
            assert isinstance(have, property), f"{cls}.{name} must be a property"
            continue
        wanted = inspect.signature(want).parameters
        got = inspect.signature(have).parameters
        for pname, param in wanted.items():
            if param.kind is inspect.Parameter.VAR_POSITIONAL or param.kind is inspect.Parameter.VAR_KEYWORD:
                assert any(p.kind is param.kind for p in got.values()), f"{cls}.{name} lacks {param}"
                continue
            assert pname in got, f"{cls}.{name} lacks the parameter {pname!r}"
            assert got[pname].kind == param.kind, f"{cls}.{name}({pname}): {got[pname].kind} != {param.kind}"
            assert got[pname].default == param.default, f"{cls}.{name}({pname}) default {got[pname].default!r}"
        assert inspect.iscoroutinefunction(have) == inspect.iscoroutinefunction(want), f"{cls}.{name} sync/async"


# -- READY --------------------------------------------------------------------------------

def test_ready_serves_calls_health_and_live_metrics(server_like):
    assert isinstance(server_like, ServerLike)
    assert server_like.status is ServerStatus.READY and server_like.failure is None
    assert server_like.url.startswith("http://127.0.0.1:") and server_like.port > 0
    reply = complete(server_like)
    assert reply["choices"][0]["text"] is not None
    report = server_like.health_check()
    assert report.status is HealthStatus.HEALTHY and report.ok
    metrics = server_like.metrics()
    assert metrics.live and metrics.requests["ok"] >= 1 and metrics.generated_tokens >= 1
    assert any(e.kind is EventKind.READY for e in server_like.events())


def test_health_probes_are_not_counted_as_requests(server_like):
    complete(server_like)
    before = server_like.metrics().requests
    for _ in range(3):
        assert server_like.health_check().ok
    assert server_like.metrics().requests == before


def test_rates_over_a_window_that_has_barely_started_are_zero(server_like):
    complete(server_like)
    metrics = server_like.metrics(window_s=0.003)
    assert metrics.recent_requests_per_second == 0.0 and metrics.window_s == 0.0


def test_a_stream_in_a_with_block_is_cancelled_on_exit(server_like):
    with server_like.direct.completions.create(prompt="x", max_tokens=400, ignore_eos=True, stream=True) as stream:
        next(iter(stream))
    wait_for(lambda: server_like.health_check().slots_busy == 0)


def test_asyncio_twins(server_like):
    async def go() -> None:
        report = await server_like.ahealth_check()
        metrics = await server_like.ametrics(window_s=60.0)
        assert report.ok and metrics.live
        await server_like.arestart(timeout=60.0)
        assert server_like.status is ServerStatus.READY
        await server_like.astop()

    asyncio.run(go())
    assert server_like.status is ServerStatus.STOPPED


# -- faults -------------------------------------------------------------------------------

def test_an_injected_error_reaches_direct_calls_then_clears(server_like):
    server_like.inject_fault(Fault.error(503, nth=0, times=5))
    with pytest.raises(errors.UnavailableError):
        complete(server_like)
    server_like.clear_faults()
    assert complete(server_like)["choices"]


def test_a_slow_load_by_name_and_param_slows_the_next_load(server_like):
    # regression: FakeServer.inject_fault("slow_load", param=25) raised KeyError: 'ms'
    server_like.inject_fault("slow_load", param=60)  # 60 ms per progress step, about ten steps
    t0 = time.monotonic()
    server_like.restart(timeout=60.0)
    assert time.monotonic() - t0 >= 0.3
    assert server_like.status is ServerStatus.READY


def test_a_named_slow_fault_without_its_param_is_refused(server_like):
    with pytest.raises(ValueError, match="needs param"):
        server_like.inject_fault("slow_load")


def test_the_loop_dying_fails_the_server_and_metrics_still_answer(server_like):
    complete(server_like)
    server_like.inject_fault(Fault.loop_dies())
    wait_for(lambda: server_like.status is ServerStatus.FAILED)
    assert server_like.failure is not None
    report = server_like.health_check()
    assert report.status is HealthStatus.UNHEALTHY
    metrics = server_like.metrics()  # the README's recovery example reads it in this state
    assert not metrics.live
    wait_for(lambda: any(e.kind is EventKind.FAILED for e in server_like.events()))
    if server_like.serving:  # a pool loads a failed model again for the next request naming it
        assert complete(server_like)["choices"] and server_like.status is ServerStatus.READY
    else:
        with pytest.raises((errors.UnavailableError, errors.ServerNotRunningError)):
            complete(server_like)


# -- STOPPED ------------------------------------------------------------------------------

def test_after_stop_status_health_and_metrics_answer_and_calls_refuse(server_like):
    complete(server_like)
    server_like.stop()
    server_like.stop()  # idempotent
    assert server_like.status is ServerStatus.STOPPED
    assert server_like.health_check().status is HealthStatus.UNHEALTHY
    metrics = server_like.metrics()
    assert not metrics.live and metrics.requests["ok"] >= 1
    if not server_like.serving:  # a pool's model loads again on demand while the pool runs
        with pytest.raises(errors.ServerNotRunningError):
            complete(server_like)


def test_with_leaves_it_stopped(server_like):
    with server_like as entered:
        assert entered is server_like and server_like.status is ServerStatus.READY
    assert server_like.status is ServerStatus.STOPPED


# -- the two fault bugs the contract work fixed ----------------------------------------------

def test_pool_inject_fault_takes_a_fault_object(tiny_model):
    # regression: ModelPool.inject_fault(name, Fault.loop_dies()) sent str(fault) ("unknown fault")
    server, stop = _pool_server(tiny_model)
    try:
        pool = server._owner()  # type: ignore[attr-defined]
        pool.inject_fault("m", Fault.loop_dies())
        wait_for(lambda: server.status is ServerStatus.FAILED)
        pool.inject_fault("m", Fault.slow_tokens(0.05))  # stream faults are public on pools too
        with pytest.raises(errors.ModelNotFoundError):
            pool.inject_fault("nope", Fault.loop_dies())
    finally:
        stop()


def test_pool_direct_on_an_unknown_model_is_model_not_found(tiny_model):
    server, stop = _pool_server(tiny_model)
    try:
        pool = server._owner()  # type: ignore[attr-defined]
        with pytest.raises(errors.ModelNotFoundError):
            pool.direct("nope")
        with pytest.raises(errors.ModelNotFoundError):
            pool.unload("nope")
    finally:
        stop()
