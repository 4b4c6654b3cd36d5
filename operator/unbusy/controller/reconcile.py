"""One pass for one InferenceService: read -> render -> apply -> status."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from kubernetes.dynamic.exceptions import ConflictError

from unbusy import health
from unbusy.api import API_VERSION, KIND, InferenceService, SpecError, load
from unbusy.controller import nodes, rollout
from unbusy.controller.metrics import CHILDREN_APPLIED, CHILDREN_PRUNED, RECONCILES
from unbusy.gpu.request import gpu_request
from unbusy.kube import children, observe
from unbusy.kube.client import CountingClient
from unbusy.kube.status import event, get_inference_service, publish_status
from unbusy.render import RenderContext, render_all
from unbusy.render.context import desired_replicas, weight
from unbusy.render.meta import HTTP_PORT, selector_string, variant_name
from unbusy.render.routing import url
from unbusy.timestamps import now
from unbusy.traffic.shedding import routed
from unbusy.triton import readiness

log = logging.getLogger("unbusy")
CONFLICT_ATTEMPTS = 5  # status writes of one InferenceService that may lose a race in a row


def _owner(body: dict[str, Any]) -> children.Owner:
    meta = body["metadata"]
    return children.Owner(API_VERSION, KIND, meta["name"], meta["namespace"], meta["uid"])


def _states(
    api: CountingClient, isvc: InferenceService, ctx: RenderContext, lost_nodes: Mapping[str, str] | None = None
) -> list[health.VariantState]:
    weights = {v.name: weight(v, ctx) for v in isvc.spec.effective_variants()}
    rendered = desired_replicas(isvc, ctx)
    return observe.variant_states(api, isvc.metadata.namespace, isvc.metadata.name, weights, rendered, lost_nodes)


def _invalid(api: CountingClient, body: dict[str, Any], problems: list[str]) -> None:
    previous = body.get("status") or {}
    generation = body["metadata"].get("generation")
    conditions = health.merged_wire_conditions(previous, health.invalid_spec_conditions(problems), now(), generation)
    status = {"observedGeneration": generation, "conditions": conditions}
    if previous.get("conditions") != conditions:
        event(api, body, "Warning", "InvalidSpec", "; ".join(problems))
        log.warning("%s/%s: invalid spec: %s", body["metadata"]["namespace"], body["metadata"]["name"], problems)
    publish_status(api, body, status)


def _warn_ignored(api: CountingClient, body: dict[str, Any], isvc: InferenceService) -> None:
    """A Warning Event per field the spec sets to no effect, once per generation of the spec."""
    if (body.get("status") or {}).get("observedGeneration") == body["metadata"].get("generation"):
        return
    for problem in isvc.spec.ignored_fields():
        event(api, body, "Warning", "IgnoredField", problem)


def reconcile(api: CountingClient, body: dict[str, Any]) -> children.Outcome | None:
    """Make the children match the spec and the status match the children."""
    started = time.monotonic()
    result = "failed"
    try:
        outcome = _reconcile(api, body)
        result = "invalid" if outcome is None else _result(outcome)
        return outcome
    finally:
        RECONCILES.labels(result).observe(time.monotonic() - started)


def _result(outcome: children.Outcome) -> str:
    for key in outcome.applied:
        CHILDREN_APPLIED.labels(key.split("/")[0]).inc()
    for key in outcome.pruned:
        CHILDREN_PRUNED.labels(key.split("/")[0]).inc()
    if outcome.errors:
        return "failed"
    return "changed" if outcome.applied or outcome.pruned else "unchanged"


def _reconcile(api: CountingClient, body: dict[str, Any]) -> children.Outcome | None:
    try:
        body, isvc = rollout.begin(api, body, load(body))
        isvc = routed(rollout.view(isvc))
        live_replicas = RenderContext()
        if isvc.spec.autoscaling.mode == "operator":
            # Keep what the scaling loop chose; render falls back to minReplicas for new variants.
            before = _states(api, isvc, RenderContext())
            live_replicas = RenderContext(replicas={s.name: s.desired for s in before if s.exists})
        manifests = render_all(isvc, live_replicas)
    except SpecError as error:
        _invalid(api, body, error.problems)
        return None
    _warn_ignored(api, body, isvc)
    outcome = children.reconcile(api, _owner(body), manifests)
    name = f"{isvc.metadata.namespace}/{isvc.metadata.name}"
    if outcome.applied or outcome.pruned:
        log.info("%s: applied %s; pruned %s", name, outcome.applied or "nothing", outcome.pruned or "nothing")
        counts = f"applied {len(outcome.applied)}, pruned {len(outcome.pruned)}"
        event(api, body, "Normal", "Reconciled", f"{counts}: {', '.join(outcome.applied + outcome.pruned)}")
    for problem in outcome.errors:
        log.warning("%s: %s", name, problem)
        event(api, body, "Warning", "ReconcileFailed", problem)
    refresh_status(api, body, isvc, live_replicas, outcome.errors, reconciled=True)
    return outcome


def _model_readiness(isvc: InferenceService, states: list[health.VariantState]) -> dict[str, readiness.Readiness]:
    """Ask Triton itself, through each serving variant's Service, whether the model is loaded."""
    namespace, model = isvc.metadata.namespace, isvc.spec.model
    versions = {v.name: v.model_version or model.version for v in isvc.spec.effective_variants()}
    return {
        s.name: readiness.check(
            f"http://{variant_name(isvc, s.name)}.{namespace}.svc:{HTTP_PORT}", model.name, versions[s.name]
        )
        for s in states
        if s.ready > 0
    }


