"""Shedding to a fallback variant (pure): where 503s would come from, move traffic instead.

When the variants that carry traffic cannot serve their demand with the replicas that are ready
(new ones still loading the model, or the variant at maxReplicas), the demand beyond their ready
capacity goes to the declared fallback variant (a smaller model: the seeds' "degrade"), as far as
the fallback has spare capacity and never more than spec.fallback.maxPercent. Weight moves to the
fallback at once and back only after the demand has needed less for restoreSeconds: hysteresis in
time, as the HPA's scale-down window, so a replica that just became ready does not flap the routes.
All of it comes back only restoreSeconds after the last tick that needed any: a load that drops
just after its need eased a little still waits the whole window.

Weights are whole percent, as the routes carry them (ingress-nginx canary-weight, HTTPRoute weight).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from unbusy.api import InferenceService
from unbusy.api.fallback import Fallback
from unbusy.api.status import Shed, ShedLevel
from unbusy.scaling.demand import Demand
from unbusy.scaling.policy import Observation
from unbusy.timestamps import parse, stamp

# A share of demand that is a whole number of percent up to float error must not round up.
_EPSILON = 1e-9
# The latest rate counts beyond this multiple of the window's (the HPA's 10% tolerance).
LATEST_ABOVE = 1.1
Q = TypeVar("Q")  # what a caller keeps beside each observation (its queries)


@dataclass(frozen=True)
class Load:
    """A variant as shedding sees it."""

    name: str
    weight: int  # the spec's weight: what it carries without shedding
    ready: int  # replicas serving now
    capacity_rps: float  # requests/s one replica answers at saturation (learned, or the spec's)


@dataclass(frozen=True)
class Level:
    """A share of all traffic a variant's demand needed on the fallback, and when it last did."""

    percent: int
    needed_at: float


@dataclass(frozen=True)
class Moved:
    """Weight moved from one variant to the fallback, and when its demand last needed that much;
    `latest`: the last smaller share it needed (not none) while this one was held."""

    variant: str
    percent: int
    needed_at: float
    latest: Level | None = None


def _held(name: str, last: Moved | None, needed: int, now: float, restore_seconds: float) -> Moved | None:
    """The move with `needed` seen now. More need moves at once; less, once the held share has not
    been needed for restore_seconds: then to what is needed now, or, where nothing is, to the latest
    share that was within the window (it leaves in turn)."""
    if last is None or needed >= last.percent:
        return Moved(name, needed, now) if needed > 0 else None
    if now - last.needed_at < restore_seconds:
        return replace(last, latest=Level(needed, now) if needed > 0 else last.latest)
    if needed > 0:
        return Moved(name, needed, now)
    if last.latest and now - last.latest.needed_at < restore_seconds:
        return Moved(name, last.latest.percent, last.latest.needed_at)
    return None


@dataclass(frozen=True)
class Plan:
    moved: tuple[Moved, ...]  # only variants with percent > 0
    weights: dict[str, int]  # every variant's weight with the moves applied
    reason: str

    @property
    def percent(self) -> int:
        return sum(m.percent for m in self.moved)


def weights(spec_weights: Mapping[str, int], fallback: str, moved: Sequence[Moved]) -> dict[str, int]:
    """The spec's weights with `moved` taken from their variants and given to the fallback."""
    taken = {m.variant: m.percent for m in moved}
    shifted = {name: w - taken.get(name, 0) for name, w in spec_weights.items()}
    shifted[fallback] = shifted.get(fallback, 0) + sum(taken.values())
    return shifted


def recorded(isvc: InferenceService) -> tuple[Moved, ...]:
    """The moves the status holds (status.shedding)."""
    status = isvc.status
    return tuple(
        Moved(
            s.variant,
            s.percent,
            parse(s.needed_at).timestamp(),
            Level(s.latest.percent, parse(s.latest.needed_at).timestamp()) if s.latest else None,
        )
        for s in (status.shedding if status else [])
    )


def _stamp(at: float) -> str:
    return stamp(datetime.fromtimestamp(at, UTC))


def to_status(isvc: InferenceService, moved: Sequence[Moved]) -> dict[str, Any]:
    """status.shedding and, for kubectl get, status.fallback (`30% main->small`, or empty)."""
    return {
        "shedding": [
            Shed(
                variant=m.variant,
                percent=m.percent,
                needed_at=_stamp(m.needed_at),
                latest=ShedLevel(percent=m.latest.percent, needed_at=_stamp(m.latest.needed_at)) if m.latest else None,
            ).to_wire()
            for m in moved
        ],
        "fallback": ", ".join(f"{m.percent}% {m.variant}->{isvc.spec.fallback.variant}" for m in moved),
    }


