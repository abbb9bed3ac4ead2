"""The host's side of an isolated server: :class:`IsolatedNative` has the native
``EmbeddedServer``'s methods and properties, and runs the real one in a child process
(:mod:`llamaproc.isolation.child`). ``LlamaServer`` uses it in place of the native object, so
its watchdog, restart policy, events, health, metrics and direct API stay as they are.

What the host sees when the child dies (abort, segfault, SIGKILL, the OOM killer, an exit):
the state is FAILED at once, ``failure`` names the signal or exit status and the child's last
stderr lines (ggml prints its GGML_ASSERT line there before it aborts), direct calls in flight end
as interrupted, and ``restart_instance()`` starts a new child on the same port. A child that
stops answering the heartbeat is killed and handled the same way.
"""

from __future__ import annotations

from typing import Any

from .._native import core
from ..errors import LlamaProcError
from ..messages import message
from .channel import ChannelClosed
from .child_process import HEARTBEAT_TIMEOUT_S, ChildOwner, _log

__all__ = ["IsolatedNative", "HEARTBEAT_TIMEOUT_S"]


class IsolatedNative(ChildOwner):
    """``core.EmbeddedServer``'s interface, served by a child process (see the module docstring)."""

    def __init__(self, argv: list[str], *, hard_limit_bytes: int = 0, **options: Any) -> None:
        super().__init__()
        self._argv = list(argv)
        self._options = options
        self._hard_limit_bytes = hard_limit_bytes  # > 0: the child's RLIMIT_DATA (see child.py)
        self._spawn()

    def _create_request(self) -> tuple[Any, ...]:
        argv = list(self._argv)
        if self._port:
            argv += ["--port", str(self._port)]  # a new child binds the port the first one resolved
        return ("create", "server", (argv,), self._options, self._hard_limit_bytes)

    def start(self) -> None:
        self._ask("start")
        self._port = int(self._ask("get", "port"))
        self._host = str(self._ask("get", "host"))

    def wait_ready(self, timeout: float) -> bool:
        return bool(self._ask("wait_ready", timeout))

    def restart_instance(self) -> None:
        child = self._live_child()
        if child is not None and int(self._get("abandoned_instances", 0)) == 0:
            self._ask("restart_instance")
            return
        if child is not None:
            # the child gave up on an instance's teardown (its threads stuck in native code):
            # only a new process gets that memory and those threads back
            _log.warning(message("isolation.recycled"))
            self._end(child)
        with self._lock:
            old = self._child
            if self._stopping:
                return
        if old is not None:
            old.died.wait(10)
        self._spawn()
        self._ask("start")

    def stop(self) -> None:
        if self._live_child() is not None:
            try:  # what a stopped native server still answers: the load faults for its next start
                self._last["armed_faults"] = self._ask("armed_faults")
            except LlamaProcError:
                pass
        self._stop_child()

    def wait_change(self, seen: int, timeout: float) -> int:
        child = self._live_child()
        if child is None:
            return seen + 1
        try:
            return int(child.channel.request("wait_change", seen, timeout))
        except ChannelClosed:
            child.died.wait(6)
            return seen + 1

    @property
    def state(self) -> Any:
        with self._lock:
            stopped, stopping, child = self._stopped, self._stopping, self._child
        if stopped:
            return core.NativeState.stopped
        if child is None or child.died.is_set() or child.channel.closed:
            return core.NativeState.stopping if stopping else core.NativeState.failed
        try:
            return getattr(core.NativeState, child.channel.request("get", "state"))
        except (ChannelClosed, LlamaProcError):
            return core.NativeState.stopping if stopping else core.NativeState.failed

    @property
    def failure(self) -> tuple[str, str] | None:
        child = self._live_child()
        if child is None:
            with self._lock:
                gone = self._child
                stopping = self._stopping
            if stopping or gone is None:
                return None
            gone.died.wait(6)  # the reaper names the signal or exit status
            return ("internal", message("isolation.failed", cause=gone.cause or message("isolation.child_gone")))
        try:
            value = child.channel.request("get", "failure")
        except ChannelClosed:
            return self.failure
        return None if value is None else (str(value[0]), str(value[1]))

    @property
    def load_progress(self) -> float:
        return float(self._get("load_progress", 0.0))

    @property
    def abandoned_instances(self) -> int:
        return int(self._get("abandoned_instances", 0))

    @property
    def memory(self) -> dict[str, Any] | None:
        return self._get("memory", None)  # type: ignore[no-any-return]

    @property
    def request_counts(self) -> dict[str, int]:
        return self._get("request_counts", {})  # type: ignore[no-any-return]

    def inject_fault(self, kind: str, times: int = 1, param: int = 0, status: int = 0, body: str = "",
                     nth: int = 1, match: str = "") -> None:
        if not self._process_fault(kind):
            self._ask("inject_fault", kind, times, param, status, body, nth, match)

    def armed_faults(self) -> list[tuple[str, int, int]]:
        try:
            armed = self._ask("armed_faults")
        except LlamaProcError:
            armed = self._last.get("armed_faults", [])
        return [(str(k), int(n), int(p)) for k, n, p in armed]

    def query_metrics(self, timeout: float) -> dict[str, Any] | None:
        """The loop's counters; None when it cannot answer (as the native one: not serving)."""
        try:
            return self._ask("query_metrics", timeout)  # type: ignore[no-any-return]
        except LlamaProcError:
            return None

    def query_load(self, timeout: float) -> dict[str, int] | None:
        try:
            return self._ask("query_load", timeout)  # type: ignore[no-any-return]
        except LlamaProcError:
            return None
