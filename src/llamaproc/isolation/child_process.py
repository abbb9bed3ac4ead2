"""The host's side of one isolated native object (a server or a pool): :class:`ChildOwner`
starts the child process (:mod:`llamaproc.isolation.child`), connects the channel, reads the
child's stderr, pings it, and notices its death: the exit status or signal becomes the cause,
direct calls in flight end as interrupted, and ``_on_death`` lets the subclass react.
:class:`~llamaproc.isolation.remote_server.IsolatedNative` and
:class:`~llamaproc.isolation.remote_pool.IsolatedPool` build the native interfaces on it.
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

    def __init__(self, child: _Child, handle: int) -> None:
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
            return _Batch([], True, 0, False, "interrupted")  # the child died: the call was cut short
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


class ChildOwner:
    """Owns the current child process of one isolated native object (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._stopping = False
        self._stopped = False
        self._port = 0
        self._host = "127.0.0.1"
        self._last: dict[str, Any] = {}  # properties as last seen (what a dead child still "has")

    def _create_request(self) -> tuple[Any, ...]:
        """The request that makes the native object in a new child."""
        raise NotImplementedError

    def _on_spawned(self, child: _Child) -> None:
        """Called once a new child made its native object (before start)."""

    def _on_death(self, child: _Child) -> None:
        """Called once a child died unexpectedly (its cause is known)."""

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
        try:  # from here on, any way out (Ctrl-C included) ends the child and its helpers
            channel.start()
            for target, name in ((self._read_stderr, "llamaproc-child-stderr"),
                                 (self._heartbeat, "llamaproc-heartbeat")):
                helper = threading.Thread(target=target, args=(child,), daemon=True, name=name)
                child.helpers.append(helper)
                helper.start()
            try:
                channel.request(*self._create_request(), logging.getLogger("llamaproc").getEffectiveLevel())
            except ChannelClosed:
                self._end(child)  # the reaper names the exit status first
                raise attach_log_tail(StartupError(message("isolation.child_did_not_start",
                                                           status=child.cause or "-")),
                                      list(child.stderr_tail)) from None
            with self._lock:
                self._child = child
            self._on_spawned(child)
        except BaseException:
            self._end(child)
            raise

    @staticmethod
    def _connect(proc: subprocess.Popen[bytes], address: str, key: bytes) -> Any:
        """Connects once the child listens (its socket file appears at bind(), a moment before
        listen(): refused until then)."""
        from multiprocessing.connection import Client

        deadline = time.monotonic() + 60
        while True:
            if os.path.exists(address):
                try:
                    return Client(address, family="AF_UNIX", authkey=key)
                except (ConnectionRefusedError, FileNotFoundError):
                    pass
            if proc.poll() is not None:
                tail = (proc.stderr.read() if proc.stderr else b"").decode("utf-8", "replace").splitlines()[-20:]
                raise attach_log_tail(StartupError(message("isolation.child_did_not_start", status=proc.returncode)),
                                      tail)
            if time.monotonic() > deadline:
                raise StartupError(message("isolation.child_did_not_start", status="no answer in 60 s"))
            time.sleep(0.005)

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
        shutil.rmtree(child.folder, ignore_errors=True)
        if not expected:
            lines = "\n  ".join(list(child.stderr_tail)[-8:])
            _log.error(message("isolation.child_died", cause=child.cause, lines=lines or "-"))
            self._on_death(child)

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

    def _stop_child(self) -> None:
        """Stops the native object and ends the child for good (bounded; idempotent)."""
        with self._lock:
            self._stopping = True
            child = self._child
        if child is None:
            return
        if not child.died.is_set() and not child.channel.closed:
            try:
                child.channel.request("stop", timeout=60)
                # what a stopped native object still answers (its counters), kept for later
                self._last["request_counts"] = child.channel.request("get", "request_counts", timeout=10)
            except (ChannelClosed, TimeoutError, LlamaProcError):
                pass
        self._end(child)
        with self._lock:
            self._stopped = True

    # -- what every isolated object offers ----------------------------------------------------

    @property
    def child_pid(self) -> int | None:
        child = self._live_child()
        return child.proc.pid if child is not None else None

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

    @property
    def port(self) -> int:
        return self._port or int(self._get("port", 0))

    @property
    def host(self) -> str:
        return self._host

    def call(self, path: str, body: str, post: bool = True) -> _RemoteCall:
        child = self._live_child()
        if child is None:
            raise self._lost_error()
        try:
            handle = child.channel.request("call", path, body, post)
        except ChannelClosed:
            raise self._lost_error() from None
        return _RemoteCall(child, int(handle))

    def _process_fault(self, kind: str) -> bool:
        """Acts on the faults that end or freeze the child; False for the others."""
        child = self._live_child()
        if kind == "native_abort":
            if child is not None:
                threading.Thread(target=self._ask_quietly, args=(child, "abort_native", "GGML_ASSERT(injected) "
                                 "failed: a native abort injected on purpose"), daemon=True).start()
            return True
        if kind == "process_killed":
            if child is not None:
                self._kill(child)
            return True
        if kind == "process_hangs":
            if child is not None:
                os.kill(child.proc.pid, signal.SIGSTOP)  # the whole child stops: nothing answers
            return True
        return False

    @staticmethod
    def _ask_quietly(child: _Child, *msg: Any) -> None:
        try:
            child.channel.request(*msg)
        except (ChannelClosed, LlamaProcError):
            pass

    def _get(self, name: str, default: Any) -> Any:
        """A property of the native object; once the child is gone, the last value seen."""
        try:
            value = self._ask("get", name)
        except LlamaProcError:
            return self._last.get(name, default)
        self._last[name] = value
        return value

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

    def clear_faults(self) -> None:
        self._ask("clear_faults")
