"""The scaling policy: metric samples + previous state + the spec's rules + now -> replicas and why.

Pure: no I/O and no clock (`now` is a parameter, in seconds), so the operator's loop and the
simulator run the very same decisions. The rules follow the Kubernetes HPA (autoscaling/v2)
where it has one, so that a user who knows the HPA can predict Unbusy (SCALING-NOTES.md):

1. per metric, desired = ceil(n x value / target); no change while value/target is within
   1 +- tolerance; the largest desire over the metrics wins.
   - queue depth: ceil(total pending / target), like an External AverageValue metric, so a
     replica still loading its model (queue 0) does not dilute the queue of the others;
   - GPU utilisation: averaged over READY replicas only and multiplied by their number, as the
     HPA treats not-ready pods; a scale-up it asks for never goes below the current count.
2. a metric missing while the others say "down": no scale-down (the HPA's rule). All metrics
   missing, or Prometheus down: hold the last good count (or minReplicas when the spec says
   so) with scaling_active False.
3. forecast (when enabled): a least-squares line over the window of request rate, projected
   `horizon` ahead and capped at 4x the window's mean (AIBrix APA), scales the current demand
   by projected/now; it only ever raises the recommendation, so it never scales down.
   Floors beside it: bursts, priced (scaling/bursts.py), and the seasonal floor
   (scaling/seasonal.py); Decision.floor names the one that won.
4. stabilisation: the recommendation is no lower than the lowest of the scale-up window and no
   higher than the highest of the scale-down window (the HPA's stabilizeRecommendation). The
   windows keep the metrics' recommendations only; the floors apply after them, so a floor that
   ends (a burst hold let go, a seasonal floor that falls) is not waited out a second time; once
   a burst has ended the scale-down window keeps only what was recommended since (its replicas are
   the hold's to price, none after a burst alone), and in a lull the burst hold caps what the
   window keeps (a pre-warm waiting: to the demand's).
5. step limits per period: Pods and Percent policies from the rate of the period's start,
   the larger change wins going up (selectPolicy Max), the smaller going down (Min), as
   render/hpa.py writes them for the HPA.
6. min/max bounds of the variant.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from unbusy.api.autoscaling import Autoscaling, ScalingRules
from unbusy.scaling import bursts as bursting
from unbusy.scaling import capacity as capacities
from unbusy.scaling import seasonal as seasons
from unbusy.scaling import startup as startups
from unbusy.scaling.demand import Demand

# ceil() of a ratio that is an integer up to float error (24 / 8 * 1.0000000001) must not add a replica.
_EPSILON = 1e-9
# AIBrix caps its projection at this multiple of the window's mean: a steep line fitted over a
# short burst must not ask for the whole cluster.
FORECAST_CAP = 4.0
# A line needs at least this many points to be more than noise.
FORECAST_MIN_POINTS = 3
# The growth rate needs two points in each half of its window: a ramp from a young history (45 s
# of samples at 15 s) is met a start-up ahead; a step still reads as none (one half is flat).
GROWTH_MIN_POINTS = 4


REQUESTS = "rps"


@dataclass(frozen=True)
class Guard:
    """A limit read over the variant (TTFT p99 against its SLO, KV-cache use): over it, the fleet
    grows to one replica more than are ready; under it, it says nothing, so a guard never holds a
    scale-in that the demand asks for. One more than the READY ones, not a ratio: an LLM engine
    keeps the requests it queued, so replicas added do not drain them and the p99 stays over its
    limit for a while after; a ratio compounded on every tick of that while (2 -> 16 in 75 s on a
    3x step), where +1 of the ready orders nothing more until what was ordered serves."""

    name: str
    value: float
    limit: float
    unit: str


@dataclass(frozen=True)
class ReplicaSample:
    """What Prometheus says about one replica (None: that series is missing)."""

    ready: bool
    queue_depth: float | None = None  # nv_inference_pending_request_count
    gpu_utilization: float | None = None  # percent (DCGM_FI_DEV_GPU_UTIL, or GR engine activity x 100)
    request_rate: float | None = None  # requests per second
    queue_time_ms: float | None = None  # mean time a request waited in Triton's queue
    served_rate: float | None = None  # requests answered per second (nv_inference_request_success)
    queue_depth_min: float | None = None  # the least pending count over the same window as served_rate
    refused_rate: float | None = None  # requests refused for a full queue per second (failures, reason REJECTED)
    batch_mean: float | None = None  # requests per execution over the window (nv_inference_count / exec_count)
    ready_seconds: float | None = None  # how long the replica has been Ready; None: not known


@dataclass(frozen=True)
class Observation:
    """One variant as the loop sees it: the Deployment's replicas and its replicas' samples.

    samples None means Prometheus could not be read at all; `error` then says why.
    """

    current: int
    samples: tuple[ReplicaSample, ...] | None
    error: str | None = None
    demand: Demand | None = None  # offered load from the edge (or Triton's served rate); None: not read
    capacity_hint: float | None = None  # the spec's requests/s per replica (autoscaling.capacity or model.serving)
    saturated_pending: float = 16.0  # pending requests from which a replica serves at capacity (max_queue / 4)
    seasonal_rps: float | None = None  # the most demand of the same time a period ago (autoscaling.seasonal)
    # What demand, capacity, floors and served rates are counted in: requests, or for an LLM
    # weighted tokens (scaling/tokens.py), whose cost per request varies a hundredfold.
    unit: str = REQUESTS
    guards: tuple[Guard, ...] = ()  # latency and memory limits that only ever ask for more replicas
    full_batch: int = 1  # the batch a long queue forms (maxBatchSize or the largest preferred size)
    window_seconds: float = 60.0  # the rate window the samples and the demand are read over
    # How long after the first demand reading its rate window still fills (the counter is new, and
    # rate() reads it low): the operator's window; 0 where the first reading is a full window.
    demand_fill_seconds: float = 60.0
    shed_percent: int = 0  # percent of all traffic moved off this variant to the fallback now
    starts: tuple[startups.PodStart, ...] = ()  # its live pods' creation and Ready times: the start-up learned
    gpus_per_replica: float = 1.0  # GPUs a replica holds (a MIG slice: its share): what keeping one costs

    @property
    def ready(self) -> int:
        return sum(1 for s in self.samples or () if s.ready)


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers between evaluations; Decision.state is the next call's input."""

    recommendations: tuple[tuple[float, int], ...] = ()  # (time, raw recommendation) for the windows
    scale_events: tuple[tuple[float, int], ...] = ()  # (time, replicas added (+) or removed (-))
    rates: tuple[tuple[float, float], ...] = ()  # (time, total request rate) for the forecast
    last_good: int | None = None  # the last count decided from metrics
    capacity: float | None = None  # learned requests/s per replica (scaling/capacity.py)
    demands: tuple[tuple[float, float], ...] = ()  # (time, demand rps) for the growth rate
    panic_until: float = -math.inf  # burst mode lasts until then
    bursts: bursting.Bursts = field(default_factory=bursting.Bursts)  # the bursts seen, which price the hold
    shed_percent: int = 0  # the weight moved off the variant at the last evaluation
    shed_moved_at: float = -math.inf  # when that weight last changed
    demand_since: float | None = None  # when a demand was first read
    startup: startups.Startup = field(default_factory=startups.Startup)  # learned from pods' creation to Ready


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str
    metrics: Mapping[str, float]
    scaling_active: bool
    state: PolicyState
    floor: str | None = None  # seasonal | bursts: a floor, not the present demand, set the replicas


