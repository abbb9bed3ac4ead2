"""What a direct call needs from the object it calls: a :class:`CallTarget`.

``LlamaServer``, one model of a ``ModelPool`` and the ``FakeServer`` implement it; the direct
client (``server.direct``), its asyncio twin and the OpenAI transport call nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..contract import ServerStatus
    from ..errors import LlamaProcError


class CallBatch(Protocol):
    """What one ``wait`` of a call brings (the native ``DirectCall.wait``'s result)."""

    @property
    def payloads(self) -> list[str]: ...  #: JSON texts queued since the last wait
    @property
    def done(self) -> bool: ...  #: the call is over
    @property
    def status(self) -> int: ...  #: its HTTP status (0 until known)
    @property
    def stream(self) -> bool: ...  #: it streams
    @property
    def end(self) -> str: ...  #: "running", "complete", "cancelled" or "interrupted"


class Call(Protocol):
    """One call in progress."""

    def wait(self, timeout: float) -> CallBatch: ...
    def cancel(self) -> None: ...


class CallTarget(Protocol):
    """A server-like object direct calls can reach."""

    @property
    def status(self) -> ServerStatus: ...
    @property
    def failure(self) -> LlamaProcError | None: ...
    @property
    def serving(self) -> bool:
        """True while calls can be served: a server READY; a pool's model while the pool runs
        (an unloaded model loads on demand). A 503 answer while False means stopped/failed."""
        ...

    def open_call(self, path: str, body: str, post: bool = True) -> Call:
        """Start ``POST`` (or ``GET``) ``path`` with the JSON text ``body``; raises
        ``ServerNotRunningError`` unless READY."""
        ...


__all__ = ["CallTarget", "Call", "CallBatch"]
