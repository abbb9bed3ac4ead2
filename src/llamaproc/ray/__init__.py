"""llamaproc on Ray Serve: replicas of a server (or of each model of a pool) that come and go
with their load, spread over the machines of a Ray cluster, behind one OpenAI-compatible endpoint.

    from llamaproc import ServerConfig
    from llamaproc.ray import ScaleOptions, run

    app = run(ServerConfig(model_path="model.gguf", threads=2, parallel=4),
              ScaleOptions(min_replicas=1, max_replicas=4))
    app.url        # http://127.0.0.1:8000: /v1/chat/completions etc., streams included
    app.status()   # replicas per deployment, and each replica's slots, queue and machine
    app.stop()

Each replica is a Ray actor, a process of its own, that starts llamaproc in-process in its
constructor: a native crash takes one replica with it and Serve starts another. Serve's HTTP
proxy hands each request to a replica, which forwards its bytes to its server on a loopback port
and streams the answer back unchanged. Serve adds replicas when the servers' busy slots and
waiting requests call for them (:mod:`llamaproc.ray.autoscaling`) and removes idle ones after
their streams finished. ``build_app()`` gives the Serve application for ``serve.run`` and
``serve_config()`` / ``write_serve_config()`` a config file for ``serve run`` / ``serve deploy``;
``python -m llamaproc serve --ray MODEL.gguf`` does the same from the command line.

Needs the extra: ``pip install "llamaproc[ray]"`` (importing this module works without it;
using it raises :class:`~llamaproc.errors.DependencyMissingError` naming the extra).
See docs/scaling.md for when to use replicas, RPC workers or more slots.
"""

from __future__ import annotations

from .app import (AppStatus, DeploymentScale, ServeApp, app_args, app_builder, build_app, run, serve_config, status,
                  write_serve_config)
from .autoscaling import SlotLoadPolicy
from .options import ScaleOptions
from .replica import ReplicaLoad

__all__ = ["build_app", "run", "status", "ScaleOptions", "ServeApp", "AppStatus", "DeploymentScale", "ReplicaLoad",
           "SlotLoadPolicy", "app_builder", "app_args", "serve_config", "write_serve_config"]
