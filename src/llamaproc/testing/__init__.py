"""Test support for code that uses llamaproc: tiny GGUF models and pytest fixtures.

``make_tiny_model(path)`` writes a tiny random-weight llama model that the embedded server
loads in milliseconds. The pytest plugin (registered automatically when llamaproc is
installed) provides the fixtures ``llamaproc_tiny_model`` (a path) and ``llamaproc_server``
(a running server on that model, stopped after the test).
"""

from __future__ import annotations

from .tiny_model import make_tiny_model

__all__ = ["make_tiny_model"]
