"""Faults to inject on purpose, the same for a real ``LlamaServer``, a pool's model and a ``FakeServer``.

    from llamaproc.testing import Fault

    server.inject_fault(Fault.error(503, nth=2))         # the 2nd request from now gets HTTP 503
    server.inject_fault(Fault.slow_tokens(0.05))          # 50 ms before every stream chunk
    server.inject_fault(Fault.cut_stream(after_chunks=3)) # the next stream ends early, no [DONE]
    server.inject_fault(Fault.loop_dies())                # FAILED; recovers if its policy says so
    pool.inject_fault("chat", Fault.slow_load(0.1))       # one model of a pool
    server.clear_faults()

On a real server every fault acts through the path the real failure takes; nothing misbehaves
unless a test arms it. This module is the one place that knows the kinds: servers, pools and
the fake all arm faults through :func:`arm_native` or read them from :class:`Fault`.

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
native_abort()         (isolated) a real abort() in native code kills the child         FAILED, restart
process_killed()       (isolated) SIGKILL of the child                                  FAILED, restart
process_hangs()        (isolated) the child freezes (SIGSTOP); the heartbeat kills it   FAILED, restart
=====================  ==============================================================  ===============

The last three act on an isolated server's child process (``isolation="process"``); a server
in this process refuses them with ConfigError, since they would end the host itself.

In a pool, request faults (error, slow_tokens, cut_stream, slots_busy) act at the pool's HTTP
front, on every model's requests (use ``Fault.error(match=...)`` to pick requests); model
faults act on the named model.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, Protocol

from .messages import message


class FaultKind(enum.Enum):
    """What a :class:`Fault` does (the table in the module docstring)."""

    ERROR = "error"
    SLOW_TOKENS = "slow_tokens"
    CUT_STREAM = "cut_stream"
    SLOTS_BUSY = "slots_busy"
    LOOP_DIES = "loop_dies"
    ASSERT_IN_REQUEST = "assert_in_request"
    LOAD_FAILS = "load_fails"
    SLOW_LOAD = "slow_load"
    OVER_MEMORY = "over_memory"
    NATIVE_ABORT = "native_abort"
    PROCESS_KILLED = "process_killed"
    PROCESS_HANGS = "process_hangs"

    @property
    def acts_on_process(self) -> bool:
        """True for faults that end or freeze the server's process: isolated servers only."""
        return self in (FaultKind.NATIVE_ABORT, FaultKind.PROCESS_KILLED, FaultKind.PROCESS_HANGS)

    @property
    def acts_on_load(self) -> bool:
        """True for faults that act when a model loads (they may be armed on a stopped server)."""
        return self in (FaultKind.LOAD_FAILS, FaultKind.SLOW_LOAD, FaultKind.OVER_MEMORY)

    @property
    def acts_on_requests(self) -> bool:
        """True for faults that act on requests (at a pool's HTTP front, for every model)."""
        return self in (FaultKind.ERROR, FaultKind.SLOW_TOKENS, FaultKind.CUT_STREAM, FaultKind.SLOTS_BUSY)


#: Every kind's name, as ``inject_fault("name")`` takes it.
KINDS = tuple(k.value for k in FaultKind)


