"""Any sequence of start / stop / restart / health_check / requests keeps the server in a
consistent state (hypothesis state machine, real servers on the tiny model)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from conftest import tiny_config
from http_client import post
from llamaproc import HealthStatus, LlamaServer, ServerStatus, errors
from llamaproc.testing import make_tiny_model

_MODEL: Path | None = None


def _model() -> Path:
    global _MODEL
    if _MODEL is None:
        import tempfile

        _MODEL = make_tiny_model(Path(tempfile.mkdtemp(prefix="llamaproc-sm-")) / "tiny.gguf", n_layers=1)
    return _MODEL


class ServerLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server = LlamaServer(tiny_config(_model()))
        self.running = False
        self.port: int | None = None

    @rule()
    def start(self) -> None:
        if self.running:
            try:
                self.server._start(timeout=60, progress=None)
            except errors.LlamaProcError as exc:
                assert "already running" in str(exc)
            return
        self.server._start(timeout=60, progress=None)
        self.running = True
        if self.port is not None:
            assert self.server.port == self.port, "a restarted server keeps its port"
        self.port = self.server.port

    @rule()
    def stop(self) -> None:
        self.server.stop()
        self.running = False

    @precondition(lambda self: self.running)
    @rule()
    def restart(self) -> None:
        self.server.restart()
        assert self.server.port == self.port

    @rule()
    def health(self) -> None:
        report = self.server.health_check()
        expected = HealthStatus.HEALTHY if self.running else HealthStatus.UNHEALTHY
        assert report.status is expected, report

    @precondition(lambda self: self.running)
    @rule()
    def request(self) -> None:
        status, body = post(self.server.url + "/completion", {"prompt": "hi", "n_predict": 3, "ignore_eos": True})
        assert status == 200 and body["tokens_predicted"] == 3

    @invariant()
    def status_matches(self) -> None:
        expected = ServerStatus.READY if self.running else ServerStatus.STOPPED
        assert self.server.status is expected

    def teardown(self) -> None:
        self.server.stop()


ServerLifecycle.TestCase.settings = settings(max_examples=12, stateful_step_count=10, deadline=None)
TestServerLifecycle = ServerLifecycle.TestCase
