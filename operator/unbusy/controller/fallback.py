"""Shedding to the fallback variant, glue only: the status holds the weight moved
(status.shedding), traffic/shedding.py decides it, the reconcile renders the routes with it.
Because the moves are in the status, a restarted operator keeps routing as before.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from unbusy.api import InferenceService
from unbusy.controller.metrics import FALLBACK_WEIGHT
from unbusy.kube.client import CountingClient
from unbusy.kube.status import event, publish_status
from unbusy.traffic import shedding

log = logging.getLogger("unbusy")


def step(
    api: CountingClient,
    body: dict[str, Any],
    planned: InferenceService,
    ready: Mapping[str, int],
    capacities: Mapping[str, float],
    demand_rps: float | None,
    at: float,
) -> dict[str, Any] | None:
    """Decide the moves for one tick and write them to the status (when they last were needed
    too: the restore clock must survive the next tick and a restart), with an Event when the
    weights change. `planned` is the service before shedding; returns the object as written
    when the routes must change (the caller reconciles it), else None."""
    if shedding.canary_ingress_taken(planned):
        return None  # the moves stay as they are until the rollout ends
    fallback, previous = planned.spec.fallback, shedding.recorded(planned)
    plan = shedding.plan(shedding.loads(planned, ready, capacities), fallback, demand_rps, previous, at)
    for variant in planned.spec.effective_variants():
        if variant.name != fallback.variant:
            percent = next((m.percent for m in plan.moved if m.variant == variant.name), 0)
            FALLBACK_WEIGHT.labels(planned.metadata.namespace, planned.metadata.name, variant.name).set(percent)
    written = publish_status(api, body, shedding.to_status(planned, plan.moved), guarded=True)
    if [(m.variant, m.percent) for m in plan.moved] == [(m.variant, m.percent) for m in previous]:
        return None  # the same weights: the routes stay
    before, after = sum(m.percent for m in previous), plan.percent
    reason = "Shed" if after > before else "Restored"
    message = f"{before}% -> {after}% of traffic on {fallback.variant}: {plan.reason}"
    log.info("%s/%s: %s: %s", planned.metadata.namespace, planned.metadata.name, reason, message)
    event(api, written or body, "Normal", reason, message)
    return written
