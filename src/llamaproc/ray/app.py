"""Build, run and watch llamaproc applications on Ray Serve."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import errors
from ..config import ServerConfig, check_isolation, is_loopback
from ..errors import ConfigError, LlamaProcError, ResourceError, StartupError, WaitTimeoutError
from ..faults import Fault, FaultKind
from ..messages import message
from ..pool.config import ModelSpec, PoolConfig
from ..recovery import RestartPolicy
from . import _deps
from .autoscaling import SlotLoadPolicy
from .options import ScaleOptions
from .replica import LlamaReplica, ReplicaLoad, ReplicaSpec, flag_value
from .router import ModelRouter, StatusBoard

_log = logging.getLogger("llamaproc.ray")

#: Deployment names: the model server of one ServerConfig, a pool's router, the status board.
SERVER_DEPLOYMENT = "llamaproc"
ROUTER_DEPLOYMENT = "llamaproc-router"
BOARD_DEPLOYMENT = "llamaproc-status"
DEFAULT_APP = "llamaproc"

#: llama-server's request timeout (``--timeout``) when the flags give none: no request of a
#: server outlives it, so a replica being removed waits that long for its streams at most.
LLAMA_SERVER_TIMEOUT_S = 600.0

Config = ServerConfig | PoolConfig | Sequence[str]


def model_deployment(name: str) -> str:
    """The deployment name of a pool's model ``name``."""
    return "model-" + re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _number_flag(flags: Sequence[str], *names: str) -> float | None:
    value = flag_value(flags, *names)
    try:
        return None if value is None else float(value)
    except ValueError:
        return None  # llama.cpp's parser refuses it with its own message when the replica starts


def _deployment_options(options: ScaleOptions, *, parallel: int, threads: int | None,
                        extra_args: Sequence[str]) -> dict[str, Any]:
    """``serve.deployment`` options of a model deployment."""
    timeout = _number_flag(extra_args, "-to", "--timeout")
    grace = options.graceful_shutdown_timeout_s
    if grace is None:
        grace = timeout if timeout is not None and timeout > 0 else LLAMA_SERVER_TIMEOUT_S
    cpus = options.replica_cpus if options.replica_cpus is not None else float(threads or 1)
    actor: dict[str, Any] = {"num_cpus": cpus}
    if options.replica_gpus:
        actor["num_gpus"] = options.replica_gpus
    found: dict[str, Any] = {
        "ray_actor_options": actor,
        "max_ongoing_requests": options.max_ongoing_requests or max(4 * max(parallel, 1), 8),
        "graceful_shutdown_timeout_s": grace,
        "graceful_shutdown_wait_loop_s": 0.5,
        "health_check_period_s": options.health_check_period_s,
        "health_check_timeout_s": options.health_check_timeout_s,
    }
    if options.autoscaling:
        found["autoscaling_config"] = {
            "min_replicas": options.min_replicas, "max_replicas": options.max_replicas,
            "initial_replicas": options.start_replicas, "upscale_delay_s": options.upscale_delay_s,
            "downscale_delay_s": options.downscale_delay_s, "look_back_period_s": options.look_back_period_s,
            # how often replicas and handles push their metrics to the controller (Serve 2.x reads
            # this field; the environment variables its deprecation names are not read yet)
            "metrics_interval_s": min(options.metrics_interval_s, options.look_back_period_s / 2),
        }
        if options.scale_on == "slots":
            found["autoscaling_config"]["policy"] = {"policy_function": SlotLoadPolicy,
                                                     "policy_kwargs": {"target_load": options.target_load}}
        else:  # Serve's default policy on requests in flight
            found["autoscaling_config"]["target_ongoing_requests"] = options.target_load * max(parallel, 1)
    else:
        found["num_replicas"] = options.min_replicas
    return found


