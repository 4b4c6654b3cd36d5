"""Recurring bursts: keep what the last bursts needed through the lulls between them.

A burst is demand that jumps faster than a replica starts: to `threshold` (the spec's
panicThreshold, 2x) times the least demand of the last few intervals. From no demand at all
(a first reading of 0, a service taking its first traffic) it is traffic starting, not a burst. No reactive policy
serves the first start-up of a burst with the replicas of the lull before it: the new ones
arrive a start-up late. When bursts recur, the next one is likely to come again, so the
replicas are worth keeping between them, as KEDA's and the HPA's 300 s scale-down window keeps
them by luck. Here the hold is earned from the demand's own history: bursts that start within
`recurrence` seconds of the previous one form a run; while a run lasts, the fleet keeps the
replicas its largest burst needs at full capacity (the target's headroom is ordered when the
burst comes back, and is ready a start-up later), until `recurrence` seconds have passed since
the last burst began: as long as the next burst would still count as recurring.

A short burst, one whose demand fell back below `threshold` times the level it jumped from
within a start-up of its beginning, holds alone: replicas ordered for it arrive after it is
over, so only replicas kept before the next one can serve that one. A long burst alone (a step,
a flash crowd of minutes) holds nothing: reacting serves all of it but its first start-up, and
crowds further apart than `recurrence` (15 minutes) would keep replicas idle far longer than
the start-up they save.

A burst shorter than the rate window reads diluted by the lull around it (6 s at 4x reads 1.8x
over 15 s): its height is read from the requests the edge refused (`height`), so it still
counts, and holds what it needed rather than its average.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

# Bursts remembered: the peak of the largest sets the hold.
MEMORY = 8
# Refusals below this share of an interval's demand are a full queue's noise, not a burst over capacity.
REFUSED_SHARE = 0.05
# A burst's height read from the edge's refusals is at most this multiple of the interval's average.
HEIGHT_CAP = 4.0


@dataclass(frozen=True)
class Burst:
    """One burst: when it began, the most demand until the next, and the level it jumped from."""

    start: float
    peak: float  # rps
    base: float  # rps: the least demand of the window before it
    end: float | None = None  # when demand first fell back below threshold x base; None: not yet

    def short(self, startup: float) -> bool:
        """Over within a start-up of its beginning: before replicas ordered for it could serve."""
        return self.end is not None and self.end - self.start <= startup


@dataclass(frozen=True)
class Bursts:
    """What the policy remembers of bursts between evaluations."""

    seen: tuple[Burst, ...] = ()  # the last MEMORY bursts
    jumping: bool = False  # the last evaluation's demand was a jump: a burst goes on, not a new one
    serving: float = 0.0  # rps the ready replicas could serve at the last evaluation


@dataclass(frozen=True)
class Hold:
    """The floor bursts set: enough replicas for `peak_rps` at capacity until `until`."""

    peak_rps: float
    until: float
    bursts: int  # in the run; 1: a short burst alone


def height(reading: float, base: float, refused: float, serving: float) -> float:
    """The demand of a burst within an interval whose average demand is `reading`, from its refusals.

    While a burst of height D lasted a share s of the interval, the ready replicas served
    `serving` rps and the edge refused D - serving; around it the lull was at `base`. So
    reading = base + (D - base) s and refused = (D - serving) s, which give
    D = base + (serving - base) (reading - base) / (reading - base - refused).
    Without refusals beyond a full queue's noise (REFUSED_SHARE of the reading), or without
    capacity over the lull to tell by, it is the reading; at most HEIGHT_CAP times the reading.
    """
    over = reading - base
    spare = over - refused  # served above the lull
    if refused < REFUSED_SHARE * reading or over <= 0 or spare <= 0 or serving <= base:
        return reading
    return min(base + (serving - base) * over / spare, HEIGHT_CAP * reading)


def observe(
    bursts: Bursts,
    demands: tuple[tuple[float, float], ...],
    now: float,
    threshold: float,
    refused: float = 0.0,
    serving: float = 0.0,
) -> Bursts:
    """The bursts after this evaluation's demand (the last of `demands`, at `now`).

    `refused`: rps the edge refused over the same window; `serving`: rps the ready replicas can
    serve. The smaller of this and the last evaluation's `serving` counts, as replicas that became
    ready within the window did not serve all of it.
    """
    current = next((d for t, d in demands if t == now), None)
    if current is None:
        return bursts
    before = [d for t, d in demands if t < now]
    served = min(serving, bursts.serving) if bursts.serving else serving
    seen = bursts.seen
    base = min(before) if before else current
    level = height(current, base, refused, served)
    jump = bool(before) and base > 0 and level >= threshold * base
    if jump and not bursts.jumping:
        seen = (*seen, Burst(now, level, base))[-MEMORY:]
    elif seen:
        last = seen[-1]
        level = height(current, last.base, refused, served)
        if level > last.peak:  # a burst's peak: the most demand until the next one
            last = replace(last, peak=level)
        if last.end is None and level < threshold * last.base:
            last = replace(last, end=now)
        seen = (*seen[:-1], last)
    return Bursts(seen, jump, serving)


def hold(bursts: Bursts, now: float, recurrence: float, startup: float = 0.0) -> Hold | None:
    """The floor of the run of bursts that ends with the last one, while it lasts; None without one.

    A run is two or more bursts, each within `recurrence` of the one before, or a short burst
    alone (over within `startup`).
    """
    seen = bursts.seen
    if not seen:
        return None
    run = [seen[-1]]
    for earlier in reversed(seen[:-1]):
        if run[0].start - earlier.start > recurrence:
            break
        run.insert(0, earlier)
    if len(run) < 2 and not run[0].short(startup):
        return None
    until = run[-1].start + recurrence
    if now > until:
        return None
    return Hold(peak_rps=max(b.peak for b in run), until=until, bursts=len(run))


def replicas(floor: Hold, capacity: float) -> int:
    """Replicas that serve the run's largest burst at full capacity."""
    return math.ceil(floor.peak_rps / capacity - 1e-9)