@dataclass(frozen=True)
class _Desire:
    """What one metric (or the forecast) asks for."""

    replicas: int
    demand: float  # unrounded replicas at target: what the forecast scales
    text: str
    floor: str | None = None  # the floor it is (seasonal, bursts), if it is one


def _ceil(value: float) -> int:
    return math.ceil(value - _EPSILON)


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _desire(name: str, unit: str, value: float, target: float, n: int, current: int, tolerance: float) -> _Desire:
    """ceil(n x value / target) with the tolerance band; n is the replicas the value is averaged over."""
    ratio = value / target
    demand = n * ratio
    if abs(ratio - 1) <= tolerance + _EPSILON:
        return _Desire(current, demand, f"{name} {_fmt(value)}{unit} within {tolerance:.0%} of target {target:g}{unit}")
    wanted = _ceil(demand)
    # Going up (down), a metric never asks for fewer (more) than now: with pods still loading,
    # n < current, and ceil(n x ratio) alone could read as a scale-down.
    wanted = max(wanted, current) if ratio > 1 else min(wanted, current)
    sign = ">" if ratio > 1 else "<"
    return _Desire(wanted, demand, f"{name} {_fmt(value)}{unit} {sign} target {target:g}{unit}")


def _queue(obs: Observation, target: int, tolerance: float, metrics: dict[str, float]) -> _Desire | None:
    values = [s.queue_depth for s in obs.samples or () if s.queue_depth is not None]
    if not values or obs.current == 0:
        return None
    total = sum(values)
    per_replica = total / obs.current
    metrics.update(queue_total=total, queue_per_replica=per_replica)
    return _desire("queue", "/replica", per_replica, target, obs.current, obs.current, tolerance)


