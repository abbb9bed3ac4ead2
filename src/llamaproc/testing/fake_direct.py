"""Direct calls to the fake server: the same answers as HTTP, released as the stream faults say."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..contract import ServerStatus
from .fake_routes import Answer

if TYPE_CHECKING:
    from .fake_server import FakeServer


@dataclass
class FakeBatch:
    """What one ``wait`` brings (the fields of the native ``CallBatch``)."""

    payloads: list[str] = field(default_factory=list)
    done: bool = False
    status: int = 0
    stream: bool = False
    end: str = "running"


class FakeCall:
    """A direct call to the fake: its events, released as slow_tokens/cut_stream say."""

    def __init__(self, fake: FakeServer, answer: Answer) -> None:
        self._fake = fake
        self._answer = answer
        self._cancelled = threading.Event()
        if answer.stream:
            delay, cut = fake.stream_faults()
            events = answer.events or []
            self._cut = 0 <= cut < len(events)
            self._events = deque(json.dumps(e, ensure_ascii=False) for e in (events[:cut] if self._cut else events))
            self._delay = delay
        else:
            self._events = deque([json.dumps(answer.body, ensure_ascii=False)])
            self._cut, self._delay = False, 0.0
        self._next_at = time.monotonic() + self._delay

    def wait(self, timeout: float) -> FakeBatch:
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while self._events and not self._cancelled.is_set():
            now = time.monotonic()
            if now < self._next_at:
                if out or now >= deadline:
                    break
                self._cancelled.wait(min(self._next_at, deadline) - now)
                continue
            out.append(self._events.popleft())
            self._next_at = now + self._delay
        done = not self._events or self._cancelled.is_set()
        failed = self._fake.status is not ServerStatus.READY and self._answer.stream and bool(self._events)
        end = ("cancelled" if self._cancelled.is_set() else "interrupted" if (self._cut or failed) and done
               else "complete" if done else "running")
        return FakeBatch(out, done, self._answer.status, self._answer.stream, end)

    def cancel(self) -> None:
        self._cancelled.set()


__all__ = ["FakeCall", "FakeBatch"]