def refresh_status(
    api: CountingClient,
    body: dict[str, Any],
    isvc: InferenceService | None = None,
    ctx: RenderContext | None = None,
    errors: tuple[str, ...] | list[str] = (),
    probe_models: bool = False,
    reconciled: bool = False,
) -> None:
    """Recompute the status from the live Deployments and Pods (after a reconcile, on every child
    event and on every resync).

    `errors` are the last reconcile's problems, kept in the Degraded condition until fixed.
    Only a reconcile (`reconciled`) moves observedGeneration on: a refresh writes only while the
    status's observedGeneration is the spec's generation, so a generation whose children are not
    all applied yet (a reconcile under way, or cut off by an API server restart) never reads Ready
    because its Deployments happen to be (seen: 3 of 40 Ready with their Ingresses missing).
    Refreshes of one InferenceService may run at once (a reconcile's and the refresh queue's,
    controller/workqueue.py): each writes only while the object is as it read it, and after a
    conflict reads the object and its children again, so no status from older reads lands after
    one from newer reads.
    """
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    last_reconciled = (body.get("status") or {}).get("observedGeneration")
    generation = body["metadata"].get("generation") if reconciled else last_reconciled
    for _ in range(CONFLICT_ATTEMPTS - 1):
        try:
            return _publish_fresh(api, body, isvc, ctx, errors, probe_models, generation)
        except ConflictError:
            body, isvc = get_inference_service(api, namespace, name), None
            if body is None:
                return None
    return _publish_fresh(api, body, isvc, ctx, errors, probe_models, generation)  # a conflict again: the caller's


def _publish_fresh(
    api: CountingClient,
    body: dict[str, Any],
    isvc: InferenceService | None,
    ctx: RenderContext | None,
    errors: tuple[str, ...] | list[str],
    probe_models: bool,
    generation: int | None,
) -> None:
    if body["metadata"].get("generation") != generation:
        return  # the spec moved on: its reconcile writes the next status
    try:
        isvc = isvc or routed(rollout.view(load(body)))
        gpu = gpu_request(isvc.spec.gpu, isvc.spec.model.gpu_memory)
        # Rendered too, for the problems only rendering finds (alert label names): a refresh must not
        # replace the InvalidSpec that reconcile reported with a status of children never applied.
        render_all(isvc)
    except SpecError:
        return  # reconcile reports invalid specs
    states = _states(api, isvc, ctx or RenderContext(), nodes.LOST.now(time.monotonic()))
    models = _model_readiness(isvc, states) if probe_models else None
    fresh = health.status(isvc, gpu, states, list(errors), url(isvc.spec.routing), selector_string(isvc), now(), models)
    # lastScaling belongs to the scaling loop: a copy from an older body must not overwrite it.
    status = fresh.model_dump(by_alias=True, exclude_none=True, mode="json", exclude={"last_scaling"})
    publish_status(api, body, status, guarded=True)