def _gpu(obs: Observation, target: int, tolerance: float, metrics: dict[str, float]) -> _Desire | None:
    values = [s.gpu_utilization for s in obs.samples or () if s.ready and s.gpu_utilization is not None]
    if not values:
        return None
    mean = sum(values) / len(values)
    metrics["gpu_utilization_percent"] = mean
    return _desire("gpu", "%", mean, target, len(values), obs.current, tolerance)


def _guard(guard: Guard, ready: int, current: int, metrics: dict[str, float]) -> _Desire | None:
    """What a guard over its limit asks for; nothing under it."""
    metrics[guard.name.replace(" ", "_")] = guard.value
    if guard.value <= guard.limit or not ready:
        return None
    over = f"{guard.name} {_fmt(guard.value)}{guard.unit} > limit {guard.limit:g}{guard.unit}"
    text = f"{over}: one more than the {ready} ready"
    return _Desire(max(current, ready + 1), ready + 1, text)


def _fmt_rate(value: float, unit: str = REQUESTS) -> str:
    """1,850 rps (requests read in full, as the HPA prints them); 41.2k tok/s."""
    if unit == REQUESTS or value < 1000:
        return f"{value:,.0f} {unit}"
    return f"{value / 1000:,.3g}k {unit}"


def _fmt_capacity(value: float, unit: str) -> str:
    """Requests per replica read without their unit (capacity 1,000 x 0.8); other units say theirs."""
    return f"{value:,.0f}" if unit == REQUESTS else _fmt_rate(value, unit)


def growth(points: tuple[tuple[float, float], ...], jump: float = math.inf) -> float:
    """The demand's sustained growth in rps per second: the smaller least-squares slope of the
    window's two halves, 0 unless both rise. A step is no trend: one half of its window is flat.
    Nor is a recovery: demand back below the window's high after a dip rose in both halves, but
    to a level it already had; growth counts only while the latest reading is the window's high.
    Nor a burst: a window in which a reading was `jump` times the one before it (the panic
    threshold) holds a step, even where an earlier blip made both halves rise (onoff-tall: +12
    replicas of headroom for a 6x burst that needed 8). From a reading of no demand in the
    window on, no ratio counts: traffic starting or back from idle rises by any ratio at first (a
    ramp from 0 reads 0, 1, 4, 9 x through the rate window, and had no headroom for 120 s); the
    halves tell a ramp from a step there."""
    if len(points) < GROWTH_MIN_POINTS or points[-1][1] < max(d for _, d in points):
        return 0.0
    values = [d for _, d in points]
    idle = next((i for i, d in enumerate(values) if d <= 0), len(values))  # the first reading of no demand
    if any(later >= jump * earlier for earlier, later in itertools.pairwise(values[:idle])):
        return 0.0
    half = len(points) // 2
    return max(0.0, min(line(points[:half])[1], line(points[half:])[1]))