def _one_model_pool(pool: PoolConfig, name: str) -> PoolConfig:
    """The pool one replica of model ``name`` runs: that model only, loaded at start and pinned."""
    spec = dataclasses.replace(pool.models[name], load_on_startup=True, pinned=True)
    default = pool.default_model
    serves_default = default is not None and (default == name or default in spec.aliases)
    return dataclasses.replace(pool, models={name: spec}, max_loaded=1, memory_budget=None, idle_unload_s=None,
                               host="127.0.0.1", port=0, default_model=name if serves_default else None)


def build_app(config: Config, options: ScaleOptions | None = None, *, isolation: str = "none") -> Any:
    """A Ray Serve application (``serve.run(app)``) serving ``config`` from autoscaled replicas.

    Each replica is a Ray actor that starts llamaproc in its own process, in-process there;
    Serve's HTTP proxy serves llama-server's OpenAI-compatible API, byte for byte (SSE streams
    included) for every route the server answers.

    Args:
        config: A :class:`~llamaproc.ServerConfig` (one deployment, named ``llamaproc``), a
            :class:`~llamaproc.PoolConfig` (a deployment per model, ``model-<name>``, behind a
            router that reads each request's ``"model"``), or llama-server flags naming one
            model (as ``LlamaServer.from_args`` takes them). ``host`` and ``port`` are the
            replica's loopback address (chosen per replica); Serve's proxy is the public one.
            Model paths must exist on every machine of the cluster.
        options: Replicas, autoscaling and per-replica resources (:class:`ScaleOptions`).
        isolation: With llama-server flags: as ``ServerConfig.isolation`` (``"process"`` runs
            llama.cpp in a child process of each replica, restarted in place when it crashes).

    Returns:
        A ``ray.serve`` Application, for ``serve.run(app, name=...)`` or :func:`run`.

    Raises:
        DependencyMissingError: Ray Serve is not installed (``pip install "llamaproc[ray]"``).
        ConfigError: a pool reads its models from a folder, a preset or the model cache
            (list them in ``PoolConfig.models``), or ``config`` is none of the above.
    """
    with _serve_config_checks():
        return _build_app(config, options, isolation=isolation)


