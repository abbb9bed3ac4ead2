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

import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from typing import Any

from .._native import core
from ..errors import LlamaProcError, NativeError, StartupError, attach_log_tail
from ..messages import message
from .channel import Channel, ChannelClosed

_log = logging.getLogger("llamaproc")

#: Seconds without an answer to the heartbeat after which a child counts as hung.
HEARTBEAT_TIMEOUT_S = 5.0
_HEARTBEAT_EVERY_S = 0.5


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _Batch:
    """A direct call's batch, as the native one (``llamaproc.direct.target.CallBatch``)."""

    __slots__ = ("payloads", "done", "status", "stream", "end")

    def __init__(self, payloads: list[str], done: bool, status: int, stream: bool, end: str) -> None:
        self.payloads, self.done, self.status, self.stream, self.end = payloads, done, status, stream, end


class _RemoteCall:
    """A direct call running in the child: ``wait()`` and ``cancel()`` as the native DirectCall."""

    def __init__(self, owner: IsolatedNative, child: _Child, handle: int) -> None:
        self._owner = owner
        self._child = child
        self._handle = handle
        self._over = False

    def wait(self, timeout: float) -> _Batch:
        if self._over:
            return _Batch([], True, 0, False, "cancelled")
        try:
            batch = self._child.channel.request("call_wait", self._handle, timeout)
        except ChannelClosed:
            self._over = True
            return self._owner.lost_call_batch()
        if batch["done"]:
            self._over = True
        return _Batch(**batch)

    def cancel(self) -> None:
        if self._over:
            return
        self._over = True
        try:
            self._child.channel.request("call_cancel", self._handle)
        except ChannelClosed:
            pass


class _Child:
    """One child process and its channel."""

    def __init__(self, proc: subprocess.Popen[bytes], channel: Channel, folder: str) -> None:
        self.proc = proc
        self.channel = channel
        self.folder = folder
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self.died = threading.Event()
        self.pongs = threading.Event()  # set by each answer to the heartbeat
        self.cause = ""
        self.helpers: list[threading.Thread] = []  # joined by _end(): nothing outlives the child
        self.reaped = threading.Event()  # set when the reaper is done (folder removed, logged)


