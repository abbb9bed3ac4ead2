"""The autoscaling policy: replicas from llama-server's own load, not from request counts.

Each replica reports, through Serve's ``record_autoscaling_stats``, its busy slots, the
requests waiting in llama-server's queue for a slot, and its slot count (the keys below).
Serve averages them over ``look_back_period_s``; :class:`SlotLoadPolicy` then asks for::

    replicas = (busy + waiting + requests queued in Serve's routers) / (target_load * slots per replica)

and Serve applies the up/down delays, the scaling factors and min/max replicas. A request
counts while it decodes or waits for a slot, however long its stream is; a replica whose
clients are reading slowly but whose slots are free counts as idle.

Serve pickles this module by value into its controller: it imports nothing from llamaproc.
"""

from __future__ import annotations

import math
from typing import Any

#: The keys a replica's ``record_autoscaling_stats`` returns.
SLOTS_BUSY = "llamaproc_slots_busy"
REQUESTS_WAITING = "llamaproc_requests_waiting"
SLOTS_TOTAL = "llamaproc_slots_total"


class SlotLoadPolicy:
    """A Serve autoscaling policy (``AutoscalingConfig.policy``) on llamaproc's load.

    Args:
        target_load: The share of its slots each replica should carry (busy + waiting).
    """

    def __init__(self, target_load: float = 1.0) -> None:
        self.target_load = float(target_load)

    def desired(self, ctx: Any) -> float:
        """The replicas ``ctx`` (a Serve ``AutoscalingContext``) calls for, before delays and bounds."""
        current = int(ctx.current_num_replicas)
        if current == 0:
            return float(ctx.target_num_replicas)
        metrics = ctx.aggregated_metrics or {}
        slots = [v for v in (metrics.get(SLOTS_TOTAL) or {}).values() if v > 0]
        if not slots:  # no replica has reported yet: keep what there is
            return float(ctx.target_num_replicas)
        busy = sum((metrics.get(SLOTS_BUSY) or {}).values())
        waiting = sum((metrics.get(REQUESTS_WAITING) or {}).values())
        queued = float(ctx.total_queued_requests or 0.0)
        per_replica = self.target_load * (sum(slots) / len(slots))
        return float((busy + waiting + queued) / per_replica)

    def __call__(self, ctx: Any) -> tuple[float, dict[str, Any]]:
        wanted = self.desired(ctx)
        low, high = int(ctx.capacity_adjusted_min_replicas), int(ctx.capacity_adjusted_max_replicas)
        # hold a replica while it has work: math.ceil(0.2) = 1, so a trickle keeps one
        bounded = min(max(math.ceil(wanted - 1e-9), low), high)
        return bounded, {}
