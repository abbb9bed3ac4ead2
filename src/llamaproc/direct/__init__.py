"""Direct calls: the server's API from Python, in-process (``server.direct``, ``server.adirect``)."""

from ._call import AsyncStream, Stream
from .client import AsyncDirectClient, DirectClient

__all__ = ["DirectClient", "AsyncDirectClient", "Stream", "AsyncStream"]