class IsolatedNative:
    """``core.EmbeddedServer``'s interface, served by a child process (see the module docstring)."""

    def __init__(self, argv: list[str], **options: Any) -> None:
        self._argv = list(argv)
        self._options = options
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._stopping = False
        self._stopped = False
        self._port = 0
        self._host = "127.0.0.1"
        self._changes = 0  # bumped on each child death, so wait_change() returns
        self._last: dict[str, Any] = {}  # properties as last seen (what a dead child still "has")
        self._changed = threading.Condition(self._lock)
        self._spawn()

    # -- the child's life -------------------------------------------------------------------

    def _spawn(self) -> None:
        folder = tempfile.mkdtemp(prefix="llamaproc-")  # mode 0700: only this user reaches the socket
        address = os.path.join(folder, "channel")
        key = secrets.token_bytes(32)
        proc = subprocess.Popen([sys.executable, "-m", "llamaproc.isolation.child", address],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True, close_fds=True)
        try:
            assert proc.stdin is not None
            proc.stdin.write(key.hex().encode() + b"\n")
            proc.stdin.close()
            conn = self._connect(proc, address, key)
        except BaseException:
            proc.kill()
            proc.wait()
            shutil.rmtree(folder, ignore_errors=True)
            raise
        child_box: list[_Child] = []
        channel = Channel(conn, lambda msg: self._on_message(child_box[0], msg),
                          on_close=lambda: self._on_channel_closed(child_box[0]), name="llamaproc-isolated")
        child = _Child(proc, channel, folder)
        child_box.append(child)
        channel.start()
        for target, name in ((self._read_stderr, "llamaproc-child-stderr"), (self._heartbeat, "llamaproc-heartbeat")):
            helper = threading.Thread(target=target, args=(child,), daemon=True, name=name)
            child.helpers.append(helper)
            helper.start()
        argv = list(self._argv)
        if self._port:
            argv += ["--port", str(self._port)]  # a new child binds the port the first one resolved
        try:
            channel.request("create", argv, self._options, logging.getLogger("llamaproc").getEffectiveLevel())
        except ChannelClosed:
            self._end(child)
            raise attach_log_tail(StartupError(message("isolation.child_did_not_start", status=child.cause or "-")),
                                  list(child.stderr_tail)) from None
        except BaseException:
            self._end(child)
            raise
        with self._lock:
            self._child = child

    @staticmethod
    def _connect(proc: subprocess.Popen[bytes], address: str, key: bytes) -> Any:
        from multiprocessing.connection import Client

        deadline = time.monotonic() + 60
        while not os.path.exists(address):
            if proc.poll() is not None:
                tail = (proc.stderr.read() if proc.stderr else b"").decode("utf-8", "replace").splitlines()[-20:]
                raise attach_log_tail(StartupError(message("isolation.child_did_not_start", status=proc.returncode)),
                                      tail)
            if time.monotonic() > deadline:
                raise StartupError(message("isolation.child_did_not_start", status="no answer in 60 s"))
            time.sleep(0.005)
        return Client(address, family="AF_UNIX", authkey=key)

    def _read_stderr(self, child: _Child) -> None:
        stream = child.proc.stderr
        if stream is None:
            return
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    child.stderr_tail.append(line)
        finally:
            stream.close()

    def _heartbeat(self, child: _Child) -> None:
        """Pings the child; one that does not answer within HEARTBEAT_TIMEOUT_S is killed."""
        last_answer = time.monotonic()
        while not child.died.wait(_HEARTBEAT_EVERY_S):
            try:
                child.channel.send("ping", time.monotonic())
            except ChannelClosed:
                return
            if child.pongs.wait(HEARTBEAT_TIMEOUT_S):
                child.pongs.clear()
                last_answer = time.monotonic()
                continue
            if child.died.is_set():
                return
            silent = time.monotonic() - last_answer
            child.cause = message("isolation.child_hung", seconds=round(silent, 1))
            _log.error(child.cause)
            self._kill(child)
            return

    def _on_message(self, child: _Child, msg: tuple[Any, ...]) -> None:
        if msg[0] == "pong":
            child.pongs.set()
        elif msg[0] == "log":
            _, name, level, text = msg
            logging.getLogger(name).log(level, text)

    def _on_channel_closed(self, child: _Child) -> None:
        """The channel closed: the child exited (or is about to). Records why, once."""
        threading.Thread(target=self._reap, args=(child,), daemon=True, name="llamaproc-reap").start()

    def _reap(self, child: _Child) -> None:
        try:
            self._reap_once(child)
        finally:
            child.reaped.set()

    def _reap_once(self, child: _Child) -> None:
        try:
            status = child.proc.wait(5)
        except subprocess.TimeoutExpired:
            self._kill(child)
            status = child.proc.wait()
        time.sleep(0.05)  # the stderr reader takes the last lines
        with self._lock:
            expected = self._stopping or child is not self._child
            if not child.cause:
                if status < 0:
                    child.cause = message("isolation.child_killed", signal=_signal_name(-status))
                else:
                    child.cause = message("isolation.child_exited", status=status)
            child.died.set()
            self._changes += 1
            self._changed.notify_all()
        shutil.rmtree(child.folder, ignore_errors=True)
        if not expected:
            lines = "\n  ".join(list(child.stderr_tail)[-8:])
            _log.error(message("isolation.child_died", cause=child.cause, lines=lines or "-"))

    @staticmethod
    def _kill(child: _Child) -> None:
        try:
            child.proc.kill()
        except OSError:
            pass

    def _end(self, child: _Child, timeout: float = 30.0) -> None:
        """Ends a child for good: asks it to exit, then SIGTERM, then SIGKILL; nothing is left."""
        try:
            child.channel.send("exit")
        except ChannelClosed:
            pass
        try:
            child.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            child.proc.terminate()
            try:
                child.proc.wait(2)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        child.channel.close()
        child.reaped.wait(10)
        for helper in child.helpers:
            helper.join(5)
        child.channel.join(5)
        shutil.rmtree(child.folder, ignore_errors=True)

    def _live_child(self) -> _Child | None:
        with self._lock:
            child = self._child
        if child is None or child.died.is_set() or child.channel.closed:
            return None
        return child

    def _ask(self, *msg: Any) -> Any:
        child = self._live_child()
        if child is None:
            raise self._lost_error()
        try:
            return child.channel.request(*msg)
        except ChannelClosed:
            child.died.wait(6)
            raise self._lost_error() from None

    def _lost_error(self) -> LlamaProcError:
        with self._lock:
            child = self._child
        if child is not None:
            child.died.wait(6)  # the reaper names the signal or exit status
        cause = child.cause if child is not None and child.cause else message("isolation.child_gone")
        return attach_log_tail(NativeError(message("isolation.failed", cause=cause)), self._stderr_tail(child))

    @staticmethod
    def _stderr_tail(child: _Child | None) -> list[str]:
        return list(child.stderr_tail)[-20:] if child is not None else []

    def lost_call_batch(self) -> _Batch:
        """What a direct call in flight gets when the child died: interrupted."""
        return _Batch([], True, 0, False, "interrupted")

    # -- the native interface ---------------------------------------------------------------

    @property
    def child_pid(self) -> int | None:
        child = self._live_child()
        return child.proc.pid if child is not None else None

    def start(self) -> None:
        self._ask("start")
        self._port = int(self._ask("get", "port"))
        self._host = str(self._ask("get", "host"))

    def wait_ready(self, timeout: float) -> bool:
        return bool(self._ask("wait_ready", timeout))

    def restart_instance(self) -> None:
        if self._live_child() is not None:
            self._ask("restart_instance")
            return
        with self._lock:
            old = self._child
            if self._stopping:
                return
        if old is not None:
            old.died.wait(10)
        self._spawn()
        self._ask("start")

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            child = self._child
        if child is None:
            return
        if not child.died.is_set() and not child.channel.closed:
            try:
                child.channel.request("stop", timeout=60)
            except (ChannelClosed, TimeoutError, LlamaProcError):
                pass
        self._end(child)
        with self._lock:
            self._stopped = True
            self._changes += 1
            self._changed.notify_all()

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

    def _get(self, name: str, default: Any) -> Any:
        """A property of the native server; once the child is gone, the last value seen."""
        try:
            value = self._ask("get", name)
        except LlamaProcError:
            return self._last.get(name, default)
        self._last[name] = value
        return value

    @property
    def port(self) -> int:
        return self._port or int(self._get("port", 0))

    @property
    def host(self) -> str:
        return self._host

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

    def log_tail(self, max_lines: int = 40) -> list[str]:
        child = self._live_child()
        if child is None:
            with self._lock:
                gone = self._child
            if gone is not None:
                gone.died.wait(6)
            return self._stderr_tail(gone)[-max_lines:]
        try:
            return list(child.channel.request("log_tail", max_lines))
        except ChannelClosed:
            return self._stderr_tail(child)[-max_lines:]

    def call(self, path: str, body: str, post: bool = True) -> _RemoteCall:
        child = self._live_child()
        if child is None:
            raise self._lost_error()
        try:
            handle = child.channel.request("call", path, body, post)
        except ChannelClosed:
            raise self._lost_error() from None
        return _RemoteCall(self, child, int(handle))

    def inject_fault(self, kind: str, times: int = 1, param: int = 0, status: int = 0, body: str = "",
                     nth: int = 1, match: str = "") -> None:
        child = self._live_child()
        if kind == "native_abort":
            if child is not None:
                threading.Thread(target=self._ask_quietly, args=(child, "abort_native", "GGML_ASSERT(injected) "
                                 "failed: a native abort injected on purpose"), daemon=True).start()
            return
        if kind == "process_killed":
            if child is not None:
                self._kill(child)
            return
        if kind == "process_hangs":
            if child is not None:
                os.kill(child.proc.pid, signal.SIGSTOP)  # the whole child stops: nothing answers
            return
        self._ask("inject_fault", kind, times, param, status, body, nth, match)

    @staticmethod
    def _ask_quietly(child: _Child, *msg: Any) -> None:
        try:
            child.channel.request(*msg)
        except (ChannelClosed, LlamaProcError):
            pass

    def armed_faults(self) -> list[tuple[str, int, int]]:
        try:
            return [(str(k), int(n), int(p)) for k, n, p in self._ask("armed_faults")]
        except LlamaProcError:
            return []

    def clear_faults(self) -> None:
        self._ask("clear_faults")

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

    def child_rss_bytes(self) -> int:
        """The child's resident memory (0 when it is not running)."""
        pid = self.child_pid
        if pid is None:
            return 0
        try:
            with open(f"/proc/{pid}/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0
