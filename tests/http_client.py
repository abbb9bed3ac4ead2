"""A minimal HTTP client for the tests (standard library only; loopback only)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit


def _conn(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    assert parts.hostname in ("127.0.0.1", "localhost", "::1"), "tests talk to loopback only"
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout), path


def request(method: str, url: str, body: object | None = None, *, headers: dict | None = None,
            timeout: float = 60.0) -> tuple[int, dict | str]:
    conn, path = _conn(url, timeout)
    try:
        data = None if body is None else json.dumps(body)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=data, headers=hdrs)
        res = conn.getresponse()
        raw = res.read().decode("utf-8", "replace")
        try:
            return res.status, json.loads(raw)
        except ValueError:
            return res.status, raw
    finally:
        conn.close()


def get(url: str, **kw) -> tuple[int, dict | str]:
    return request("GET", url, **kw)


def post(url: str, body: object, **kw) -> tuple[int, dict | str]:
    return request("POST", url, body, **kw)


def stream_events(url: str, body: dict, *, timeout: float = 60.0) -> Iterator[dict | str]:
    """POST with stream=true; yield each server-sent event's JSON (or '[DONE]')."""
    conn, path = _conn(url, timeout)
    try:
        conn.request("POST", path, body=json.dumps({**body, "stream": True}),
                     headers={"Content-Type": "application/json"})
        res = conn.getresponse()
        assert res.status == 200, res.read()
        for raw in res:
            line = raw.decode("utf-8").strip()
            if not line.startswith("data:"):
                continue
            payload = line[len("data:"):].strip()
            yield payload if payload == "[DONE]" else json.loads(payload)
    finally:
        conn.close()
