"""Shedding to the fallback variant, glue only: traffic/shedding.py decides the moves, the scaling
tick (autoscale.py) writes them into the status with the rest of it (status.shedding), the
reconcile renders the routes with them. Because the moves are in the status, a restarted operator
keeps routing as before. Here: the gauge of the weight moved, and an Event when the weights change.
"""

from __future__ import annotations

import logging
from typing import Any

from unbusy.api import InferenceService
from unbusy.controller.metrics import FALLBACK_WEIGHT
from unbusy.kube.client import CountingClient
from unbusy.kube.status import event
from unbusy.traffic.shedding import Shift

log = logging.getLogger("unbusy")


def announce(api: CountingClient, written: dict[str, Any], planned: InferenceService, shift: Shift) -> None:
    """Set each variant's gauge of weight on the fallback and, when the weights changed, say so in
    an Event on `written` (the object as the tick wrote it). `planned` is the service before shedding."""
    fallback, plan, previous = planned.spec.fallback, shift.plan, shift.previous
    for variant in planned.spec.effective_variants():
        if variant.name != fallback.variant:
            percent = next((m.percent for m in plan.moved if m.variant == variant.name), 0)
            FALLBACK_WEIGHT.labels(planned.metadata.namespace, planned.metadata.name, variant.name).set(percent)
    if not shift.rerouted:
        return  # the same weights: the routes stay
    before, after = sum(m.percent for m in previous), plan.percent
    reason = "Shed" if after > before else "Restored"
    message = f"{before}% -> {after}% of traffic on {fallback.variant}: {plan.reason}"
    log.info("%s/%s: %s: %s", planned.metadata.namespace, planned.metadata.name, reason, message)
    event(api, written, "Normal", reason, message)
