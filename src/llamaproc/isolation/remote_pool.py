"""The host's side of an isolated model pool: :class:`IsolatedPool` has the native
``ModelPool``'s interface and runs the whole pool (its models, decode gate, byte budget, queue and
swaps) in one child process, so ``ModelPool``'s Python layer (events, restart policies, direct
calls, ``pool.server(name)``) works unchanged.

When the child dies, every model that was loaded or loading gets a FAILED status event with the
cause (so each model's restart policy acts as for an in-process failure), and a new child starts
at once on the same port with the same models, including those added, removed or swapped since
the pool started. Calls made in between wait for the new child (at most a minute).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import Any

from .._native import core
from ..errors import LlamaProcError
from ..messages import message
from .channel import ChannelClosed
from .child_process import ChildOwner, _Child, _log

_RESPAWN_WAIT_S = 60.0


class _Events:
    """``PoolEvents``' interface (``pop``, ``closed``): the events of the current child, and
    those the host makes up when a child dies."""

    def __init__(self) -> None:
        self._queue: deque[str] = deque()
        self._cv = threading.Condition()
        self._closed = False

    def push(self, events: list[str]) -> None:
        with self._cv:
            self._queue.extend(events)
            self._cv.notify_all()

    def pop(self, timeout: float) -> str | None:
        with self._cv:
            self._cv.wait_for(lambda: self._queue or self._closed, timeout)
            return self._queue.popleft() if self._queue else None

    @property
    def closed(self) -> bool:
        with self._cv:
            return self._closed and not self._queue

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()


class IsolatedPool(ChildOwner):
    """``core.ModelPool``'s interface, served by a child process (see the module docstring)."""

    def __init__(self, router_argv: list[str], use_env: bool, models: list[dict[str, Any]], **options: Any) -> None:
        super().__init__()
        self._router_argv = list(router_argv)
        self._use_env = use_env
        self._models = {str(m["name"]): dict(m) for m in models}  # what a new child starts with
        self._options = options
        self._events = _Events()
        self._status: dict[str, str] = {}  # each model's last status, from the events
        self._started = False
        self._serving = threading.Event()  # a started child serves (cleared while one is replaced)
        self._spawn()

    def _create_request(self) -> tuple[Any, ...]:
        argv = list(self._router_argv)
        if self._port:
            argv += ["--port", str(self._port)]  # a new child binds the port the first one resolved
        return ("create", "pool", (argv, self._use_env, list(self._models.values())), self._options, 0)

    def _on_spawned(self, child: _Child) -> None:
        handle = child.channel.request("subscribe")  # before start(): no event is missed
        pump = threading.Thread(target=self._pump, args=(child, handle), daemon=True, name="llamaproc-pool-events")
        child.helpers.append(pump)
        pump.start()

    def _pump(self, child: _Child, handle: int) -> None:
        while True:
            try:
                events = child.channel.request("events", handle, 0.5)
            except (ChannelClosed, LlamaProcError):
                return
            if events is None:
                return
            for text in events:
                self._track(text)
            self._events.push(events)

    def _track(self, text: str) -> None:
        try:
            event = json.loads(text)
        except ValueError:
            return
        status = (event.get("data") or {}).get("status")
        if event.get("event") == "status_change" and isinstance(status, str):
            with self._lock:
                self._status[str(event.get("model", ""))] = status

    def _on_death(self, child: _Child) -> None:
        self._serving.clear()
        with self._lock:
            live = [name for name, status in self._status.items() if status in ("loaded", "loading")]
            for name in live:
                self._status[name] = "unloaded"
            restart = self._started and not self._stopping
        error = message("isolation.failed", cause=child.cause)
        self._events.push([json.dumps({"model": name, "event": "status_change",
                                       "data": {"status": "unloaded", "exit_code": 1, "failed": True, "error": error}})
                           for name in live])
        if restart:
            threading.Thread(target=self._replace_child, daemon=True, name="llamaproc-pool-respawn").start()

    def _replace_child(self) -> None:
        try:
            self._spawn()
            self._ask("start")
        except LlamaProcError as exc:
            _log.error(message("isolation.pool_respawn_failed", error=exc))
            return
        self._serving.set()

    def _ask(self, *msg: Any) -> Any:
        if self._live_child() is None and self._started and not self._stopping:
            self._serving.wait(_RESPAWN_WAIT_S)  # a new child is on its way
        return super()._ask(*msg)

    # -- the native interface ---------------------------------------------------------------

    def start(self) -> None:
        self._ask("start")
        self._port = int(self._ask("get", "port"))
        self._host = str(self._ask("get", "host"))
        self._started = True
        self._serving.set()

    def stop(self) -> None:
        self._stop_child()
        self._serving.set()  # nobody waits for a new child any more
        self._events.close()

    def subscribe(self) -> _Events:
        return self._events

    @property
    def running(self) -> bool:
        with self._lock:
            if self._stopped or self._stopping:
                return False
        return bool(self._get("running", False))

    @property
    def max_loaded(self) -> int:
        return int(self._get("max_loaded", 0))

    @property
    def autoload(self) -> bool:
        return bool(self._get("autoload", True))

    @property
    def memory_budget(self) -> int:
        return int(self._get("memory_budget", 0))

    def _child_gone_for_good(self) -> bool:
        with self._lock:
            return self._stopped

    @property
    def reserved_bytes(self) -> int:
        # a stopped pool's child is gone, and everything it held with it
        return 0 if self._child_gone_for_good() else int(self._get("reserved_bytes", 0))

    @property
    def instances_alive(self) -> int:
        return 0 if self._child_gone_for_good() else int(self._get("instances_alive", 0))

    @property
    def request_counts(self) -> dict[str, int]:
        return dict(self._get("request_counts", {}))

    def models(self) -> list[dict[str, Any]]:
        return list(self._ask("models"))

    def load(self, name: str, timeout: float) -> None:
        self._ask("load", name, timeout)

    def unload(self, name: str, drain_timeout: float, wait: bool = True) -> Any:
        return self._ask("unload", name, drain_timeout, wait)

    def add(self, model: dict[str, Any]) -> None:
        self._ask("add", model)
        self._models[str(model["name"])] = dict(model)

    def remove(self, name: str, drain_timeout: float) -> None:
        self._ask("remove", name, drain_timeout)
        self._models.pop(name, None)

    def swap(self, name: str, args: list[str], mode: str = "auto", timeout: float = 600.0) -> Any:
        result = self._ask("swap", name, args, mode, timeout)
        if name in self._models:
            self._models[name]["args"] = list(args)
        return result

    def reload_sources(self) -> tuple[list[str], list[str], list[str]]:
        added, removed, changed = self._ask("reload_sources")
        return list(added), list(removed), list(changed)

    def query_metrics(self, name: str, timeout: float) -> dict[str, Any] | None:
        return self._ask("query_metrics", name, timeout)  # type: ignore[no-any-return]

    def inject_fault(self, name: str, kind: str, times: int = 1, param: int = 0, status: int = 0, body: str = "",
                     nth: int = 1, match: str = "") -> None:
        if not self._process_fault(kind):
            self._ask("inject_fault", name, kind, times, param, status, body, nth, match)


def make_pool(isolation: str) -> Any:
    """The native pool class for ``isolation``."""
    return IsolatedPool if isolation == "process" else core.ModelPool