@dataclass(frozen=True)
class Fault:
    """One fault; build it with the class methods below (or :meth:`named`).

    Attributes:
        kind: What it does.
        times: How often it fires (requests, streams or loads); 0 with ``error``: every request.
        param: Milliseconds (slow_tokens, slow_load) or chunks (cut_stream).
        status, body, nth, match: For ``error`` (see :meth:`error`).
    """

    kind: FaultKind
    times: int = 1
    param: int = 0
    status: int = 0
    body: str = ""
    nth: int = 1
    match: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, FaultKind):
            try:
                object.__setattr__(self, "kind", FaultKind(self.kind))
            except ValueError:
                raise ValueError(message("faults.unknown", kind=self.kind, kinds=", ".join(KINDS))) from None

    @classmethod
    def named(cls, kind: str | FaultKind, *, times: int = 1, param: int = 0) -> Fault:
        """The fault ``inject_fault(kind, times=..., param=...)`` means: ``param`` is the
        milliseconds of slow_tokens / slow_load and the chunk count of cut_stream; ``error``
        answers HTTP 500 (use :meth:`error` for more)."""
        try:
            fault_kind = FaultKind(kind)
        except ValueError:
            raise ValueError(message("faults.unknown", kind=kind, kinds=", ".join(KINDS))) from None
        if fault_kind is FaultKind.ERROR:
            return cls.error(500, times=times)
        if fault_kind in (FaultKind.SLOW_LOAD, FaultKind.SLOW_TOKENS) and param <= 0:
            raise ValueError(message("faults.needs_milliseconds", kind=fault_kind.value))
        return cls(fault_kind, times=times, param=param)

    @classmethod
    def error(cls, status: int = 500, *, body: dict[str, Any] | str | None = None, nth: int = 1,
              match: str | None = None, times: int = 1) -> Fault:
        """The ``nth`` request from now (counting only requests whose path or JSON body contains
        ``match``, when given; ``nth=0`` means every one) is answered with ``status`` and
        ``body`` (default: llama.cpp's error body for that status), ``times`` times."""
        if not 400 <= status <= 599:
            raise ValueError(message("faults.bad_status", status=status))
        text = json.dumps(body) if isinstance(body, dict) else (body or "")
        return cls(FaultKind.ERROR, times=times, status=status, body=text, nth=nth, match=match or "")

    @classmethod
    def slow_tokens(cls, delay_s: float) -> Fault:
        """Every stream chunk (of HTTP and direct streams) is sent ``delay_s`` later (0: off)."""
        return cls(FaultKind.SLOW_TOKENS, param=max(0, round(delay_s * 1000)))

    @classmethod
    def cut_stream(cls, after_chunks: int = 1, *, times: int = 1) -> Fault:
        """The next ``times`` streams end after ``after_chunks`` chunks, without their final
        events and ``[DONE]``, as when a connection drops."""
        return cls(FaultKind.CUT_STREAM, times=times, param=after_chunks)

    @classmethod
    def loop_dies(cls) -> Fault:
        """The inference loop stops at once: the server goes FAILED (and restarts if its
        ``restart`` policy says so)."""
        return cls(FaultKind.LOOP_DIES)

    @classmethod
    def assert_in_request(cls) -> Fault:
        """A GGML_ASSERT fires on the loop thread when it starts the next request."""
        return cls(FaultKind.ASSERT_IN_REQUEST)

    @classmethod
    def load_fails(cls, times: int = 1) -> Fault:
        """The next ``times`` model loads (start, restart, recovery) fail."""
        return cls(FaultKind.LOAD_FAILS, times=times)

    @classmethod
    def slow_load(cls, step_s: float) -> Fault:
        """The next load waits ``step_s`` at each progress step (stop() still cancels it)."""
        return cls(FaultKind.SLOW_LOAD, param=max(1, round(step_s * 1000)))

    @classmethod
    def slots_busy(cls) -> Fault:
        """Until ``clear_faults()``, requests that need a slot wait as if every slot were busy;
        ``health_check()`` reports DEGRADED while one waits."""
        return cls(FaultKind.SLOTS_BUSY)

    @classmethod
    def over_memory(cls) -> Fault:
        """The next load finds the model over ``memory_limit``: ``ResourceError``."""
        return cls(FaultKind.OVER_MEMORY)

    @classmethod
    def native_abort(cls) -> Fault:
        """Isolated servers: ggml's own abort (the end of every failed GGML_ASSERT) on a native
        thread of the child, which prints its assertion line and dies of SIGABRT."""
        return cls(FaultKind.NATIVE_ABORT)

    @classmethod
    def process_killed(cls) -> Fault:
        """Isolated servers: the child process is killed with SIGKILL (as the OOM killer does)."""
        return cls(FaultKind.PROCESS_KILLED)

    @classmethod
    def process_hangs(cls) -> Fault:
        """Isolated servers: the child process stops (SIGSTOP) and answers nothing; the heartbeat
        finds it hung and kills it."""
        return cls(FaultKind.PROCESS_HANGS)


def as_fault(fault: Fault | str | FaultKind, *, times: int = 1, param: int = 0) -> Fault:
    """What every ``inject_fault(fault, times=..., param=...)`` arms: a :class:`Fault` as given,
    or the one :meth:`Fault.named` makes of a name."""
    if isinstance(fault, Fault):
        return fault
    if isinstance(fault, (str, FaultKind)):
        return Fault.named(fault, times=times, param=param)
    raise TypeError(message("faults.not_a_fault", type=type(fault).__name__))


class _NativeFaults(Protocol):
    def inject_fault(self, kind: str, times: int, param: int, status: int, body: str, nth: int,
                     match: str) -> None: ...


def native_args(fault: Fault) -> tuple[str, int, int, int, str, int, str]:
    """The arguments of the native ``inject_fault`` binding (the server's and, after the model's
    name, the pool's)."""
    return fault.kind.value, fault.times, fault.param, fault.status, fault.body, fault.nth, fault.match


def arm_native(native: _NativeFaults, fault: Fault) -> None:
    """Arm ``fault`` on a native server."""
    native.inject_fault(*native_args(fault))


__all__ = ["Fault", "FaultKind", "KINDS", "as_fault", "arm_native", "native_args"]
