"""Faults to inject on purpose, the same for a real ``LlamaServer`` and a ``FakeServer``.

    from llamaproc.testing import Fault

    server.inject_fault(Fault.error(503, nth=2))         # the 2nd request from now gets HTTP 503
    server.inject_fault(Fault.slow_tokens(0.05))          # 50 ms before every stream chunk
    server.inject_fault(Fault.cut_stream(after_chunks=3)) # the next stream ends early, no [DONE]
    server.inject_fault(Fault.loop_dies())                # FAILED; recovers if its policy says so
    server.clear_faults()

On a real server every fault acts through the path the real failure takes (see
``LlamaServer.inject_fault``); nothing misbehaves unless a test arms it.

=====================  ==============================================================  ===============
fault                  what a client sees                                              from Python
=====================  ==============================================================  ===============
error(status, ...)     that status with llama.cpp's error body (or ``body``)           typed RequestError
slow_tokens(delay_s)   every stream chunk ``delay_s`` later                            same, slower
cut_stream(n)          the stream ends after n chunks without its last events/[DONE]   stream raises
loop_dies()            503s, /health 503, streams end with an error event              FAILED, events
assert_in_request()    the next request: 500/503; then as loop_dies                    FAILED, events
load_fails(times)      the next (re)loads fail                                         ModelLoadError
slow_load(step_s)      the next load takes ``step_s`` per progress step                start is slow
slots_busy()           requests that need a slot wait until cleared                    health DEGRADED
over_memory()          the next (re)load is over memory_limit                          ResourceError
=====================  ==============================================================  ===============
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

KINDS = ("error", "slow_tokens", "cut_stream", "loop_dies", "assert_in_request", "load_fails", "slow_load",
         "slots_busy", "over_memory")


@dataclass(frozen=True)
class Fault:
    """One fault; build it with the class methods below."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; one of {', '.join(KINDS)}")

    @classmethod
    def error(cls, status: int = 500, *, body: dict[str, Any] | str | None = None, nth: int = 1,
              match: str | None = None, times: int = 1) -> Fault:
        """The ``nth`` request from now (counting only requests whose path or JSON body contains
        ``match``, when given; ``nth=0`` means every one) is answered with ``status`` and
        ``body`` (default: llama.cpp's error body for that status), ``times`` times."""
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status}")
        text = json.dumps(body) if isinstance(body, dict) else (body or "")
        return cls("error", {"status": status, "body": text, "nth": nth, "match": match or "", "times": times})

    @classmethod
    def slow_tokens(cls, delay_s: float) -> Fault:
        """Every stream chunk (of HTTP and direct streams) is sent ``delay_s`` later."""
        return cls("slow_tokens", {"ms": max(0, round(delay_s * 1000))})

    @classmethod
    def cut_stream(cls, after_chunks: int = 1, *, times: int = 1) -> Fault:
        """The next ``times`` streams end after ``after_chunks`` chunks, without their final
        events and ``[DONE]``, as when a connection drops."""
        return cls("cut_stream", {"after_chunks": after_chunks, "times": times})

    @classmethod
    def loop_dies(cls) -> Fault:
        """The inference loop stops at once: the server goes FAILED (and restarts if its
        ``restart`` policy says so)."""
        return cls("loop_dies")

    @classmethod
    def assert_in_request(cls) -> Fault:
        """A GGML_ASSERT fires on the loop thread when it starts the next request."""
        return cls("assert_in_request")

    @classmethod
    def load_fails(cls, times: int = 1) -> Fault:
        """The next ``times`` model loads (start, restart, recovery) fail."""
        return cls("load_fails", {"times": times})

    @classmethod
    def slow_load(cls, step_s: float) -> Fault:
        """The next load waits ``step_s`` at each progress step (stop() still cancels it)."""
        return cls("slow_load", {"ms": max(1, round(step_s * 1000))})

    @classmethod
    def slots_busy(cls) -> Fault:
        """Until ``clear_faults()``, requests that need a slot wait as if every slot were busy;
        ``health_check()`` reports DEGRADED while one waits."""
        return cls("slots_busy")

    @classmethod
    def over_memory(cls) -> Fault:
        """The next load finds the model over ``memory_limit``: ``ResourceError``."""
        return cls("over_memory")


__all__ = ["Fault", "KINDS"]