@contextlib.contextmanager
def _serve_config_checks() -> Iterator[None]:
    """Serve 2.60 warns that ``AutoscalingConfig.metrics_interval_s`` is deprecated in favour of
    two environment variables, but still pushes metrics every ``metrics_interval_s`` (10 s by
    default) and reads no such variable: a look-back of a few seconds needs the field. That
    warning (and the one comparing the two fields) is left out where llamaproc builds and reads
    Serve configs; every other warning passes."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The `metrics_interval_s` field in AutoscalingConfig is deprecated",
                                category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"`look_back_period_s` .* must be greater than",
                                category=FutureWarning)
        yield


def _build_app(config: Config, options: ScaleOptions | None = None, *, isolation: str = "none") -> Any:
    serve = _deps.serve()
    options = options or ScaleOptions()
    board = serve.deployment(StatusBoard, name=BOARD_DEPLOYMENT, ray_actor_options={"num_cpus": 0}, num_replicas=1,
                             logging_config={"enable_access_log": False}).bind(max(5.0, 5 * options.metrics_interval_s))
    faults = tuple(options.faults)
    if not isinstance(config, PoolConfig):
        if isinstance(config, ServerConfig):
            spec = ReplicaSpec(config, faults=faults, metrics_interval_s=options.metrics_interval_s)
            found = _deployment_options(options, parallel=config.parallel, threads=config.threads,
                                        extra_args=config.extra_args)
        else:
            if not _is_flags(config):
                raise ConfigError(message("ray.config_type", type=type(config).__name__))
            flags = tuple(str(a) for a in config)
            check_isolation(isolation)
            spec = ReplicaSpec(flags, faults=faults, metrics_interval_s=options.metrics_interval_s,
                               isolation=isolation)
            parallel = _number_flag(flags, "-np", "--parallel")
            threads = _number_flag(flags, "-t", "--threads")
            found = _deployment_options(options, parallel=int(parallel) if parallel and parallel > 0 else 4,
                                        threads=int(threads) if threads and threads > 0 else None, extra_args=flags)
        ingress = serve.deployment(serve.ingress()(LlamaReplica), name=SERVER_DEPLOYMENT, **found)
        return ingress.bind(spec, board)
    for field, value in (("models_dir", config.models_dir), ("models_preset", config.models_preset),
                         ("use_model_cache", config.use_model_cache or None)):
        if value is not None:
            raise ConfigError(message("ray.pool_sources", field=field))
    routes: dict[str, str] = {}
    handles: dict[str, Any] = {}
    for name, model in config.models.items():
        deployment = model_deployment(name)
        spec = ReplicaSpec(_one_model_pool(config, name), model=name, faults=faults,
                           metrics_interval_s=options.metrics_interval_s)
        found = _deployment_options(options, parallel=model.parallel, threads=model.threads,
                                    extra_args=[*config.extra_args, *model.extra_args])
        handles[deployment] = serve.deployment(LlamaReplica, name=deployment, **found).bind(spec, board)
        routes.update({alias: deployment for alias in (name, *model.aliases)})
    default = routes.get(config.default_model) if config.default_model is not None else None
    router = serve.deployment(serve.ingress()(ModelRouter), name=ROUTER_DEPLOYMENT,
                              ray_actor_options={"num_cpus": 0}, max_ongoing_requests=10_000,
                              autoscaling_config=None, num_replicas=1)
    return router.bind(routes, default, handles)


def _is_flags(config: object) -> bool:
    return isinstance(config, Sequence) and not isinstance(config, (str, bytes)) and all(
        isinstance(a, (str, os.PathLike)) for a in config)


def _replica_resources(config: Config, options: ScaleOptions) -> tuple[int, float, float]:
    """Replicas started at deploy time, and the CPUs and GPUs they reserve together."""
    if isinstance(config, PoolConfig):
        threads = [m.threads for m in config.models.values()]
    elif isinstance(config, ServerConfig):
        threads = [config.threads]
    else:
        count = _number_flag([str(a) for a in config], "-t", "--threads")
        threads = [int(count) if count and count > 0 else None]
    replicas = options.start_replicas * len(threads)
    cpus = sum(options.replica_cpus if options.replica_cpus is not None else float(t or 1) for t in threads)
    return replicas, cpus * options.start_replicas, options.replica_gpus * replicas


def _has_api_key(config: Config) -> bool:
    if isinstance(config, (ServerConfig, PoolConfig)):
        return config.api_key is not None
    flags = [os.fspath(a) for a in config]
    return flag_value(flags, "--api-key", "--api-key-file") is not None or bool(os.environ.get("LLAMA_ARG_API_KEY"))


def check_capacity(config: Config, options: ScaleOptions) -> None:
    """Raise :class:`~llamaproc.errors.ResourceError` when the replicas started at deploy time
    need more CPUs or GPUs than the connected Ray cluster has in all (Serve would wait for them
    forever); more ``max_replicas`` than fit is logged, as a cluster autoscaler may add nodes."""
    ray = _deps.ray()
    total = ray.cluster_resources()
    replicas, cpus, gpus = _replica_resources(config, options)
    have_cpus, have_gpus = float(total.get("CPU", 0.0)), float(total.get("GPU", 0.0))
    if cpus > have_cpus + 1e-9 or gpus > have_gpus + 1e-9:
        raise ResourceError(message("ray.capacity", replicas=replicas, cpus=cpus, gpus=gpus, have_cpus=have_cpus,
                                    have_gpus=have_gpus))
    most = cpus / max(options.start_replicas, 1) * options.max_replicas
    if most > have_cpus + 1e-9:
        _log.warning(message("ray.capacity_max", max=options.max_replicas, cpus=most, have_cpus=have_cpus))


_ERROR_NAME = re.compile(r"llamaproc\.errors\.(\w+):\s*(.*)")


def deploy_error(app: str, exc: BaseException, details: Sequence[str] = ()) -> LlamaProcError:
    """The llamaproc error a replica's constructor raised, from Serve's deploy failure ``exc``
    and the deployments' status ``details`` (its class, its message and the native log lines
    it carried); StartupError with Serve's words otherwise."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join([str(exc), *details]))
    found = _ERROR_NAME.findall(text)
    cls: type[LlamaProcError] = StartupError
    cause = text.strip().splitlines()[-1] if text.strip() else type(exc).__name__
    if found:
        name, cause = found[-1]
        candidate = getattr(errors, name, None)
        if isinstance(candidate, type) and issubclass(candidate, LlamaProcError):
            cls = candidate
    lines = text.splitlines()
    tail: list[str] = []
    for i, line in enumerate(lines):
        if line.strip() == message("errors.native_log_tail", lines="").strip():
            tail = [entry.strip() for entry in lines[i + 1:] if entry.startswith("  ")]
    error = cls(message("ray.deploy_failed", app=app, cause=cause))
    return errors.attach_log_tail(error, tail)


