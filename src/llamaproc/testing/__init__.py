"""Test support for code that uses llamaproc: a fake server, faults, tiny models, fixtures.

* :class:`FakeServer`: a model-free stand-in with ``LlamaServer``'s API and llama-server's HTTP
  API (scripted replies, recorded requests); starts in milliseconds and needs no native
  extension.
* :class:`Fault`: misbehaviour to inject into a real or fake server, or a pool's model (errors,
  slow tokens, cut streams, a dying inference loop, failing or slow loads, busy slots, memory
  limit); defined in :mod:`llamaproc.faults`.
* ``make_tiny_model(path)``: a tiny random-weight llama GGUF the real server loads in
  milliseconds (needs the ``gguf`` package).
* The pytest plugin (registered automatically when llamaproc is installed) provides the fixtures
  ``llamaproc_fake_server``, ``llamaproc_server``, ``llamaproc_tiny_model`` and the
  ``llamaproc_faults`` marker.
"""

from __future__ import annotations

from ..faults import Fault, FaultKind
from .fake_server import FakeServer, RecordedRequest
from .tiny_model import make_tiny_model

__all__ = ["FakeServer", "RecordedRequest", "Fault", "FaultKind", "make_tiny_model"]
