"""The seasonal floor: the demand of the same time one period ago (yesterday, last week), so that
a daily peak is met before it arrives rather than a start-up after.

The floor is the most demand of [now - period, now - period + lead]: what the next `lead`
seconds looked like one period ago. The operator reads it from Prometheus with `offset`
(scaling/fleet.py: `max_over_time(<demand>[lead:step] offset (period - lead))`, one query per
demand counter for the whole fleet); the simulator from its own scrapes (`past_peak`). Either
way the policy turns it into replicas here, at the capacity target, like the demand itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from unbusy.api.autoscaling import Seasonal


def past_peak(points: Iterable[tuple[float, float]], now: float, spec: Seasonal) -> float | None:
    """The most of (time, demand) points within [now - period, now - period + lead]; None where the
    history does not reach back that far."""
    start = now - spec.period_seconds
    inside = [rps for t, rps in points if start <= t <= start + spec.lead_seconds]
    return max(inside) if inside else None


def replicas(past_rps: float, spec: Seasonal, capacity: float, target: float) -> int:
    """Replicas for `percent` of the past demand at `target` (0..1) of each replica's capacity."""
    return math.ceil(past_rps * spec.percent / 100 / (capacity * target) - 1e-9)