@dataclass(frozen=True)
class DeploymentScale:
    """One deployment of a llamaproc application on Serve.

    Attributes:
        name: The deployment (``llamaproc``, ``model-<name>``, ``llamaproc-router``).
        status: Serve's status of it (``HEALTHY``, ``UPDATING``, ``UPSCALING``, ...).
        replicas: Replicas by Serve's state (``RUNNING``, ``STARTING``, ``STOPPING``, ...).
        running: Replicas RUNNING.
        loads: The last load each running replica posted (its model, node, slots and queue).
        message: Serve's message about it (why it is unhealthy, or waits for resources).
    """

    name: str
    status: str
    replicas: dict[str, int]
    loads: tuple[ReplicaLoad, ...]
    message: str = ""

    @property
    def running(self) -> int:
        return int(self.replicas.get("RUNNING", 0))


@dataclass(frozen=True)
class AppStatus:
    """A llamaproc application on Serve, as :func:`status` found it.

    Attributes:
        name: The application's name.
        status: Serve's status (``RUNNING``, ``DEPLOYING``, ``DEPLOY_FAILED``, ...).
        deployments: Its model deployments (not the router or the status board).
        message: Serve's message (why the deploy failed, ...).
    """

    name: str
    status: str
    deployments: dict[str, DeploymentScale]
    message: str = ""

    @property
    def replicas(self) -> int:
        """Running replicas of all model deployments."""
        return sum(d.running for d in self.deployments.values())


def status(name: str = DEFAULT_APP, *, timeout: float = 10.0) -> AppStatus:
    """Replica counts, per-replica load and model placement of the application ``name``
    (needs a connection to the cluster: ``ray.init(address=...)``)."""
    serve = _deps.serve()
    with _serve_config_checks():
        overview = serve.status().applications.get(name)
    if overview is None:
        raise errors.ServerNotRunningError(message("ray.no_app", app=name))
    loads: list[ReplicaLoad] = []
    if BOARD_DEPLOYMENT in overview.deployments:
        loads = list(serve.get_deployment_handle(BOARD_DEPLOYMENT, name).snapshot.remote().result(timeout_s=timeout))
    deployments = {}
    for deployment, info in overview.deployments.items():
        if deployment in (BOARD_DEPLOYMENT, ROUTER_DEPLOYMENT):
            continue
        states = {str(getattr(k, "value", k)): int(v) for k, v in info.replica_states.items()}
        deployments[deployment] = DeploymentScale(deployment, str(getattr(info.status, "value", info.status)), states,
                                                  tuple(x for x in loads if x.deployment == deployment),
                                                  str(info.message))
    return AppStatus(name, str(getattr(overview.status, "value", overview.status)), deployments, str(overview.message))


