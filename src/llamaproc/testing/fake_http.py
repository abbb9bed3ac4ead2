"""The fake server's HTTP front: llama-server's framing (JSON bodies, SSE streams with ``[DONE]``)."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from ..contract import ServerStatus

if TYPE_CHECKING:
    from .fake_server import FakeServer


def _sse(event: Any) -> bytes:
    return b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"


def handler_for(fake: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "llama.cpp"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
            pass  # quiet, as the real server is by default

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            answer = fake.answer(method, self.path.split("?", 1)[0], raw, dict(self.headers.items()))
            if not answer.stream:
                data = json.dumps(answer.body, ensure_ascii=False).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            delay, cut = fake.stream_faults()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Accel-Buffering", "no")
            self.end_headers()
            try:
                for i, event in enumerate(answer.events or []):
                    if cut >= 0 and i >= cut:
                        break
                    if delay and fake.stopping.wait(delay):
                        break
                    if fake._status is not ServerStatus.READY:
                        self._chunk(_sse({"error": {"code": 503, "message": "the model failed and is not serving",
                                                    "type": "unavailable_error"}}))
                        break
                    self._chunk(_sse(event))
                else:
                    if answer.done_marker:
                        self._chunk(b"data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def do_GET(self) -> None:  # noqa: N802 - stdlib's name
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802 - stdlib's name
            self._serve("POST")

    return Handler


__all__ = ["handler_for"]