def routed(isvc: InferenceService) -> InferenceService:
    """The InferenceService with the weight its status says is on the fallback: what the routes carry."""
    return with_moves(isvc, recorded(isvc))


def canary_ingress_taken(isvc: InferenceService) -> bool:
    """ingress-nginx has one canary Ingress: while a canary rollout holds it, no weight may move."""
    fallback, routing = isvc.spec.fallback, isvc.spec.routing
    weighted = [v for v in isvc.spec.effective_variants() if v.weight > 0 and v.name != fallback.variant]
    return routing is not None and routing.effective_provider == "nginx" and len(weighted) > 1


def loads(planned: InferenceService, ready: Mapping[str, int], capacities: Mapping[str, float]) -> list[Load]:
    """Each variant of the service as planned (before shedding) with its ready replicas; the fallback
    at the spec's rpsPerReplica, the others at their learned capacity."""
    fallback = planned.spec.fallback
    return [
        Load(
            v.name,
            v.weight,
            ready.get(v.name, 0),
            fallback.rps_per_replica if v.name == fallback.variant else capacities.get(v.name, 0.0),
        )
        for v in planned.spec.effective_variants()
    ]


def at_planned_weights(
    observed: Mapping[str, tuple[Q, Observation]], planned: InferenceService
) -> dict[str, tuple[Q, Observation]]:
    """Each variant's observation with its demand as it would be at the weights planned before shedding."""
    weights = {v.name: v.weight for v in planned.spec.effective_variants()}
    demands = spread({n: o.demand for n, (_, o) in observed.items()}, weights)
    return {n: (q, replace(o, demand=demands[n])) for n, (q, o) in observed.items()}


def with_moves(isvc: InferenceService, moved: Sequence[Moved]) -> InferenceService:
    """The InferenceService with its variants' weights as the moves make them: what the routes carry."""
    fallback = isvc.spec.fallback
    if fallback is None or not moved:
        return isvc
    variants = isvc.spec.effective_variants()
    shifted = weights({v.name: v.weight for v in variants}, fallback.variant, moved)
    spec = isvc.spec.model_copy(
        update={"variants": [v.model_copy(update={"weight": shifted[v.name]}) for v in variants]}
    )
    return isvc.model_copy(update={"spec": spec})


def spread(demands: Mapping[str, Demand | None], planned: Mapping[str, int]) -> dict[str, Demand | None]:
    """Each variant's demand at the weights planned before shedding, from what the routes carried.

    The scaling loop must size a variant for the traffic it is meant to carry, not for what is
    left of it while part goes to the fallback (else shedding would hold it small). Unknown for
    all where any variant's demand is unknown.
    """
    known = [d for d in demands.values() if d is not None]
    if len(known) < len(demands) or not known:
        return {name: None for name in demands}
    total, rejected = sum(d.rps for d in known), sum(d.rejected_rps for d in known)
    latest = None if any(d.latest_rps is None for d in known) else sum(d.latest_rps for d in known)
    first = known[0]
    return {
        name: Demand(
            total * planned[name] / 100,
            rejected * planned[name] / 100,
            first.source,
            first.measurable,
            None if latest is None else latest * planned[name] / 100,
            first.per_request,
        )
        for name in demands
    }


def offered(demands: Sequence[Demand | None]) -> float | None:
    """The whole service's offered load for shedding: the rate window's, or the latest (between the
    last two scrapes) where that is more than LATEST_ABOVE of it: a step is shed from the scrape
    after it, where the window's rate takes the window to catch up; within that band the latest's
    noise (a 1 s scrape of 4,000 rps: 1.6%) would only ratchet the weight up, since more need moves
    at once. None where a variant's demand is unknown."""
    if not demands or None in demands:
        return None
    window = sum(d.rps for d in demands)
    latest = [d.latest_rps for d in demands if d.latest_rps is not None]
    if len(latest) == len(demands) and sum(latest) > LATEST_ABOVE * window:
        return sum(latest)
    return window


def _points(rps: float, demand_rps: float) -> float:
    return 100 * rps / demand_rps


