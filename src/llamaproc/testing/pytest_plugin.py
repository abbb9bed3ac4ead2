"""pytest fixtures for testing code that talks to an embedded llama.cpp server.

Fixtures (all stop their server when the test ends, passed or failed):

* ``llamaproc_fake_server``: a :class:`~llamaproc.testing.FakeServer` (no model; milliseconds).
* ``llamaproc_server``: a real ``LlamaServer`` on a generated tiny model (needs ``gguf``).
* ``llamaproc_tiny_model``: the path of that tiny model (session-wide).

Markers:

* ``@pytest.mark.llamaproc_replies(["Hi!", "Bye."])``: the fake's scripted replies (a string,
  a list, a function of the request, or None to echo).
* ``@pytest.mark.llamaproc_faults(Fault.error(503), Fault.slow_tokens(0.05))``: faults armed
  on the fixture's server (fake or real) before the test runs.

Override ``llamaproc_server_config`` in a conftest.py to change what ``llamaproc_server`` runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from llamaproc import LlamaServer, ServerConfig

    from .fake_server import FakeServer


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "llamaproc_replies(replies): scripted replies of llamaproc_fake_server")
    config.addinivalue_line("markers", "llamaproc_faults(*faults): llamaproc.testing.Fault objects armed on the "
                                       "llamaproc_server / llamaproc_fake_server of the test")


def _arm_faults(request: pytest.FixtureRequest, server: Any) -> None:
    for marker in request.node.iter_markers("llamaproc_faults"):
        for fault in marker.args:
            server.inject_fault(fault)


@pytest.fixture(scope="session")
def llamaproc_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight llama GGUF (see ``llamaproc.testing.make_tiny_model``)."""
    from .tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("llamaproc") / "tiny.gguf")


@pytest.fixture
def llamaproc_server_config(llamaproc_tiny_model: Path) -> ServerConfig:
    """The ServerConfig of ``llamaproc_server``: the tiny model, one thread, an ephemeral port."""
    from llamaproc import ServerConfig

    return ServerConfig(model_path=llamaproc_tiny_model, context_size=512, threads=1, parallel=2)


@pytest.fixture
def llamaproc_server(request: pytest.FixtureRequest, llamaproc_server_config: ServerConfig) -> Iterator[LlamaServer]:
    """A running LlamaServer, stopped when the test ends."""
    from llamaproc import LlamaServer

    server = LlamaServer.start(llamaproc_server_config)
    try:
        _arm_faults(request, server)
        yield server
    finally:
        server.stop()


@pytest.fixture
def llamaproc_fake_server(request: pytest.FixtureRequest) -> Iterator[FakeServer]:
    """A running FakeServer (replies from the ``llamaproc_replies`` marker, echo by default),
    stopped when the test ends."""
    from .fake_server import FakeServer

    marker = request.node.get_closest_marker("llamaproc_replies")
    server = FakeServer.start(marker.args[0] if marker and marker.args else None)
    try:
        _arm_faults(request, server)
        yield server
    finally:
        server.stop()
