"""pytest fixtures for testing code that talks to an embedded llama.cpp server.

Override ``llamaproc_server_config`` in a conftest.py to change what ``llamaproc_server`` runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def llamaproc_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight llama GGUF (see ``llamaproc.testing.make_tiny_model``)."""
    from .tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("llamaproc") / "tiny.gguf")


@pytest.fixture
def llamaproc_server_config(llamaproc_tiny_model: Path):
    """The ServerConfig of ``llamaproc_server``: the tiny model, one thread, an ephemeral port."""
    from llamaproc import ServerConfig

    return ServerConfig(model_path=llamaproc_tiny_model, context_size=512, threads=1, parallel=2)


@pytest.fixture
def llamaproc_server(llamaproc_server_config) -> Iterator:
    """A running LlamaServer, stopped when the test ends."""
    from llamaproc import LlamaServer

    server = LlamaServer.start(llamaproc_server_config)
    try:
        yield server
    finally:
        server.stop()
