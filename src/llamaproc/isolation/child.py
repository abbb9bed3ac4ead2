"""The isolated child: ``python -m llamaproc.isolation.child SOCKET`` (started by the host, never
by hand). It reads the channel key from stdin, listens on SOCKET (in the host's private folder),
accepts the host's authenticated connection, and then runs one native server as the host asks:
each request names a method of the native ``EmbeddedServer`` (or a direct call's wait/cancel)
and runs on its own thread, so that long waits never block the others.

It serves HTTP on the configured host and port itself. Its ``llamaproc`` log records go to the
host's logger. It exits when the host asks, when the channel closes, or when the host process is
gone (its parent changes), so that it never outlives the host by more than about half a second.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection, Listener
from typing import Any

# What the host may call on each kind of native object (everything else is refused).
_METHODS = {
    "server": frozenset({"start", "wait_ready", "restart_instance", "stop", "wait_change", "log_tail", "inject_fault",
                         "armed_faults", "clear_faults", "query_metrics", "query_load"}),
    "pool": frozenset({"start", "stop", "models", "load", "unload", "add", "remove", "swap", "reload_sources",
                       "query_metrics", "log_tail", "inject_fault", "clear_faults"}),
}
_PROPERTIES = {
    "server": frozenset({"state", "port", "host", "load_progress", "abandoned_instances", "failure", "memory",
                         "request_counts"}),
    "pool": frozenset({"running", "port", "host", "max_loaded", "autoload", "memory_budget", "reserved_bytes",
                       "instances_alive", "request_counts"}),
}


class _ForwardLogs(logging.Handler):
    """Hands each ``llamaproc`` log record to the host."""

    def __init__(self, channel: Any) -> None:
        super().__init__()
        self._channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._channel.send("log", record.name, record.levelno, record.getMessage())
        except Exception:  # noqa: BLE001 - the host is gone: nobody reads the log
            pass


class _Child:
    def __init__(self) -> None:
        self.native: Any = None
        self.kind = ""
        self.subscriptions: dict[int, Any] = {}
        self.calls: dict[int, Any] = {}
        self.next_call = 1
        self.lock = threading.Lock()
        self.exit = threading.Event()

    def handle(self, channel: Any, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "ping":
            channel.send("pong", msg[1])
            return
        if kind == "exit":
            self.exit.set()
            return
        if kind == "request":
            threading.Thread(target=self._serve, args=(channel, msg[1], msg[2], msg[3:]), daemon=True,
                             name=f"llamaproc-child:{msg[2]}").start()

    def _serve(self, channel: Any, request_id: int, what: str, args: tuple[Any, ...]) -> None:
        from ..errors import LlamaProcError, NativeError
        from ..messages import message

        try:
            value = self._run(what, args)
            channel.answer(request_id, True, value)
        except LlamaProcError as exc:
            channel.answer(request_id, False, exc)
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the host, typed
            channel.answer(request_id, False, NativeError(message("isolation.child_error", kind=type(exc).__name__,
                                                                  error=exc)))

    def _run(self, what: str, args: tuple[Any, ...]) -> Any:
        from .._native import core
        from ..messages import message

        if what == "create":
            kind, positional, options, hard_limit, log_level = args
            if hard_limit > 0:
                _limit_private_memory(hard_limit)
            logging.getLogger("llamaproc").setLevel(log_level)
            from .. import _logging

            _logging.sync_log_level()
            self.native = (core.EmbeddedServer if kind == "server" else core.ModelPool)(*positional, **options)
            self.kind = kind
            return os.getpid()
        native = self.native
        if what == "get":
            (name,) = args
            if name not in _PROPERTIES[self.kind]:
                raise ValueError(message("isolation.refused", what=name))
            value = getattr(native, name)
            return value.name if name == "state" else value
        if what in _METHODS[self.kind]:
            return getattr(native, what)(*args)
        if what == "subscribe":
            with self.lock:
                handle = self.next_call
                self.next_call += 1
                self.subscriptions[handle] = native.subscribe()
            return handle
        if what == "events":
            handle, timeout = args  # the next events of a subscription (None once it closed)
            subscription = self.subscriptions[handle]
            first = subscription.pop(timeout)
            if first is None:
                return None if subscription.closed else []
            out = [first]
            while len(out) < 256:
                more = subscription.pop(0.0)
                if more is None:
                    break
                out.append(more)
            return out
        if what == "call":
            call = native.call(*args)
            with self.lock:
                handle = self.next_call
                self.next_call += 1
                self.calls[handle] = call
            return handle
        if what == "call_wait":
            handle, timeout = args
            with self.lock:
                call = self.calls.get(handle)
            if call is None:
                return {"payloads": [], "done": True, "status": 0, "stream": False, "end": "cancelled"}
            batch = call.wait(timeout)
            if batch.done:
                with self.lock:
                    self.calls.pop(handle, None)
            return {"payloads": list(batch.payloads), "done": batch.done, "status": batch.status,
                    "stream": batch.stream, "end": batch.end}
        if what == "call_cancel":
            (handle,) = args
            with self.lock:
                call = self.calls.pop(handle, None)
            if call is not None:
                call.cancel()
            return None
        if what == "abort_native":
            _abort_like_ggml(args[0])
            return None
        raise ValueError(message("isolation.refused", what=what))


#: Room for thread stacks (8 MiB of private memory each) above a hard memory limit.
STACK_ALLOWANCE = 256 << 20


def _limit_private_memory(limit: int) -> int:
    """Holds this process's private writable memory (RLIMIT_DATA: heap and private anonymous
    mappings, not file mappings such as mmapped weights) to what it holds now plus ``limit``
    plus STACK_ALLOWANCE; returns the limit set."""
    import resource

    held = 0
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmData:"):
                    held = int(line.split()[1]) * 1024
    except OSError:  # no /proc: the limit counts from zero (stricter, never looser)
        pass
    total = held + limit + STACK_ALLOWANCE
    resource.setrlimit(resource.RLIMIT_DATA, (total, total))
    return total


def _abort_like_ggml(reason: str) -> None:
    """A real native abort on a native thread: ggml's own ggml_abort() (the function every
    GGML_ASSERT ends in), called on a thread no llamaproc guard covers, so it prints its
    GGML_ASSERT-style line to stderr and calls abort(), as an assertion in a compute kernel does."""
    import ctypes

    from .._native import core

    lib = ctypes.CDLL(core.__file__)
    lib.ggml_abort.restype = None
    lib.ggml_abort.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]

    def die() -> None:
        lib.ggml_abort(b"llamaproc/isolation/child.py", 1, reason.replace("%", "%%").encode())

    t = threading.Thread(target=die, name="llamaproc-abort")
    t.start()
    t.join()


def _watch_parent(parent: int, done: threading.Event) -> None:
    """Ends the child once its parent process is gone (even killed with SIGKILL)."""
    while not done.wait(0.2):
        if os.getppid() != parent:
            os._exit(3)


def _accept(listener: Listener) -> Connection:
    """The host's connection; a peer without the key is refused (and the next one accepted)."""
    from multiprocessing import AuthenticationError

    for _ in range(16):
        try:
            return listener.accept()
        except (AuthenticationError, EOFError, OSError):
            continue
    raise SystemExit(4)


def main() -> int:
    # Ctrl-C in the host's terminal is the host's to handle: it stops this child deliberately
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    address = sys.argv[1]
    key = bytes.fromhex(sys.stdin.readline().strip())
    done = threading.Event()
    threading.Thread(target=_watch_parent, args=(parent, done), daemon=True, name="llamaproc-parent").start()
    old_umask = os.umask(0o177)  # the socket file: owner only (its folder is owner-only too)
    try:
        listener = Listener(address, family="AF_UNIX", authkey=key)
    finally:
        os.umask(old_umask)
    conn = _accept(listener)
    listener.close()

    from .channel import Channel

    child = _Child()
    channel = Channel(conn, lambda msg: child.handle(channel, msg), on_close=child.exit.set,
                      name="llamaproc-child-channel")
    channel.start()
    logger = logging.getLogger("llamaproc")
    logger.addHandler(_ForwardLogs(channel))
    logger.propagate = False
    child.exit.wait()
    done.set()
    if child.native is not None:
        child.native.stop()  # bounded: joins the native threads, frees the model
    from .. import _logging

    _logging.flush_logs()
    time.sleep(0.05)  # let the last log records reach the host
    channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
