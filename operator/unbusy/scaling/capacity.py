"""Capacity per replica: the requests per second one replica answers, learned from Triton's counters.

A replica whose queue stayed well filled through the whole rate window served as fast as it
can, so its served rate over that window (nv_inference_request_success) is its capacity: a
replica saturated for only part of the window would read low, so its least pending count over
the window decides, not the last one: no NVML,
no GPU-utilisation target involved (a launch-bound model may read 0.5 at saturation). Those
readings move the estimate by a smoothing step, within half to twice the spec's starting
value, so one odd interval (a stall, a replica just started) cannot throw it far.
"""

from __future__ import annotations

from collections.abc import Iterable

# How far one interval's reading moves the estimate.
SMOOTHING = 0.3
# The learned value stays within these multiples of the starting value.
BOUNDS = (0.5, 2.0)


def saturated_rates(samples: Iterable, saturated_pending: float) -> list[float]:
    """The served rates of ready replicas whose pending requests stayed at or above `saturated_pending`."""
    return [
        s.served_rate
        for s in samples
        if s.ready and s.served_rate and s.queue_depth_min is not None and s.queue_depth_min >= saturated_pending
    ]


def learn(previous: float | None, start: float | None, readings: list[float]) -> float | None:
    """The next estimate from the previous one (or the spec's start) and this interval's readings."""
    current = previous if previous is not None else start
    if not readings:
        return current
    seen = sum(readings) / len(readings)
    if current is None:
        return seen
    estimate = current + SMOOTHING * (seen - current)
    if start is not None:
        estimate = min(max(estimate, BOUNDS[0] * start), BOUNDS[1] * start)
    return estimate