def _needed(loads: Sequence[Load], spec: Fallback, demand_rps: float) -> dict[str, int]:
    """Whole percent of the total each variant cannot serve with its ready replicas."""
    needed = {}
    for load in loads:
        if load.name == spec.variant or load.weight == 0:
            continue
        serves = load.ready * load.capacity_rps * spec.shed_above_percent / 100
        # The excess over what the ready replicas serve, and no more: whole percent rounded down.
        excess = demand_rps * load.weight / 100 - serves
        if excess > 0:
            needed[load.name] = min(load.weight, math.floor(_points(excess, demand_rps) + _EPSILON))
    return {name: percent for name, percent in needed.items() if percent > 0}


def _spare(loads: Sequence[Load], spec: Fallback, demand_rps: float) -> int:
    """Whole percent of the total the fallback can take beyond what its own weight sends it."""
    fallback = next(load for load in loads if load.name == spec.variant)
    spare = fallback.ready * spec.rps_per_replica * spec.utilization_percent / 100
    return max(0, math.floor(_points(spare, demand_rps) + _EPSILON) - fallback.weight)


def _capped(m: Moved, percent: int) -> Moved | None:
    """The move held to at most `percent`; a latest share it covers merges into it (its time, the later)."""
    if percent <= 0:
        return None
    if m.percent <= percent:
        return m
    if m.latest and m.latest.percent >= percent:
        return Moved(m.variant, percent, m.latest.needed_at)
    return replace(m, percent=percent)


def _trim(moved: list[Moved], limit: int) -> list[Moved]:
    """At most `limit` percent in all: the largest moves give back first."""
    excess = sum(m.percent for m in moved) - limit
    trimmed = []
    for m in sorted(moved, key=lambda m: -m.percent):
        cut = min(max(excess, 0), m.percent)
        excess -= cut
        trimmed.append(_capped(m, m.percent - cut))
    return [m for m in trimmed if m is not None]


def plan(
    loads: Sequence[Load], spec: Fallback, demand_rps: float | None, previous: Sequence[Moved], now: float
) -> Plan:
    """Where each variant's weight goes now. `demand_rps` is the offered load of the whole service
    (refused requests included); None (not read) holds the previous moves."""
    spec_weights = {load.name: load.weight for load in loads}
    held = tuple(previous)
    if demand_rps is None:
        return Plan(held, weights(spec_weights, spec.variant, held), "demand unknown: weights held")
    if demand_rps <= 0:
        needed, spare = {}, 0
    else:
        needed, spare = _needed(loads, spec, demand_rps), _spare(loads, spec, demand_rps)
    before = {m.variant: m for m in previous}
    moves = [
        _held(name, before.get(name), needed.get(name, 0), now, spec.restore_seconds)
        for name in sorted(set(needed) | set(before))
    ]
    moved = tuple(_trim([m for m in moves if m is not None], min(spare, spec.max_percent)))
    return Plan(moved, weights(spec_weights, spec.variant, moved), _reason(needed, moved, spare, spec))


def _reason(needed: Mapping[str, int], moved: Sequence[Moved], spare: int, spec: Fallback) -> str:
    asked, total = sum(needed.values()), sum(m.percent for m in moved)
    if not asked and not total:
        return "ready replicas cover the demand"
    if not asked:
        return f"ready replicas cover the demand: {total}% stays on {spec.variant} for up to {spec.restore_seconds}s"
    limit = "its spare capacity" if spare < spec.max_percent else f"fallback.maxPercent {spec.max_percent}%"
    capped = f" (capped by {limit})" if total < asked else ""
    return f"{asked}% of demand is beyond the ready replicas' capacity: {total}% to {spec.variant}{capped}"


@dataclass(frozen=True)
class Shift:
    """One tick's moves beside the ones the status held."""

    plan: Plan
    previous: tuple[Moved, ...]

    @property
    def rerouted(self) -> bool:
        """Whether the weights change, so the routes must follow (needed_at alone changes none)."""
        return [(m.variant, m.percent) for m in self.plan.moved] != [(m.variant, m.percent) for m in self.previous]


def shift(
    planned: InferenceService,
    ready: Mapping[str, int],
    capacities: Mapping[str, float],
    demand_rps: float | None,
    now: float,
) -> Shift | None:
    """This tick's moves for the service as planned (before shedding), from those its status holds;
    None while a canary rollout holds ingress-nginx's canary Ingress: the moves stay as they are
    until the rollout ends."""
    if canary_ingress_taken(planned):
        return None
    previous = recorded(planned)
    return Shift(plan(loads(planned, ready, capacities), planned.spec.fallback, demand_rps, previous, now), previous)
