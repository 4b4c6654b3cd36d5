"""Shedding to the fallback variant, glue only: the status holds the weight moved
(status.shedding), traffic/shedding.py decides it, the reconcile renders the routes with it.
Because the moves are in the status, a restarted operator keeps routing as before.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from unbusy.api import InferenceService
from unbusy.api.status import Shed
from unbusy.controller.metrics import FALLBACK_WEIGHT
from unbusy.health import VariantState
from unbusy.kube.client import CountingClient
from unbusy.kube.status import event, publish_status
from unbusy.scaling.policy import Observation
from unbusy.timestamps import parse, stamp
from unbusy.traffic import shedding

log = logging.getLogger("unbusy")
Q = TypeVar("Q")  # what the caller keeps beside each observation (its queries)


def moved(isvc: InferenceService) -> tuple[shedding.Moved, ...]:
    status = isvc.status
    return tuple(
        shedding.Moved(s.variant, s.percent, parse(s.needed_at).timestamp())
        for s in (status.shedding if status else [])
    )


def view(isvc: InferenceService) -> InferenceService:
    """The InferenceService with the weight its status says is on the fallback: what the routes carry."""
    return shedding.with_moves(isvc, moved(isvc))


def canary_ingress_taken(isvc: InferenceService) -> bool:
    """ingress-nginx has one canary Ingress: while a canary rollout holds it, no weight may move."""
    fallback, routing = isvc.spec.fallback, isvc.spec.routing
    weighted = [v for v in isvc.spec.effective_variants() if v.weight > 0 and v.name != fallback.variant]
    return routing is not None and routing.provider == "nginx" and len(weighted) > 1


def at_planned_weights(
    observed: Mapping[str, tuple[Q, Observation]], planned: InferenceService
) -> dict[str, tuple[Q, Observation]]:
    """Each variant's observation with its demand as it would be at the weights planned before shedding."""
    weights = {v.name: v.weight for v in planned.spec.effective_variants()}
    demands = shedding.spread({n: o.demand for n, (_, o) in observed.items()}, weights)
    return {n: (q, replace(o, demand=demands[n])) for n, (q, o) in observed.items()}


def summary(isvc: InferenceService, moves: tuple[shedding.Moved, ...]) -> str:
    """For kubectl get: 30% main->small, or empty."""
    return ", ".join(f"{m.percent}% {m.variant}->{isvc.spec.fallback.variant}" for m in moves)


def step(
    api: CountingClient,
    body: dict[str, Any],
    planned: InferenceService,
    live: Mapping[str, VariantState],
    capacities: Mapping[str, float],
    demand_rps: float | None,
    at: float,
) -> dict[str, Any] | None:
    """Decide the moves for one tick and write them to the status (when they last were needed
    too: the restore clock must survive the next tick and a restart), with an Event when the
    weights change. `planned` is the service before shedding; returns the object as written
    when the routes must change (the caller reconciles it), else None."""
    fallback = planned.spec.fallback
    previous = moved(planned)
    if canary_ingress_taken(planned):
        return None  # the moves stay as they are until the rollout ends
    loads = [
        shedding.Load(
            v.name,
            v.weight,
            live[v.name].ready if v.name in live else 0,
            fallback.rps_per_replica if v.name == fallback.variant else capacities.get(v.name, 0.0),
        )
        for v in planned.spec.effective_variants()
    ]
    plan = shedding.plan(loads, fallback, demand_rps, previous, at)
    for load in loads:
        if load.name != fallback.variant:
            percent = next((m.percent for m in plan.moved if m.variant == load.name), 0)
            FALLBACK_WEIGHT.labels(planned.metadata.namespace, planned.metadata.name, load.name).set(percent)
    status = {
        "shedding": [
            Shed(
                variant=m.variant, percent=m.percent, needed_at=stamp(datetime.fromtimestamp(m.needed_at, UTC))
            ).to_wire()
            for m in plan.moved
        ],
        "fallback": summary(planned, plan.moved),
    }
    written = publish_status(api, body, status, guarded=True)
    if [(m.variant, m.percent) for m in plan.moved] == [(m.variant, m.percent) for m in previous]:
        return None  # the same weights: the routes stay
    before, after = sum(m.percent for m in previous), plan.percent
    reason = "Shed" if after > before else "Restored"
    message = f"{before}% -> {after}% of traffic on {fallback.variant}: {plan.reason}"
    log.info("%s/%s: %s: %s", planned.metadata.namespace, planned.metadata.name, reason, message)
    event(api, written or body, "Normal", reason, message)
    return written
