"""Bursts, priced: keep replicas through a lull, or order them back before the next burst is due,
only while the refusals they save are worth their GPUs.

A burst is demand that jumps faster than a replica starts: to `threshold` (the spec's
panicThreshold, 2x) times the least demand of the last few intervals. From no demand at all
(a first reading of 0, a service taking its first traffic) it is traffic starting, not a burst;
from a lull of no demand after traffic (idle between bursts) it is demand of at least 1 / threshold
of what the ready replicas serve, until it is back to none (on-off traffic from 0: no burst was
seen, no replica held, and KEDA's 5-min scale-down window beat the policy on both refusals and
GPU-hours; less is stray requests the fleet absorbs).
No reactive policy serves a burst's first start-up with the replicas of the lull before it: the
new ones arrive a start-up (and the age of the reading they were ordered on) late, and until
then the edge refuses what the ready replicas cannot serve. Only replicas kept through the lull
serve that part; each costs its GPUs every second it is kept.

The model (`hold`) prices that trade from the bursts seen, with one number from the spec: what a
refused request is worth in GPU-seconds (capacity.refusalPriceGpuSeconds).
- How often bursts come: at the rate (N - 1) / T, N the bursts remembered and T the time from the
  first of them to now: their gaps, the lull going on included, so a lull longer than the usual
  gaps lowers the rate and the hold lets go by itself. A burst alone says nothing of how often
  bursts come and holds nothing: a step or a crowd seen once costs no idle replicas after it.
- What the j-th replica saves of a burst like those seen: the part of its height it would serve,
  min(capacity, peak - (j - 1) x capacity), for as long as a reactive fleet lacks it:
  min(exposure, the burst's length), exposure being the start-up plus two scaling intervals. The
  mean over the bursts remembered.
- Keep the j-th replica while price x rate x saved_j >= its GPUs (GPU-seconds a second, both):
  memoryless arrivals make the expected refusals saved per second of holding the rate times the
  refusals saved per burst. Each further replica saves no more than the one before, so the
  replicas kept are the first k that pay.
- Or let them go in the lull and order them back before the next burst is due (`due`): the last
  burst's start plus the mean of the n gaps between starts seen, give or take their spread (the
  farthest a gap was from the mean). Ordered a lead (the exposure and the tick that orders them)
  before due - spread, they serve until due + spread: a window of lead + 2 x spread a burst, not the
  lull. The next gap is one more like those seen (exchangeable: it is as likely as any to be the
  shortest or the longest), so it is shorter than all n with odds of 1 / (n + 1), and the window
  misses it: the demand's replicas meet it. It is longer than all n with odds 1 / (n + 1) too, and
  then the hold meets it from the window's end on, for about one more mean gap of those seen (not
  1 / rate, which counts the lull so far: priced so, a plan cost more the nearer its burst came, and
  flash's crowds were held into the lull and let go before the next). So the j-th replica
  saves price x saved_j x n / (n + 1) for its window's GPUs and 1 / (n + 1) of a mean gap's;
  the pre-warm is planned where its replicas' worth less their GPUs beats the hold's, the hold's
  priced at the rate it will have when the pre-warm would order: a hold is only worth keeping if it
  lasts to the next burst, and one priced on the lull so far gave way to the pre-warm as the lull
  grew, before the burst it was kept for (flash at 0.02: the second crowd's 8 replicas 7 min for no
  refusal saved, 1.25x the oracle; 0.95x so). Gaps spread as widely as memoryless bursts' (onoff's)
  keep the hold. (Counting the late burst as
  missed, (n - 1) / (n + 1), and without its wait, kept flash's crowds held after the third at 8
  replicas for the 10 min to the trace's end: 1.58x the oracle, 1.46x with its wait counted.)
A long burst and a short one are priced alike: what kept replicas save is each one's first
start-up (or all of it, if shorter). A burst shorter than the rate window reads diluted by the lull
around it (6 s at 4x reads 1.8x over 15 s): its height is read from the requests the edge refused
(`height`), so it still counts, at what it needed rather than its average.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

# Bursts remembered: their rate, heights and lengths price the hold.
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


@dataclass(frozen=True)
class Bursts:
    """What the policy remembers of bursts between evaluations."""

    seen: tuple[Burst, ...] = ()  # the last MEMORY bursts
    jumping: bool = False  # the last evaluation's demand was a jump: a burst goes on, not a new one
    # (time, rps the ready replicas could serve) at the evaluations a reading can span
    serving: tuple[tuple[float, float], ...] = ()
    traffic: bool = False  # demand was read above 0
    idled: bool = False  # and then at 0: a service idle between bursts, no longer taking its first traffic


@dataclass(frozen=True)
class Price:
    """What the hold weighs: a refusal's price, a replica's GPUs, and how long a burst lacks new replicas."""

    refusal_gpu_seconds: float  # what one refused request is worth (capacity.refusalPriceGpuSeconds)
    exposure_seconds: float  # from a burst's start until replicas ordered for it serve
    lead_seconds: float  # from ordering a replica on schedule to its serving: the start-up and an interval
    gpus_per_replica: float = 1.0  # GPU-seconds a replica costs a second (a MIG slice: its share)


@dataclass(frozen=True)
class Due:
    """When the next burst is due, from the gaps between the starts of those seen."""

    at: float  # the last burst's start plus the mean gap
    spread: float  # the farthest any gap seen was from their mean
    gaps: int


@dataclass(frozen=True)
class Hold:
    """The replicas bursts pay for: the first `planned` save more than they cost, through the lull
    or, when `due` is set, from `order_at` (a pre-warm) until `due` is over."""

    replicas: int  # to keep now: `planned`, or 0 while a pre-warm waits for its window
    planned: int
    peak: float  # the highest burst remembered, in the demand's unit
    bursts: int  # remembered
    gap_seconds: float  # the mean time between bursts the rate says: 1 / rate
    saved: float  # requests the last replica planned saves of a burst it meets, on average
    worth: float  # those refusals at the price, in GPU-seconds
    # a replica's seconds a burst: the lull (1 / rate), or the pre-warm's window and a late burst's wait
    cost_seconds: float
    due: Due | None = None  # a pre-warm's: the next burst's due time and spread
    order_at: float = 0.0  # a pre-warm's: due - spread - lead
    odds: float = 1.0  # the share of bursts the replicas meet: n / (n + 1) for a pre-warm (not early)


def height(reading: float, base: float, refused: float, serving: float) -> float:
    """The demand of a burst within an interval whose average demand is `reading`, from its refusals.

    While a burst of height D lasted a share s of the interval, the ready replicas served
    `serving` rps and the edge refused D - serving; around it the lull was at `base`. So
    reading = base + (D - base) s and refused = (D - serving) s, which give
    D = base + (serving - base) (reading - base) / (reading - base - refused).
    Without refusals beyond a full queue's noise (REFUSED_SHARE of the reading), or without
    capacity over the lull to tell by, it is the reading; at most HEIGHT_CAP times the reading, and
    never less than it (a burst is no lower than its interval's average: where the replicas served
    more than `serving`, the formula reads low, and a rush read at 8,300 rps where the edge counted
    15,500 looked over, then began again as a second burst).
    """
    over = reading - base
    spare = over - refused  # served above the lull
    if refused < REFUSED_SHARE * reading or over <= 0 or spare <= 0 or serving <= base:
        return reading
    return max(reading, min(base + (serving - base) * over / spare, HEIGHT_CAP * reading))


def observe(
    bursts: Bursts,
    demands: tuple[tuple[float, float], ...],
    now: float,
    threshold: float,
    refused: float = 0.0,
    serving: float = 0.0,
    span: float = 0.0,
) -> Bursts:
    """The bursts after this evaluation's demand (the last of `demands`, at `now`).

    `refused`: rps the edge refused over the same window; `serving`: rps the ready replicas can
    serve; `span`: how far back the reading reaches (its rate window and its age). The least
    `serving` of the evaluations within it counts, as replicas that became ready within the window
    did not serve all of it (cron: a job met by 2 replicas, 3 more ready by its end, read 4,933 rps
    where it was 4,016).
    """
    current = next((d for t, d in demands if t == now), None)
    if current is None:
        return bursts
    before = [d for t, d in demands if t < now]
    servings = tuple((t, rps) for t, rps in (*bursts.serving, (now, serving)) if t >= now - span)
    served = min(rps for _, rps in servings)
    seen = bursts.seen
    base = min(before) if before else current
    level = height(current, base, refused, served)
    idled = bursts.idled or (bursts.traffic and current <= 0)
    # From idle, stray requests read as jumps from 0: a burst is demand of at least 1 / threshold of
    # what the ready replicas serve (less, the fleet absorbs; counted, strays filled the memory)
    from_idle = idled and threshold * level >= served
    jump = bool(before) and level > 0 and level >= threshold * base and (base > 0 or from_idle)
    if jump and not bursts.jumping:
        seen = (*seen, Burst(now, level, base))[-MEMORY:]
    elif seen:
        last = seen[-1]
        level = height(current, last.base, refused, served)
        if level > last.peak:  # a burst's peak: the most demand until the next one
            last = replace(last, peak=level)
        if last.end is None and (level < threshold * last.base or level <= 0):
            last = replace(last, end=now)
        seen = (*seen[:-1], last)
    return Bursts(seen, jump, servings, traffic=bursts.traffic or current > 0, idled=idled)


def ended(bursts: Bursts) -> float | None:
    """When the last burst seen ended (demand back under threshold x its base); None while one goes on or
    before any."""
    return bursts.seen[-1].end if bursts.seen and not bursts.jumping else None


def rate(bursts: Bursts, now: float) -> float:
    """Bursts a second, from the gaps between those remembered, the gap going on included: one
    burst alone says nothing of how often they come."""
    if len(bursts.seen) < 2 or now <= bursts.seen[0].start:
        return 0.0
    return (len(bursts.seen) - 1) / (now - bursts.seen[0].start)


def saved(bursts: Bursts, replica: int, capacity: float, exposure: float, now: float) -> float:
    """What the `replica`-th replica (from 1) serves of a burst like those seen, while a reactive
    fleet lacks it: the mean over the bursts of its slice of the height times the shorter of the
    exposure and the burst (one going on: so far). In the demand's unit."""
    if not bursts.seen:
        return 0.0
    total = 0.0
    for burst in bursts.seen:
        slice_ = min(capacity, max(0.0, burst.peak - (replica - 1) * capacity))
        length = (now if burst.end is None else burst.end) - burst.start
        total += slice_ * min(exposure, max(0.0, length))
    return total / len(bursts.seen)


