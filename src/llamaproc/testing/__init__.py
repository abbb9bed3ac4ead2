"""Test support for code that uses llamaproc: a fake server, faults, tiny models, fixtures.

* :class:`FakeServer`: a model-free stand-in with ``LlamaServer``'s API and llama-server's HTTP
  API (scripted replies, recorded requests); starts in milliseconds.
* :class:`Fault`: misbehaviour to inject into a real or fake server (errors, slow tokens, cut
  streams, a dying inference loop, failing or slow loads, busy slots, memory limit).
* ``make_tiny_model(path)``: a tiny random-weight llama GGUF the real server loads in
  milliseconds (needs the ``gguf`` package).
* The pytest plugin (registered automatically when llamaproc is installed) provides the fixtures
  ``llamaproc_fake_server``, ``llamaproc_server``, ``llamaproc_tiny_model`` and the
  ``llamaproc_faults`` marker.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .faults import Fault
from .tiny_model import make_tiny_model

if TYPE_CHECKING:
    from .fake_server import FakeServer, RecordedRequest


def __getattr__(name: str) -> Any:
    # FakeServer shares types with the real server, which loads the native extension: import it
    # on first use, so that loading this package (the pytest plugin does) never needs `_core`.
    if name not in ("FakeServer", "RecordedRequest"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.fake_server"), name)
    globals()[name] = value
    return value


__all__ = ["FakeServer", "RecordedRequest", "Fault", "make_tiny_model"]
