"""Faults to inject on purpose: :class:`Fault` lives in :mod:`llamaproc.faults` (the servers
use it too); it is re-exported here, where tests look for it."""

from __future__ import annotations

from ..faults import KINDS, Fault, FaultKind

__all__ = ["Fault", "FaultKind", "KINDS"]
