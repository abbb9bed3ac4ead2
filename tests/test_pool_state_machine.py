"""Any sequence of requests, loads, unloads, swaps, additions, removals and failures keeps a
model pool consistent (hypothesis state machine on a real pool of tiny models): the count and
byte limits always hold, every request to a known model succeeds, every unknown one gets
llama-server's 400, and nothing hangs."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from http_client import post
from llamaproc import ModelPool, ModelSpec, ModelStatus, PoolConfig, errors
from llamaproc.testing import make_tiny_model

pytestmark = pytest.mark.slow  # 30 sequences of up to 25 steps on real pools: a few seconds

_FILES: list[Path] = []
NAMES = ("a", "b", "c", "d")


def _files() -> list[Path]:
    if not _FILES:
        folder = Path(tempfile.mkdtemp(prefix="llamaproc-pool-sm-"))
        _FILES.extend(make_tiny_model(folder / f"m{i}.gguf", n_layers=1, seed=i) for i in range(3))
    return _FILES


def _spec(i: int) -> ModelSpec:
    return ModelSpec(model_path=_files()[i], context_size=128, parallel=1, threads=1, extra_args=("--cache-ram", "0"))


class PoolSequences(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        probe_need = 0
        with ModelPool.start(PoolConfig(models={"a": _spec(0)})) as probe:
            probe.load("a")
            probe_need = probe.model("a").memory_estimate
        self.budget = int(probe_need * 2.5)  # two models fit, three do not
        self.pool = ModelPool.start(PoolConfig(models={"a": _spec(0), "b": _spec(1)}, max_loaded=2,
                                               memory_budget=self.budget))
        self.known = {"a", "b"}

    def teardown(self) -> None:
        self.pool.stop()
        assert self.pool.instances_alive == 0 and self.pool.reserved_bytes == 0

    @rule(name=st.sampled_from(NAMES))
    def request(self, name: str) -> None:
        status, body = post(self.pool.url + "/v1/chat/completions",
                            {"model": name, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2},
                            timeout=60)
        if name in self.known:
            assert status == 200, body
        else:
            assert status == 400 and body["error"]["message"] == f"model '{name}' not found"

    @rule(name=st.sampled_from(NAMES))
    def load(self, name: str) -> None:
        try:
            self.pool.load(name, timeout=60)
            assert name in self.known and self.pool.model(name).status is ModelStatus.LOADED
        except errors.ModelNotFoundError:
            assert name not in self.known

    @rule(name=st.sampled_from(NAMES))
    def unload(self, name: str) -> None:
        try:
            self.pool.unload(name, drain_timeout=5)
            assert self.pool.model(name).status is ModelStatus.UNLOADED
        except errors.ModelNotFoundError:
            assert name not in self.known

    @rule(name=st.sampled_from(NAMES), file=st.integers(0, 2))
    def swap(self, name: str, file: int) -> None:
        try:
            report = self.pool.swap(name, _spec(file), timeout=60)
            assert report.mode in ("hot", "cold")
            assert self.pool.model(name).model_path == str(_files()[file])
        except errors.ModelNotFoundError:
            assert name not in self.known

    @precondition(lambda self: len(self.known) < len(NAMES))
    @rule(name=st.sampled_from(NAMES), file=st.integers(0, 2))
    def add(self, name: str, file: int) -> None:
        if name in self.known:
            try:
                self.pool.add(name, _spec(file))
                raise AssertionError("a second model of the same name was accepted")
            except errors.ConfigError:
                return
        self.pool.add(name, _spec(file))
        self.known.add(name)

    @precondition(lambda self: len(self.known) > 1)
    @rule(name=st.sampled_from(NAMES))
    def remove(self, name: str) -> None:
        try:
            self.pool.remove(name, drain_timeout=5)
            self.known.discard(name)
        except errors.ModelNotFoundError:
            assert name not in self.known

    @rule(name=st.sampled_from(NAMES))
    def kill_loop(self, name: str) -> None:
        if name not in self.known or self.pool.model(name).status is not ModelStatus.LOADED:
            return
        self.pool.inject_fault(name, "loop_dies")
        status = self.pool.model(name).status
        assert status in (ModelStatus.FAILED, ModelStatus.UNLOADED), status
        # the next request loads it again
        self.request(name)

    @invariant()
    def limits_hold(self) -> None:
        assert self.pool.instances_alive <= 2
        assert self.pool.reserved_bytes <= self.budget
        assert {m.name for m in self.pool.models()} == self.known
        assert self.pool.health_check().ok


PoolSequences.TestCase.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)
TestPoolSequences = PoolSequences.TestCase
