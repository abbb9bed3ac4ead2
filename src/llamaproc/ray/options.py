"""ScaleOptions: how many replicas, when to add and remove them, and what each one holds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import _int_field
from ..errors import ConfigError
from ..faults import Fault
from ..messages import message


#: What ``ScaleOptions.scale_on`` accepts.
SCALE_ON = ("slots", "requests")


def _number(name: str, value: object, *, positive: bool = False, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (
            positive and value == 0):
        if positive:
            raise ConfigError(message("ray.not_positive", name=name, value=value))
        raise ConfigError(message("ray.not_non_negative", name=name, value=value))


@dataclass(frozen=True, kw_only=True)
class ScaleOptions:
    """How a llamaproc application runs on Ray Serve (see :func:`llamaproc.ray.build_app`).

    Every replica is a Ray actor (its own process, anywhere in the cluster) that starts the
    server in-process in its constructor. Serve adds a replica when the replicas' own load
    says so and removes one, after letting its requests finish, when they are idle.

    Attributes:
        min_replicas: Replicas kept even when idle (per model for a pool).
        max_replicas: The most replicas (per model for a pool). ``min == max`` turns
            autoscaling off.
        initial_replicas: Replicas started at deploy time (None: ``min_replicas``).
        target_load: Scale so that each replica carries about this share of its slots:
            ``(busy slots + requests waiting for a slot + requests queued in Serve) /
            (replicas * slots per replica)``. 1.0 (the default) adds a replica once requests
            wait for a slot, removes one once the rest could take its load.
        upscale_delay_s: The load must call for more replicas this long before one is added.
        downscale_delay_s: ... for fewer replicas this long before one is removed.
        look_back_period_s: The load is averaged over this window.
        replica_cpus: Logical CPUs Ray reserves per replica (None: ``threads``, else 1).
        replica_gpus: GPUs Ray reserves per replica (0: none).
        max_ongoing_requests: Requests Serve sends one replica at once (None: 4 per slot, so
            that requests wait in llama-server's own queue, where the load counts them).
        graceful_shutdown_timeout_s: How long a replica being removed lets requests in flight
            finish (None: llama-server's request timeout, ``--timeout``, 600 s unless given).
        health_check_period_s, health_check_timeout_s: Serve's health checks of a replica.
        metrics_interval_s: How often a replica samples its server's load (Ray metrics, the
            status board) and Serve pushes it to its controller (at most half the look-back).
        faults: Tests only: faults armed on every replica's server once it is ready (e.g.
            ``Fault.slow_tokens(0.05)`` to make requests last).
        scale_on: ``"slots"`` (the default): the servers' busy slots and waiting requests
            (:class:`~llamaproc.ray.SlotLoadPolicy`). ``"requests"``: Serve's own policy on the
            requests in flight per replica, with ``target_ongoing_requests = target_load *
            slots``; it also counts streams whose slots are done and whose clients are still
            reading (docs/scaling.md compares the two).
    """

    min_replicas: int = 1
    max_replicas: int = 1
    initial_replicas: int | None = None
    target_load: float = 1.0
    upscale_delay_s: float = 10.0
    downscale_delay_s: float = 60.0
    look_back_period_s: float = 10.0
    replica_cpus: float | None = None
    replica_gpus: float = 0.0
    max_ongoing_requests: int | None = None
    graceful_shutdown_timeout_s: float | None = None
    health_check_period_s: float = 10.0
    health_check_timeout_s: float = 30.0
    metrics_interval_s: float = 1.0
    faults: Sequence[Fault] = ()
    scale_on: str = "slots"

    def __post_init__(self) -> None:
        if self.scale_on not in SCALE_ON:
            raise ConfigError(message("ray.scale_on", value=self.scale_on, choices=", ".join(SCALE_ON)))
        _int_field("min_replicas", self.min_replicas, minimum=0)
        _int_field("max_replicas", self.max_replicas, minimum=1)
        _int_field("initial_replicas", self.initial_replicas, minimum=0, optional=True)
        initial = self.min_replicas if self.initial_replicas is None else self.initial_replicas
        if not self.min_replicas <= initial <= self.max_replicas:
            raise ConfigError(message("ray.replicas", min=self.min_replicas, initial=initial, max=self.max_replicas))
        _int_field("max_ongoing_requests", self.max_ongoing_requests, minimum=1, optional=True)
        for name in ("target_load", "look_back_period_s", "health_check_period_s", "health_check_timeout_s",
                     "metrics_interval_s"):
            _number(name, getattr(self, name), positive=True)
        for name in ("upscale_delay_s", "downscale_delay_s", "replica_gpus"):
            _number(name, getattr(self, name))
        _number("replica_cpus", self.replica_cpus, optional=True)
        _number("graceful_shutdown_timeout_s", self.graceful_shutdown_timeout_s, optional=True)
        faults = tuple(self.faults) if isinstance(self.faults, Sequence) else None
        if faults is None or not all(isinstance(f, Fault) for f in faults):
            raise ConfigError(message("ray.faults", value=self.faults))
        object.__setattr__(self, "faults", faults)

    @property
    def autoscaling(self) -> bool:
        """True when the replica count may change (``min_replicas < max_replicas``)."""
        return self.min_replicas < self.max_replicas

    @property
    def start_replicas(self) -> int:
        """Replicas started at deploy time."""
        return self.min_replicas if self.initial_replicas is None else self.initial_replicas