def _demand(
    obs: Observation,
    policy: Autoscaling,
    capacity: float | None,
    history: tuple,
    startup_s: float,
    metrics: dict[str, float],
) -> _Desire | None:
    """ceil(demand / (capacity x target)), plus what the demand grows by while new replicas start."""
    target = policy.targets.capacity_utilization_percent / 100
    demand = obs.demand
    if not target or demand is None or not capacity:
        return None
    per_replica = capacity * target
    needed = demand.rps / per_replica
    rising = growth(history, policy.capacity.panic_threshold)
    # Until a replica ordered now serves: its start-up, and the age of the reading it is ordered on
    # (the scrape, the rate window and the wait for this tick: about two intervals). With the
    # start-up alone, a ramp met each new replica at 91% of capacity (the refitted ResNet-50's
    # stalls refused 0.002% of diurnal there).
    ahead = needed + rising * (startup_s + 2 * policy.interval_seconds) / per_replica
    headroom = _ceil(ahead) - _ceil(needed)
    metrics.update(demand_rps=demand.rps, capacity_rps=capacity, demand_growth_rps_per_s=rising)
    where = f"{demand.source}, 503s included" if demand.measurable else f"{demand.source}: served only"
    each = _fmt_capacity(capacity, obs.unit)
    text = (
        f"demand {_fmt_rate(demand.rps, obs.unit)} ({where}) / capacity {each} x {target:g}"
        f" -> {_ceil(needed)} replicas" + (f" (+{headroom} start-up headroom)" if headroom else "")
    )
    return _Desire(_ceil(needed) + headroom, ahead, text)


def _prices_bursts(policy: Autoscaling, capacity: float | None) -> bool:
    """Bursts are priced where refusals have a price and the demand rule runs (it is part of it)."""
    return bool(policy.capacity.refusal_price() and capacity and policy.targets.capacity_utilization_percent)


def _bursts(
    bursts: bursting.Bursts,
    capacity: float | None,
    policy: Autoscaling,
    obs: Observation,
    now: float,
    startup: float,
    metrics: dict,
) -> tuple[_Desire | None, str | None]:
    """The replicas the bursts seen pay for (scaling/bursts.py), at the spec's price of a refusal, and
    while a pre-warm waits for its window, what it will order when."""
    price = policy.capacity.refusal_price()
    if not _prices_bursts(policy, capacity):
        return None, None
    # Replicas ordered for a burst serve a start-up after it, on a reading up to two intervals old.
    # Ordered on schedule, a pre-warm's serve a start-up after the first tick past its time, and must
    # by then meet a burst that the reading its due time is counted from saw up to two intervals late.
    exposure = startup + 2 * policy.interval_seconds
    terms = bursting.Price(price, exposure, exposure + policy.interval_seconds, obs.gpus_per_replica)
    per_request = obs.demand.per_request if obs.demand is not None else None
    held = bursting.hold(bursts, now, terms, capacity, per_request)
    if held is None:
        return None, None
    metrics.update(burst_hold_replicas=held.replicas, burst_gap_seconds=held.gap_seconds)
    saves = (
        f"replica {held.planned} {'kept' if held.due is None else 'ordered'} saves {held.saved:,.0f} refusals a "
        f"burst (its first {exposure:.0f}s), {held.worth:,.0f} GPU-s at {price:g} a refusal"
    )
    if held.due is None:
        text = (
            f"{held.bursts} bursts up to {_fmt_rate(held.peak, obs.unit)}, one per {held.gap_seconds:,.0f}s: {saves}, "
            f"more than the {held.cost_seconds * obs.gpus_per_replica:,.0f} GPU-s it costs between bursts: "
            f"holding {held.replicas} replicas"
        )
        return _Desire(held.replicas, held.replicas, text, "bursts"), None
    due = held.due
    metrics.update(burst_due_seconds=due.at - now)
    plan = (
        f"next burst due in ~{due.at - now:,.0f}s ({due.gaps} gaps, +-{due.spread:,.0f}s): "
        f"scale to {held.planned} at t-{due.at - held.order_at:,.0f}s"
    )
    if not held.replicas:
        return None, plan
    text = (
        f"{held.bursts} bursts up to {_fmt_rate(held.peak, obs.unit)}, {plan}: {saves} in the {held.odds:.0%} of "
        f"bursts no earlier than the gaps seen, more than the {held.cost_seconds * obs.gpus_per_replica:,.0f} GPU-s "
        f"of its window and a late one's wait: pre-warming {held.replicas} replicas"
    )
    return _Desire(held.replicas, held.replicas, text, "bursts"), None