class ServeApp:
    """A llamaproc application :func:`run` deployed: its URL, :meth:`status` and :meth:`stop`."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url

    def status(self, *, timeout: float = 10.0) -> AppStatus:
        """See :func:`status`."""
        return status(self.name, timeout=timeout)

    def wait_for_replicas(self, count: int, *, deployment: str | None = None, timeout: float = 120.0) -> AppStatus:
        """Wait until ``count`` replicas run (of ``deployment``, else of every model deployment
        together) and no other is starting or stopping; WaitTimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            now = self.status()
            chosen = [d for n, d in now.deployments.items() if deployment is None or n == deployment]
            if sum(d.running for d in chosen) == count and all(
                    sum(d.replicas.values()) == d.running for d in chosen):
                return now
            if time.monotonic() > deadline:
                raise WaitTimeoutError(message("ray.replicas_timeout", count=count, timeout=timeout,
                                               states=", ".join(f"{d.name}: {d.replicas}" for d in chosen)))
            time.sleep(0.5)

    def stop(self) -> None:
        """Delete the application: its replicas drain (requests in flight finish), then stop."""
        _deps.serve().delete(self.name)

    def __enter__(self) -> ServeApp:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ServeApp {self.name} {self.url}>"


def run(config: Config, options: ScaleOptions | None = None, *, name: str = DEFAULT_APP, route_prefix: str = "/",
        host: str = "127.0.0.1", port: int = 8000, address: str | None = None, isolation: str = "none",
        allow_unauthenticated_remote: bool = False) -> ServeApp:
    """Deploy ``config`` on Ray Serve and return once its first replicas serve.

    Connects to the Ray cluster at ``address`` (``"auto"``: the one this machine belongs to;
    None: ``RAY_ADDRESS``, else a new local one) unless this process already is, starts Serve
    with its HTTP proxy on ``host:port`` unless it runs, and runs :func:`build_app`'s app
    as ``name`` under ``route_prefix`` (``isolation``: as for :func:`build_app`). The
    OpenAI-compatible API is at ``ServeApp.url``. Serve's proxy checks no key: a ``host`` other
    than loopback needs an ``api_key`` in the config (each replica checks it), or
    ``allow_unauthenticated_remote=True``.

    Raises:
        DependencyMissingError: Ray Serve is not installed.
        ConfigError: a non-loopback ``host`` without an API key (see above), or a bad config.
        ResourceError: the replicas to start need more CPUs/GPUs than the cluster has.
        ModelLoadError, ConfigError, StartupError, ...: a replica failed to start (the class
            its server raised, with the native log's last lines in ``log_tail``); the failed
            application is deleted, as is one whose deploy an interrupt (Ctrl-C) cut short.
    """
    ray = _deps.ray()
    serve = _deps.serve()
    options = options or ScaleOptions()
    if not is_loopback(host) and not _has_api_key(config) and not allow_unauthenticated_remote:
        raise ConfigError(message("config.remote_without_api_key", host=host))
    app = build_app(config, options, isolation=isolation)  # validates before touching the cluster
    if not ray.is_initialized():
        ray.init(address=address)
    check_capacity(config, options)
    serve.start(http_options={"host": host, "port": port})
    try:
        with _serve_config_checks():
            serve.run(app, name=name, route_prefix=route_prefix)
    except Exception as exc:  # noqa: BLE001 - Serve reports a failed deploy as RuntimeError & co
        with _serve_config_checks():
            overview = serve.status().applications.get(name)
        details = [] if overview is None else [d.message for d in overview.deployments.values() if d.message]
        serve.delete(name)  # a failed deploy leaves nothing behind (Serve would keep it, failed)
        raise deploy_error(name, exc, details) from exc
    except BaseException:  # Ctrl-C while deploying: nothing is left half-started
        serve.delete(name)
        raise
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return ServeApp(name, f"http://{shown}:{port}{route_prefix.rstrip('/')}")


