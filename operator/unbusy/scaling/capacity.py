"""Capacity per replica: the requests per second one replica answers, learned from Triton's counters.

A saturated replica's served rate over the rate window (nv_inference_request_success) is its
capacity. Saturated means, for the whole window: its queue never drained (the least pending
count over the window, not the last one) and it was refusing requests for a full queue or its
batches ran full (nv_inference_count / nv_inference_exec_count at the batch a long queue forms).
A queue kept up by stalls alone, with small batches and nothing refused, is no saturation: such
a replica serves what it is sent, and reading that as its capacity talked the estimate down
while shedding took load off it (issue 23). Nor does a reading count

- from a replica Ready for less than the window: rate() reads its young counters low;
- while weight was moved off the variant within the window (the window mixes two loads).

Saturated readings move the estimate both ways by a smoothing step. A replica that was not
saturated, not refusing, and served more than the estimate shows the estimate is low: it is
raised to that served rate at once, so an estimate talked down can come back (not below what
was served is all such a reading proves). The estimate stays within half to twice the spec's
starting value, so one odd interval cannot throw it far. No NVML and no GPU-utilisation target
involved: a launch-bound model may read 0.5 at saturation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# How far one interval's saturated reading moves the estimate.
SMOOTHING = 0.3
# The learned value stays within these multiples of the starting value.
BOUNDS = (0.5, 2.0)
# Batches this full on average ran full: a replica's batches reach the size a long queue forms
# only past its capacity (ResNet-50's 32 at 1,004 rps; 23 at 95% of it).
FULL_BATCH = 0.9
# Refused this share of what it served: the queue was full, not one stall's overflow.
REFUSING = 0.01


@dataclass(frozen=True)
class Readings:
    """One interval's evidence: served rates of saturated replicas, and the most an unsaturated
    replica served (a lower bound of the capacity)."""

    saturated: list[float]
    served_at_least: float | None = None


def _refusing(sample) -> bool:
    return bool(sample.refused_rate) and sample.refused_rate >= REFUSING * sample.served_rate


def _full(sample, full_batch: int) -> bool:
    # Without an execution count (or with batching off) the batch says nothing: the queue decides.
    return sample.batch_mean is None or full_batch <= 1 or sample.batch_mean >= FULL_BATCH * full_batch


def readings(
    samples: Iterable,
    saturated_pending: float,
    full_batch: int = 1,
    window_seconds: float = 0.0,
    weight_moved: bool = False,
) -> Readings:
    """What ready replicas Ready for the whole window say of the capacity; nothing while weight
    was moved off the variant within the window."""
    saturated, unsaturated = [], []
    if weight_moved:
        return Readings([])
    for s in samples:
        if not s.ready or not s.served_rate:
            continue
        if s.ready_seconds is not None and s.ready_seconds < window_seconds:
            continue
        queued = s.queue_depth_min is not None and s.queue_depth_min >= saturated_pending
        if queued and (_refusing(s) or _full(s, full_batch)):
            saturated.append(s.served_rate)
        elif not s.refused_rate:
            unsaturated.append(s.served_rate)
    return Readings(saturated, max(unsaturated, default=None))


def learn(previous: float | None, start: float | None, seen: Readings) -> float | None:
    """The next estimate from the previous one (or the spec's start) and this interval's readings."""
    current = previous if previous is not None else start
    if seen.saturated:
        mean = sum(seen.saturated) / len(seen.saturated)
        current = mean if current is None else current + SMOOTHING * (mean - current)
    if current is not None and seen.served_at_least is not None:
        current = max(current, seen.served_at_least)
    if current is not None and start is not None:
        current = min(max(current, BOUNDS[0] * start), BOUNDS[1] * start)
    return current
