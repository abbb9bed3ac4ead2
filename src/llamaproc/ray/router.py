"""The ingress of a pool on Ray Serve: one deployment per model, chosen by the request's ``"model"``.

Each model of a :class:`~llamaproc.PoolConfig` is a deployment of its own (its replicas each
run a one-model :class:`~llamaproc.ModelPool`), so each model scales on its own load and no
replica ever swaps models: Serve's multiplexing would keep an LRU of models per replica beside
llamaproc's, and would scale all models as one deployment.

:class:`ModelRouter` reads the model the way llama-server's router does (the JSON body's
``"model"``, else the ``?model=`` query of a GET) and streams the chosen deployment's answer back
unchanged. A request naming no model goes to ``PoolConfig.default_model`` when there is one; one
naming an unknown model goes to any model's replica, whose pool answers it exactly as
llama-server's router does (HTTP 400 ``model '...' not found``, ``model name is missing from the
request``). ``GET /v1/models`` and ``GET /models`` list the models of every deployment.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

from .replica import LlamaReplica, ReplicaLoad, http_app


class ModelRouter:
    """The ingress deployment of a pool (see the module docstring).

    Args:
        routes: Model name or alias -> the deployment that serves it.
        default: The deployment for requests that name no model (None: any, which answers 400).
        handles: Deployment name -> its handle (Serve passes handles for the bound deployments).
    """

    def __init__(self, routes: dict[str, str], default: str | None, handles: dict[str, Any]) -> None:
        self._routes = dict(routes)
        self._handles = dict(handles)
        self._default = default
        self._first = next(iter(self._handles))

    def route(self, method: str, query: bytes, body: bytes) -> str:
        """The deployment a request goes to."""
        model: object = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                model = parsed.get("model")
        if model is None and method == "GET":
            model = urllib.parse.parse_qs(query.decode("latin-1")).get("model", [None])[0]
        if model is None:
            return self._default or self._first
        return self._routes.get(model, self._first) if isinstance(model, str) else self._first

    def _forward(self, deployment: str, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]],
                 body: bytes) -> AsyncIterator[dict[str, Any] | bytes]:
        handle = self._handles[deployment].options(stream=True)
        answer: AsyncIterator[dict[str, Any] | bytes] = handle.forward.remote(method, path, query, headers, body)
        return answer

    async def _model_list(self, path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> AsyncIterator[
            dict[str, Any] | bytes]:
        """``GET /v1/models`` / ``GET /models``: the models of every deployment, in order."""
        first: dict[str, Any] | None = None
        merged: dict[str, Any] | None = None
        for deployment in self._handles:
            parts = [item async for item in self._forward(deployment, "GET", path, query, headers, b"")]
            start = parts[0] if parts and isinstance(parts[0], dict) else None
            body = b"".join(p for p in parts if isinstance(p, bytes))
            if start is None or start["status"] != 200:  # an error: as the deployment answered it
                for part in parts:
                    yield part
                return
            listing = json.loads(body)
            if first is None:
                first, merged = start, listing
            elif isinstance(merged, dict) and isinstance(listing, dict):
                for key in ("data", "models"):
                    if isinstance(merged.get(key), list) and isinstance(listing.get(key), list):
                        merged[key] = merged[key] + listing[key]
        out = json.dumps(merged, separators=(",", ":")).encode()
        assert first is not None
        headers_out = [(k, str(len(out)).encode() if k.lower() == b"content-length" else v)
                       for k, v in first["headers"]]
        yield {"status": 200, "headers": headers_out}
        yield out

    def __serve_build_asgi_app__(self) -> Any:
        return http_app(self._answer)

    def _answer(self, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]],
                body: bytes) -> AsyncIterator[dict[str, Any] | bytes]:
        if method == "GET" and path in ("/v1/models", "/models") and b"model=" not in query:
            return self._model_list(path, query, headers)
        return self._forward(self.route(method, query, body), method, path, query, headers, body)


class StatusBoard:
    """Where every replica of an application posts its load (:func:`llamaproc.ray.status`).

    Args:
        stale_s: A replica that posted nothing for this long is gone (killed, or removed).
    """

    def __init__(self, stale_s: float) -> None:
        self._stale_s = stale_s
        self._loads: dict[tuple[str, str], ReplicaLoad] = {}

    def report(self, load: ReplicaLoad) -> None:
        self._loads[(load.deployment, load.replica)] = load

    def forget(self, deployment: str, replica: str) -> None:
        self._loads.pop((deployment, replica), None)

    def snapshot(self) -> list[ReplicaLoad]:
        now = time.time()
        self._loads = {k: v for k, v in self._loads.items() if now - v.time <= self._stale_s}
        return sorted(self._loads.values(), key=lambda load: (load.deployment, load.replica))


__all__ = ["ModelRouter", "StatusBoard", "LlamaReplica"]