def _seasonal(
    obs: Observation, policy: Autoscaling, capacity: float | None, metrics: dict[str, float]
) -> _Desire | None:
    """The floor of the demand one period ago (scaling/seasonal.py), at the capacity target."""
    spec, target = policy.seasonal, policy.targets.capacity_utilization_percent / 100
    if not spec.enabled or obs.seasonal_rps is None or not capacity or not target:
        return None
    wanted = seasons.replicas(obs.seasonal_rps, spec, capacity, target)
    metrics["seasonal_rps"] = obs.seasonal_rps
    text = (
        f"seasonal floor: {_fmt_rate(obs.seasonal_rps, obs.unit)} {_fmt_duration(spec.period_seconds)} ago (the most "
        f"of the next {_fmt_duration(spec.lead_seconds)}) x {spec.percent}% / capacity "
        f"{_fmt_capacity(capacity, obs.unit)} x {target:g}"
        f" -> {wanted} replicas"
    )
    return _Desire(wanted, obs.seasonal_rps * spec.percent / 100 / (capacity * target), text, "seasonal")


def _fmt_duration(seconds: int) -> str:
    """86400 -> 1d, 900 -> 15m, 90 -> 90s: as a person (and PromQL) writes it."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _informational(obs: Observation, metrics: dict[str, float]) -> float | None:
    """Request rate and queue time: reported, and the rate feeds the forecast."""
    rates = [s.request_rate for s in obs.samples or () if s.request_rate is not None]
    waits = [s.queue_time_ms for s in obs.samples or () if s.ready and s.queue_time_ms is not None]
    if waits:
        metrics["queue_time_ms"] = sum(waits) / len(waits)
    if not rates:
        return None
    metrics["request_rate"] = sum(rates)
    return sum(rates)


def line(points, weights=None) -> tuple[float, float]:
    """Intercept and slope of the least-squares line through (x, y) points, each counting its
    weight (once each, unless given); slope 0 when x never moves."""
    weights = weights or [1.0] * len(points)
    total = sum(weights)
    mean_x = sum(w * x for (x, _), w in zip(points, weights, strict=True)) / total
    mean_y = sum(w * y for (_, y), w in zip(points, weights, strict=True)) / total
    spread = sum(w * (x - mean_x) ** 2 for (x, _), w in zip(points, weights, strict=True))
    covariance = sum(w * (x - mean_x) * (y - mean_y) for (x, y), w in zip(points, weights, strict=True))
    slope = covariance / spread if spread else 0.0
    return mean_y - slope * mean_x, slope


def trend(points: tuple[tuple[float, float], ...], at: float) -> float | None:
    """The least-squares line through (time, value) evaluated at `at`, capped at 4x the mean."""
    if len(points) < FORECAST_MIN_POINTS:
        return None
    intercept, slope = line(points)
    if slope <= 0:
        return None  # a falling or flat rate projects nothing to prepare for
    mean = sum(v for _, v in points) / len(points)
    return min(intercept + slope * at, FORECAST_CAP * mean)


def _forecast(
    policy: Autoscaling, rates: tuple[tuple[float, float], ...], rate: float | None, demand: float, now: float
) -> tuple[_Desire | None, float | None]:
    """The floor the projected rate asks for: today's demand, grown as the rate is expected to grow."""
    if not policy.forecast.enabled or not rate:
        return None, None
    projected = trend(rates, now + policy.forecast.horizon_seconds)
    if projected is None or projected <= rate * (1 + policy.tolerance):
        return None, projected
    floor = _ceil(demand * projected / rate)
    text = f"rate {_fmt(rate)}/s -> {_fmt(projected)}/s in {policy.forecast.horizon_seconds}s (forecast)"
    return _Desire(floor, demand * projected / rate, text), projected


