"""``python -m llamaproc serve --ray ...``: the same API from replicas on a Ray cluster.

    python -m llamaproc serve --ray model.gguf -t 2 -np 4 --max-replicas 4
    python -m llamaproc serve --ray --ray-address auto model.gguf      # join this machine's cluster
    python -m llamaproc serve --ray model.gguf --serve-config app.yaml  # write a `serve deploy` file

The llama-server flags are each replica's (``--host``/``--port`` are Serve's HTTP proxy,
127.0.0.1:8080 unless given); without ``--ray-address`` (or ``RAY_ADDRESS``) a local Ray
cluster is started for the command and shut down with it. Runs until SIGINT or SIGTERM, then
deletes the application (its replicas finish the requests in flight).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..errors import ConfigError, LlamaProcError
from ..flags import ServeMode, serve_mode
from ..messages import message
from . import _deps
from .app import ServeApp, run, write_serve_config
from .options import ScaleOptions
from .replica import flag_value

log = logging.getLogger("llamaproc.cli")


class RayServing:
    """What ``serve --ray`` runs: the application, and the local cluster when it started one."""

    def __init__(self, app: ServeApp, own_cluster: bool) -> None:
        self.app = app
        self.own_cluster = own_cluster

    def why_stopped(self) -> str | None:
        """Why the application no longer serves (it failed, or was deleted), or None."""
        serve = _deps.serve()
        overview = serve.status().applications.get(self.app.name)
        state = "DELETED" if overview is None else str(getattr(overview.status, "value", overview.status))
        if state in ("RUNNING", "DEPLOYING"):
            return None
        return message("cli.ray.app_stopped", app=self.app.name, status=state,
                       detail="" if overview is None else overview.message)

    def stop(self) -> None:
        """Delete the application (its replicas drain), and the local cluster if this started it."""
        try:
            self.app.stop()
        finally:
            if self.own_cluster:
                _deps.serve().shutdown()
                _deps.ray().shutdown()


def serve_on_ray(args: argparse.Namespace) -> int:
    """``serve --ray``: see the module docstring. Returns the command's exit status."""
    from ..__main__ import serve_until_signalled

    flags = [str(a) for a in args.llama_server_flags]
    host = flag_value(flags, "--host") or os.environ.get("LLAMA_ARG_HOST") or "127.0.0.1"
    try:
        port = int(flag_value(flags, "--port") or os.environ.get("LLAMA_ARG_PORT") or 8080)
        mode = serve_mode(flags, use_env=True, router=args.router)
        if mode is ServeMode.POOL:
            raise ConfigError(message("cli.ray.needs_model"))
        if mode is ServeMode.NO_MODEL:
            from ..default_model import DEFAULT_MODEL, fetch_model

            flags = ["--model", str(fetch_model(DEFAULT_MODEL)), *flags]
        options = ScaleOptions(min_replicas=args.min_replicas, max_replicas=max(args.max_replicas or 0,
                                                                                args.min_replicas, 1),
                               replica_cpus=args.replica_cpus)
        if args.serve_config:
            path = write_serve_config(args.serve_config, flags, options, name=args.ray_app, host=host, port=port,
                                      isolation=args.isolation)
            print(message("cli.ray.config_written", path=path))
            return 0
    except (LlamaProcError, ValueError) as exc:
        print(message("cli.error", error=exc), file=sys.stderr)
        return 2

    def start() -> RayServing:
        ray = _deps.ray()
        own = False
        if not ray.is_initialized():
            own = args.ray_address is None and not os.environ.get("RAY_ADDRESS")
            ray.init(address=args.ray_address)
        try:
            app = run(flags, options, name=args.ray_app, host=host, port=port, isolation=args.isolation,
                      allow_unauthenticated_remote=args.allow_unauthenticated_remote)
            try:  # a signal from here on must not leave the app running
                log.info(message("cli.ray.serving", app=app.name, url=app.url, min=options.min_replicas,
                                 max=options.max_replicas))
                return RayServing(app, own)
            except BaseException:
                app.stop()
                raise
        except BaseException:
            if own:
                ray.shutdown()
            raise

    return serve_until_signalled(start, lambda served: served.why_stopped())