def due(bursts: Bursts) -> Due | None:
    """The next burst's due time from the gaps between the starts of those seen; None before two."""
    starts = [b.start for b in bursts.seen]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    if not gaps:
        return None
    mean = sum(gaps) / len(gaps)
    return Due(starts[-1] + mean, max(abs(g - mean) for g in gaps), len(gaps))


def _paying(
    bursts: Bursts, now: float, price: Price, capacity: float, per_request: float | None, odds: float, seconds: float
) -> list[float]:
    """Refusals each replica that pays saves a burst (the first ones): met at `odds`, kept `seconds` a burst."""
    out: list[float] = []
    highest = max(b.peak for b in bursts.seen)
    for replica in range(1, math.ceil(highest / capacity - 1e-9) + 1):
        requests = saved(bursts, replica, capacity, price.exposure_seconds, now) / (per_request or 1.0)
        if price.refusal_gpu_seconds * requests * odds < price.gpus_per_replica * seconds:
            break  # the next replicas save less still
        out.append(requests)
    return out


def hold(bursts: Bursts, now: float, price: Price, capacity: float, per_request: float | None = None) -> Hold | None:
    """The replicas worth keeping through the lull or ordering back before the next burst; None when
    not even one pays.

    `capacity`: what a replica serves, in the demand's unit; `per_request`: that unit per request
    (an LLM's weighted tokens), None where the demand counts requests.
    """
    every = rate(bursts, now)
    if not every or capacity <= 0 or price.refusal_gpu_seconds <= 0:
        return None
    highest = max(b.peak for b in bursts.seen)

    def worth(kept: list[float], odds: float, seconds: float) -> float:
        return sum(price.refusal_gpu_seconds * r * odds - price.gpus_per_replica * seconds for r in kept)

    through = _paying(bursts, now, price, capacity, per_request, 1.0, 1 / every)
    next_ = due(bursts)
    if next_ is not None and now <= next_.at + next_.spread:  # not later than every gap seen
        late = 1 / (next_.gaps + 1)  # the share of next gaps shorter than all seen, and longer
        # A late burst's wait: a mean gap of those seen, not 1 / rate, which counts the lull so far twice
        mean_gap = next_.at - bursts.seen[-1].start
        odds, window = 1 - late, price.lead_seconds + 2 * next_.spread + late * mean_gap
        ahead = _paying(bursts, now, price, capacity, per_request, odds, window)
        # The hold beats the pre-warm only if it still does when the pre-warm would order, else it is
        # let go before the burst it is kept for (flash: 8 replicas for 7 min that met none)
        order_at = next_.at - next_.spread - price.lead_seconds
        lull = 1 / rate(bursts, max(now, order_at))
        lasting = _paying(bursts, now, price, capacity, per_request, 1.0, lull)
        if ahead and worth(ahead, odds, window) > worth(lasting, 1.0, lull):
            value = price.refusal_gpu_seconds * ahead[-1]
            kept = len(ahead) if now >= order_at else 0
            return Hold(
                kept, len(ahead), highest, len(bursts.seen), 1 / every, ahead[-1], value, window, next_, order_at, odds
            )
    if not through:
        return None
    value = price.refusal_gpu_seconds * through[-1]
    return Hold(len(through), len(through), highest, len(bursts.seen), 1 / every, through[-1], value, 1 / every)
