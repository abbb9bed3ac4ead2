"""The channel between a host and its isolated child: one authenticated local connection
(``multiprocessing.connection`` over a unix socket in a private folder, a random key checked
by its HMAC handshake), carrying numbered requests, their answers, and one-way notes (log records).

Both ends use :class:`Channel`: ``request()`` sends and waits for the answer with the same
number; a reader thread hands answers to their waiters and everything else to ``on_message``.
When the other end goes away every waiter gets :class:`ChannelClosed` at once. Reading begins
with ``start()``, once the owner is ready for messages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ..messages import message


class ChannelClosed(ConnectionError):
    """The other end is gone (it exited, crashed or closed the channel)."""


class _Waiter:
    __slots__ = ("done", "ok", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.value: Any = None


class Channel:
    """Numbered requests and answers over one connection, from any number of threads."""

    def __init__(self, conn: Connection, on_message: Callable[[tuple[Any, ...]], None],
                 on_close: Callable[[], None] | None = None, name: str = "llamaproc-channel") -> None:
        self._conn = conn
        self._on_message = on_message
        self._on_close = on_close
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._waiters: dict[int, _Waiter] = {}
        self._next_id = 1
        self._closed = False
        self._reader = threading.Thread(target=self._read, name=name, daemon=True)

    def start(self) -> None:
        """Starts reading (once the owner can take messages)."""
        self._reader.start()

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, *msg: Any) -> None:
        """Sends one message; ChannelClosed when the other end is gone."""
        if self._closed:
            raise ChannelClosed(message("isolation.channel_closed"))
        try:
            with self._send_lock:
                self._conn.send(msg)
        except (OSError, EOFError, ValueError) as exc:
            raise ChannelClosed(message("isolation.channel_closed")) from exc

    def request(self, *msg: Any, timeout: float | None = None) -> Any:
        """Sends ``("request", id, *msg)`` and returns the answer's value (the other end answers
        with :meth:`answer`); raises what it raised, or ChannelClosed, or TimeoutError."""
        waiter = _Waiter()
        with self._lock:
            if self._closed:
                raise ChannelClosed(message("isolation.channel_closed"))
            request_id = self._next_id
            self._next_id += 1
            self._waiters[request_id] = waiter
        try:
            self.send("request", request_id, *msg)
            if not waiter.done.wait(timeout):
                raise TimeoutError(message("isolation.no_answer", timeout=timeout))
        finally:
            with self._lock:
                self._waiters.pop(request_id, None)
        if not waiter.ok:
            raise waiter.value
        return waiter.value

    def answer(self, request_id: int, ok: bool, value: Any) -> None:
        """Answers request ``request_id`` with a value (``ok``) or an exception to raise."""
        try:
            self.send("answer", request_id, ok, value)
        except ChannelClosed:
            pass  # the asker is gone: nobody waits for this answer

    def join(self, timeout: float) -> None:
        """Waits for the reader thread to end (after close() or the other end's exit)."""
        if self._reader.is_alive() and self._reader is not threading.current_thread():
            self._reader.join(timeout)

    def close(self) -> None:
        try:
            self._conn.close()
        except OSError:
            pass
        self._finish()

    def _finish(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiters = list(self._waiters.values())
            self._waiters.clear()
        for w in waiters:
            w.ok, w.value = False, ChannelClosed(message("isolation.channel_closed"))
            w.done.set()
        if self._on_close is not None:
            self._on_close()

    def _read(self) -> None:
        try:
            while True:
                msg = self._conn.recv()
                if msg[0] == "answer":
                    _, request_id, ok, value = msg
                    with self._lock:
                        waiter = self._waiters.get(request_id)
                    if waiter is not None:
                        waiter.ok, waiter.value = ok, value
                        waiter.done.set()
                else:
                    self._on_message(msg)
        except (OSError, EOFError, ValueError, TypeError):
            pass
        finally:
            self._finish()