def _window(history: tuple[tuple[float, int], ...], now: float, seconds: int) -> list[int]:
    return [r for t, r in history if t > now - seconds]


def _stabilise(
    desired: int,
    current: int,
    history: tuple[tuple[float, int], ...],
    policy: Autoscaling,
    now: float,
    since: float = -math.inf,
) -> int:
    """The HPA's stabilizeRecommendation: not below the up window's lowest, not above the down window's highest
    of the recommendations from `since` on."""
    up = min([desired, *_window(history, now, policy.behavior.scale_up.stabilization_window_seconds)])
    kept = tuple((t, r) for t, r in history if t >= since)
    down = max([desired, *_window(kept, now, policy.behavior.scale_down.stabilization_window_seconds)])
    return min(max(current, up), down)


def _changed(events: tuple[tuple[float, int], ...], now: float, period: int) -> tuple[int, int]:
    """Replicas added and removed within the last `period` seconds."""
    recent = [delta for t, delta in events if t > now - period]
    return sum(d for d in recent if d > 0), -sum(d for d in recent if d < 0)


def _up_limit(current: int, events: tuple[tuple[float, int], ...], rules: ScalingRules, now: float) -> int:
    added, removed = _changed(events, now, rules.period_seconds)
    start = current - added + removed
    by_pods = start + rules.max_pods_per_step
    by_percent = math.ceil(start * (1 + rules.max_percent_per_step / 100))
    return max(by_pods, by_percent, current)  # selectPolicy Max; never a scale-down


def _down_limit(current: int, events: tuple[tuple[float, int], ...], rules: ScalingRules, now: float) -> int:
    added, removed = _changed(events, now, rules.period_seconds)
    start = current - added + removed
    by_pods = start - rules.max_pods_per_step
    by_percent = int(start * (1 - rules.max_percent_per_step / 100))
    return min(max(by_pods, by_percent), current)  # selectPolicy Min: the smaller change; never a scale-up


def _hold(obs: Observation, policy: Autoscaling, bounds: tuple[int, int], state: PolicyState, why: str) -> Decision:
    low, high = bounds
    if policy.on_metrics_missing == "minReplicas":
        replicas, what = low, "going to minReplicas"
    else:
        replicas, what = state.last_good if state.last_good is not None else obs.current, "holding"
    replicas = min(max(replicas, low), high)
    return Decision(replicas, f"{why}: {what} {replicas} replicas", {}, False, state)