# -- Serve config files (``serve run``, ``serve deploy``) --------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, (Fault, RestartPolicy)):
        fields = dataclasses.asdict(value)
        if isinstance(value, Fault):
            fields["kind"] = value.kind.value
        if isinstance(value, RestartPolicy):
            fields = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
        return fields
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def app_args(config: Config, options: ScaleOptions | None = None, *, isolation: str = "none") -> dict[str, Any]:
    """The ``args`` of a Serve config file that :func:`app_builder` turns back into this app
    (``isolation``: for llama-server flags, as in :func:`build_app`)."""
    options = options or ScaleOptions()
    args: dict[str, Any] = {"scale": _fields(options)}
    if isinstance(config, ServerConfig):
        args["server"] = _fields(config)
    elif isinstance(config, PoolConfig):
        pool = _fields(config)
        pool["models"] = {name: _fields(spec) for name, spec in config.models.items()}
        args["pool"] = pool
    else:
        args["flags"] = [os.fspath(a) for a in config]
        args["isolation"] = isolation
    return args


def _restart(value: Any) -> RestartPolicy | None:
    if value is None:
        return None
    fields = dict(value)
    if "backoff_s" in fields:
        fields["backoff_s"] = tuple(fields["backoff_s"])
    return RestartPolicy(**fields)


def app_builder(args: Mapping[str, Any]) -> Any:
    """Serve's application builder (``import_path: llamaproc.ray:app_builder``): the app of
    :func:`build_app` from a config file's ``args`` (what :func:`app_args` writes: ``server``,
    ``pool`` or ``flags``, and ``scale``)."""
    scale = dict(args.get("scale") or {})
    scale["faults"] = tuple(Fault(**{**f, "kind": FaultKind(f["kind"])}) for f in scale.get("faults", ()))
    options = ScaleOptions(**scale)
    if "server" in args:
        server = dict(args["server"])
        server["restart"] = _restart(server.get("restart"))
        return build_app(ServerConfig(**server), options)
    if "pool" in args:
        pool = dict(args["pool"])
        pool["restart"] = _restart(pool.get("restart"))
        pool["models"] = {name: ModelSpec(**{**spec, "restart": _restart(spec.get("restart"))})
                          for name, spec in dict(pool.get("models") or {}).items()}
        return build_app(PoolConfig(**pool), options)
    if "flags" in args:
        return build_app([str(a) for a in args["flags"]], options, isolation=str(args.get("isolation", "none")))
    raise ConfigError(message("ray.builder_args", keys=", ".join(sorted(map(str, args))) or "-"))


def serve_config(config: Config, options: ScaleOptions | None = None, *, name: str = DEFAULT_APP,
                 route_prefix: str = "/", host: str = "127.0.0.1", port: int = 8000,
                 isolation: str = "none") -> dict[str, Any]:
    """A Serve config file's content (``serve run FILE``, ``serve deploy FILE``) for this app."""
    return {"proxy_location": "EveryNode", "http_options": {"host": host, "port": port},
            "applications": [{"name": name, "route_prefix": route_prefix, "import_path": "llamaproc.ray:app_builder",
                              "args": app_args(config, options, isolation=isolation)}]}


def write_serve_config(path: str | os.PathLike[str], config: Config, options: ScaleOptions | None = None,
                       **where: Any) -> Path:
    """Write :func:`serve_config` as YAML to ``path`` (``serve run PATH`` serves it)."""
    yaml = _deps._import("yaml")
    out = Path(path)
    out.write_text(yaml.safe_dump(serve_config(config, options, **where), sort_keys=False), encoding="utf-8")
    return out


__all__ = ["build_app", "run", "status", "ServeApp", "AppStatus", "DeploymentScale", "app_builder", "app_args",
           "serve_config", "write_serve_config", "check_capacity", "model_deployment"]
