"""Recurring bursts: keep what the last bursts needed through the lulls between them.

A burst is demand that jumps faster than a replica starts: to `threshold` (the spec's
panicThreshold, 2x) times the least demand of the last few intervals. No reactive policy
serves the first start-up of a burst with the replicas of the lull before it: the new ones
arrive a start-up late. When bursts recur, the next one is likely to come again, so the
replicas are worth keeping between them, as KEDA's and the HPA's 300 s scale-down window keeps
them by luck. Here the hold is earned from the demand's own history: bursts that start within
`recurrence` seconds of the previous one form a run; while a run lasts, the fleet keeps the
replicas its largest burst needs at full capacity (the target's headroom is ordered when the
burst comes back, and is ready a start-up later), until `recurrence` seconds have passed since
the last burst began: as long as the next burst would still count as recurring. A lone burst
(a step), or bursts further apart than `recurrence` (flash crowds an hour apart), hold nothing:
there a held replica waits idle longer than the start-up it saves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Bursts remembered: the peak of the largest sets the hold.
MEMORY = 8


@dataclass(frozen=True)
class Bursts:
    """What the policy remembers of bursts between evaluations."""

    seen: tuple[tuple[float, float], ...] = ()  # (start time, peak demand rps) of the last MEMORY bursts
    jumping: bool = False  # the last evaluation's demand was a jump: a burst goes on, not a new one


@dataclass(frozen=True)
class Hold:
    """The floor recurring bursts set: enough replicas for `peak_rps` at capacity until `until`."""

    peak_rps: float
    until: float
    bursts: int  # in the run


def jumped(demands: tuple[tuple[float, float], ...], now: float, threshold: float) -> bool:
    """Whether the demand at `now` reached `threshold` times the least demand before it in `demands`."""
    current = next((d for t, d in demands if t == now), None)
    before = [d for t, d in demands if t < now]
    return current is not None and bool(before) and current >= threshold * min(before) and current > 0


def observe(bursts: Bursts, demands: tuple[tuple[float, float], ...], now: float, threshold: float) -> Bursts:
    """The bursts after this evaluation's demand (the last of `demands`, at `now`)."""
    current = next((d for t, d in demands if t == now), None)
    if current is None:
        return bursts
    jump = jumped(demands, now, threshold)
    seen = bursts.seen
    if jump and not bursts.jumping:
        seen = (*seen, (now, current))[-MEMORY:]
    elif seen and current > seen[-1][1]:
        seen = (*seen[:-1], (seen[-1][0], current))  # a burst's peak: the most demand until the next one
    return Bursts(seen, jump)


def hold(bursts: Bursts, now: float, recurrence: float) -> Hold | None:
    """The floor of the run of bursts that ends with the last one, while it lasts; None without a run."""
    seen = bursts.seen
    run = list(seen[-1:])
    for earlier in reversed(seen[:-1]):
        if run[0][0] - earlier[0] > recurrence:
            break
        run.insert(0, earlier)
    if len(run) < 2:
        return None
    until = run[-1][0] + recurrence
    if now > until:
        return None
    return Hold(peak_rps=max(peak for _, peak in run), until=until, bursts=len(run))


def replicas(floor: Hold, capacity: float) -> int:
    """Replicas that serve the run's largest burst at full capacity."""
    return math.ceil(floor.peak_rps / capacity - 1e-9)