def decide(obs: Observation, policy: Autoscaling, bounds: tuple[int, int], state: PolicyState, now: float) -> Decision:
    """Replicas for one variant, with the reason and the state for the next evaluation."""
    # Pods start whether or not Prometheus answers.
    state = replace(state, startup=startups.learn(state.startup, obs.starts))
    startup_s = startups.seconds(policy.capacity.startup_seconds, state.startup)
    if obs.samples is None:
        return _hold(obs, policy, bounds, state, f"metrics unavailable ({obs.error or 'Prometheus unreachable'})")
    metrics: dict[str, float] = {"current": obs.current, "ready": obs.ready, "startup_seconds": startup_s}
    targets, tolerance = policy.targets, policy.tolerance
    # Counted in tokens (an LLM on a decoupled backend), Triton's queue stays near 0 however loaded the
    # engine is, and its GPU reading says little (0.88 unsaturated, 0.56 collapsing: LLM-PROBE): the
    # guards stand in for both.
    counts_requests = obs.unit == REQUESTS
    wanted = {
        name: read(obs, target, tolerance, metrics)
        for name, read, target in (
            ("queue", _queue, targets.queue_depth_per_replica),
            ("gpu", _gpu, targets.gpu_utilization_percent),
        )
        if target and counts_requests  # 0: the metric is off
    }
    missing = [name for name, d in wanted.items() if d is None]
    guarded = [d for d in (_guard(g, obs.ready, obs.current, metrics) for g in obs.guards) if d is not None]
    # rpsPerReplica counts requests; a fleet counted in tokens starts from its own hint.
    start = (policy.capacity.rps_per_replica if obs.unit == REQUESTS else None) or obs.capacity_hint
    moved_at = now if obs.shed_percent != state.shed_percent else state.shed_moved_at
    # The samples read now span the window before the last scrape: a weight moved within it mixes two loads.
    seen = capacities.readings(
        obs.samples, obs.saturated_pending, obs.full_batch, obs.window_seconds, now - moved_at <= obs.window_seconds
    )
    capacity = capacities.learn(state.capacity, start, seen)
    window = max(120, 8 * policy.interval_seconds)  # the growth rate's: long enough to be more than noise
    demands, since = state.demands, state.demand_since
    if since is None and demands:
        since = demands[0][0]
    if obs.demand is not None:
        demands = tuple((t, d) for t, d in (*demands, (now, obs.demand.rps)) if t > now - window)
        since = now if since is None else since
    # Readings while the rate window first fills rise with it (a new counter, or the loop's own
    # start): read as growth, they ordered start-up headroom for half a replica's load (issue 23).
    full = tuple((t, d) for t, d in demands if since is not None and t >= since + obs.demand_fill_seconds)
    by_demand = _demand(obs, policy, capacity, full, startup_s, metrics)
    bursts = state.bursts
    if obs.demand is not None:
        refused = obs.demand.rejected_rps if obs.demand.measurable else 0.0
        serving = obs.ready * capacity if capacity else 0.0
        span = obs.window_seconds + 2 * policy.interval_seconds  # the reading's window and age
        bursts = bursting.observe(bursts, demands, now, policy.capacity.panic_threshold, refused, serving, span)
    by_bursts, prewarm = _bursts(bursts, capacity, policy, obs, now, startup_s, metrics)
    by_season = _seasonal(obs, policy, capacity, metrics)
    panic_until = state.panic_until
    if obs.demand is not None and capacity and obs.demand.rps >= policy.capacity.panic_threshold * obs.ready * capacity:
        panic_until = now + policy.capacity.panic_window_seconds
    panicking = now < panic_until
    # Move only past the tolerance, both ways (the HPA's rule): a demand a little off the fleet's is
    # no reason to start or stop a replica.
    if by_demand is not None and obs.current and abs(by_demand.demand / obs.current - 1) <= tolerance + _EPSILON:
        by_demand = _Desire(obs.current, by_demand.demand, by_demand.text + f" within {tolerance:.0%}")
    elif by_demand is not None and by_demand.replicas > obs.current and not panicking:
        # Up, outside burst mode, to the fewest replicas whose band holds the need: the count the
        # rule above then keeps (5.04 replicas' worth stays at 5), where the ceil (6) is one it
        # keeps only when reached from below.
        least = _ceil(by_demand.demand / (1 + tolerance))
        if least < by_demand.replicas:
            text = f"{by_demand.text} ({_fmt(by_demand.demand)} within {tolerance:.0%} of {least})"
            by_demand = _Desire(least, by_demand.demand, text)
    found = [d for d in (by_demand, by_bursts, by_season, *wanted.values(), *guarded) if d is not None]
    if not found:
        why = f"no samples of {', '.join(missing)}" if missing else "no demand, queue or GPU target set"
        return _hold(obs, policy, bounds, state, why)
    rate = _informational(obs, metrics)
    rates = state.rates
    if rate is not None:
        rates = tuple((t, r) for t, r in (*rates, (now, rate)) if t > now - policy.forecast.window_seconds)

    # The floors (bursts, seasonal) stand beside the window, not in it: the scale-down
    # window smooths what the metrics ask for, and a floor that ends (a hold let go when the
    # bursts no longer pay for it) is not a recommendation to wait out again.
    floors = [d for d in (by_bursts, by_season) if d is not None]
    floor = max(floors, key=lambda d: d.replicas, default=None)
    best = max((d for d in found if d.floor is None), key=lambda d: d.replicas, default=floor)
    notes = [prewarm] if prewarm else []
    if missing and best.replicas < obs.current:
        # The HPA's rule: one metric unreadable and the rest say down -> do not scale down.
        best = _Desire(obs.current, best.demand, best.text, best.floor)
        notes.append(f"not scaling down: no samples of {', '.join(missing)}")
    forecast, projected = _forecast(policy, rates, rate, max(d.demand for d in found), now)
    if projected is not None:
        metrics["forecast_rate"] = projected
    if forecast is not None and forecast.replicas > best.replicas:
        best = forecast
    raw = best.replicas

    # A burst that has ended is not noise for the scale-down window to smooth: what its replicas are worth
    # in the lull is the hold's to price (none after a burst alone), so the window keeps only what was
    # recommended since (flash: a crowd's 10 replicas were kept 165 s after it).
    over = bursting.ended(bursts) if _prices_bursts(policy, capacity) else None
    smoothed_since = over if over is not None and not panicking else -math.inf
    stabilised = _stabilise(raw, obs.current, state.recommendations, policy, now, smoothed_since)
    if panicking and raw > obs.current:
        stabilised = raw  # burst mode: react to this interval's demand, not the window's
    if floor is not None and floor.floor == "bursts" and floor.replicas > raw and not panicking:
        # In a lull after bursts the hold has priced what to keep: the window's highest (the burst's own
        # demand) is not kept beyond it (onoff: 1.28x -> 1.23x the oracle at 0.02 GPU-s a refusal).
        stabilised = min(stabilised, floor.replicas)
    elif prewarm and not panicking:
        # So has a pre-warm waiting for its window: the burst's replicas go, and come back before the next.
        stabilised = min(stabilised, raw)
    if floor is not None and floor.replicas >= stabilised and floor.replicas > raw:
        best, stabilised = floor, floor.replicas
    elif stabilised > raw:
        notes.append(f"scale-down stabilised over {policy.behavior.scale_down.stabilization_window_seconds}s")
    elif stabilised < raw:
        notes.append(f"scale-up stabilised over {policy.behavior.scale_up.stabilization_window_seconds}s")
    final = stabilised
    up, down = policy.behavior.scale_up, policy.behavior.scale_down
    if panicking:
        notes.append(
            f"burst mode until demand < {policy.capacity.panic_threshold:g}x ready capacity for "
            f"{policy.capacity.panic_window_seconds}s: no step limit up, no scale-down"
        )
        final = max(final, obs.current)
    elif final > obs.current and final > (limit := _up_limit(obs.current, state.scale_events, up, now)):
        final = limit
        notes.append(f"step limit +{up.max_pods_per_step} or +{up.max_percent_per_step}% per {up.period_seconds}s")
    if final < obs.current and final < (limit := _down_limit(obs.current, state.scale_events, down, now)):
        final = limit
        notes.append(
            f"step limit -{down.max_pods_per_step} or -{down.max_percent_per_step}% per {down.period_seconds}s"
        )
    low, high = bounds
    if final < low or final > high:
        final = min(max(final, low), high)
        notes.append(f"bounds {low}..{high}")

    keep = max(up.stabilization_window_seconds, down.stabilization_window_seconds)
    longest_period = max(up.period_seconds, down.period_seconds)
    events = state.scale_events + (((now, final - obs.current),) if final != obs.current else ())
    next_state = replace(
        state,
        recommendations=tuple((t, r) for t, r in (*state.recommendations, (now, raw)) if t > now - keep),
        scale_events=tuple((t, d) for t, d in events if t > now - longest_period),
        rates=rates,
        last_good=final,
        capacity=capacity,
        demands=demands,
        panic_until=panic_until,
        bursts=bursts,
        shed_percent=obs.shed_percent,
        shed_moved_at=moved_at,
        demand_since=since,
    )
    reason = f"{best.text}: {obs.current} -> {final}" + "".join(f"; {note}" for note in notes)
    return Decision(final, reason, metrics, True, next_state, best.floor)
