"""Canary rollouts, glue only: the status holds each variant's rollout, traffic/rollout.py decides
its transitions, traffic/view.py what to render of it; this reads the cluster and Prometheus,
writes the status and Events, and handles the user's annotations. Because the state is in the
status, a restarted operator resumes every rollout at the step it was at.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from unbusy.api import InferenceService, SpecError, load
from unbusy.api.status import Revision, RolloutState
from unbusy.health import VariantState
from unbusy.kube import observe
from unbusy.kube.client import CountingClient
from unbusy.kube.status import event, patch_inference_service, publish_status
from unbusy.render.context import RenderContext, weight
from unbusy.scaling.source import PrometheusSource, SourceError
from unbusy.traffic import rollout
from unbusy.traffic.analysis import Measurement, judge
from unbusy.traffic.queries import analysis_queries
from unbusy.traffic.view import canary_name, with_rollouts

log = logging.getLogger("unbusy")
# kubectl annotate infsvc NAME serving.unbusy.dev/rollout=pause|resume|abort|promote
ACTION = "serving.unbusy.dev/rollout"
# kubectl annotate infsvc NAME serving.unbusy.dev/rollback-to=<variant>=<revision>
ROLLBACK = "serving.unbusy.dev/rollback-to"


def view(isvc: InferenceService) -> InferenceService:
    """The InferenceService as its rollouts (in its status) make it look: what to render and observe."""
    status = isvc.status
    return with_rollouts(isvc, status.rollouts if status else [], status.revisions if status else [])


def _status(states: list[RolloutState], revisions: tuple[Revision, ...], isvc: InferenceService) -> dict[str, Any]:
    return {
        "rollouts": [s.to_wire() for s in states],
        "revisions": [r.to_wire() for r in revisions],
        "rollout": rollout.summary(states, isvc.spec.rollout.canary),
    }


def _publish(
    api: CountingClient, body: dict[str, Any], isvc: InferenceService, changes: list[rollout.Change]
) -> dict[str, Any] | None:
    """Write the rollouts' new states (only while the object is as read); then their Events."""
    states = [c.state for c in changes if c.state is not None]
    revisions = changes[-1].revisions if changes else ()
    written = publish_status(api, body, _status(states, revisions, isvc), guarded=True)
    for change in changes:
        if change.event:
            kind, reason, message = change.event
            log.info("%s/%s: %s: %s", isvc.metadata.namespace, isvc.metadata.name, reason, message)
            event(api, written or body, kind, reason, message)
    return written


def _states(isvc: InferenceService) -> dict[str, RolloutState]:
    return {s.variant: s for s in (isvc.status.rollouts if isvc.status else [])}


def begin(api: CountingClient, body: dict[str, Any], isvc: InferenceService) -> tuple[dict[str, Any], InferenceService]:
    """On every reconcile: start, restart or end each variant's rollout as the spec now asks,
    before anything is rendered, so a changed variant is never replaced in place. Returns the
    object as it is after that."""
    if isvc.spec.rollout.canary is None:
        return body, isvc
    states = _states(isvc)
    revisions = tuple(isvc.status.revisions) if isvc.status else ()
    now = datetime.now(UTC)
    changes = []
    for variant in isvc.spec.effective_variants():
        change = rollout.on_spec(
            variant.name, rollout.template(isvc, variant), states.get(variant.name), revisions, now
        )
        revisions = change.revisions
        changes.append(change)
    written = _publish(api, body, isvc, changes)
    return (written, load(written)) if written else (body, isvc)


def _measure(source: PrometheusSource | None, isvc: InferenceService, variant: str, window: int) -> Measurement:
    if source is None:
        return Measurement({}, {}, error="no Prometheus to read: start the operator with --prometheus-url")

    def read(track: str) -> dict[str, float | None]:
        values = {}
        for metric, queries in analysis_queries(isvc, track, window).items():
            answers = [a for a in (source.value(q) for q in queries) if a is not None]
            values[metric] = max(answers) if answers else None
        return values

    try:
        return Measurement(read(canary_name(variant)), read(variant))
    except SourceError as error:
        return Measurement({}, {}, error=str(error))


def _settled(state: VariantState | None) -> bool:
    """The Deployment runs its latest template with every replica ready."""
    return bool(state and state.rolled_out and state.updated >= state.desired and state.ready >= state.desired)


def _act(api: CountingClient, body: dict[str, Any], isvc: InferenceService) -> tuple[dict[str, Any], str | None]:
    """Take the user's action annotation off the object (it is done once); returns the action."""
    annotations = body["metadata"].get("annotations") or {}
    action = annotations.get(ACTION)
    if action is None:
        return body, None
    body = patch_inference_service(api, body, {"metadata": {"annotations": {ACTION: None}}})
    if action not in rollout.ACTIONS:
        event(
            api,
            body,
            "Warning",
            "RolloutActionIgnored",
            f"metadata.annotations[{ACTION}]: {action!r} is not one of {', '.join(rollout.ACTIONS)}",
        )
        return body, None
    return body, action


def _rollback(api: CountingClient, body: dict[str, Any], isvc: InferenceService) -> dict[str, Any]:
    """serving.unbusy.dev/rollback-to=<variant>=<revision>: the variant's spec goes back to that kept
    revision's template, in one write; the change then rolls out as a canary like any other."""
    value = (body["metadata"].get("annotations") or {}).get(ROLLBACK)
    if value is None:
        return body
    variants = isvc.spec.effective_variants()
    name, _, number = value.rpartition("=")
    name = name or (variants[0].name if len(variants) == 1 else "")
    kept = isvc.status.revisions if isvc.status else []
    revision = next((r for r in kept if r.variant == name and str(r.number) == number), None)
    if revision is None:
        body = patch_inference_service(api, body, {"metadata": {"annotations": {ROLLBACK: None}}})
        listed = ", ".join(f"{r.variant}={r.number}" for r in kept) or "none yet"
        event(
            api,
            body,
            "Warning",
            "RollbackRefused",
            f"metadata.annotations[{ROLLBACK}]: {value!r} names no kept "
            f"revision; use <variant>=<revision>, one of: {listed}",
        )
        return body
    served = revision.template
    wire = [
        v.model_copy(
            update={
                "model_version": served.model_version,
                "model_repository": served.model_repository,
                "image": served.image,
                "config": served.config,
            }
        ).to_wire()
        if v.name == name
        else v.to_wire()
        for v in variants
    ]
    patch = {"metadata": {"annotations": {ROLLBACK: None}}, "spec": {"variants": wire}}
    body = patch_inference_service(api, body, patch)
    event(
        api,
        body,
        "Normal",
        "RollbackRequested",
        f"variant {name}: back to revision {number} (model version "
        f"{served.model_version or 'latest'}, image {served.image}); it rolls out as a canary",
    )
    return body


def tick(api: CountingClient, source: PrometheusSource | None, body: dict[str, Any]) -> dict[str, Any] | None:
    """The user's annotations, else one analysis of every running rollout; returns the object as
    written when a rollout moved (the caller reconciles it), None when nothing did."""
    try:
        isvc = load(body)
    except SpecError:
        return None  # reconcile reports the spec
    strategy = isvc.spec.rollout.canary
    if strategy is None:
        return None
    body = _rollback(api, body, isvc)
    body, action = _act(api, body, isvc)
    isvc = load(body)
    states, revisions = _states(isvc), tuple(isvc.status.revisions if isvc.status else ())
    running = [s for s in states.values() if s.phase in rollout.ACTIVE]
    if action and not running:
        event(api, body, "Warning", "RolloutActionIgnored", f"{action}: no rollout is running")
        return None
    shown = view(isvc)
    weights = {v.name: weight(v, RenderContext()) for v in shown.spec.effective_variants()}
    live = {s.name: s for s in observe.variant_states(api, isvc.metadata.namespace, isvc.metadata.name, weights, {})}
    now = datetime.now(UTC)
    changes = []
    for state in states.values():
        if action and state in running:
            change = rollout.on_action(state, action, revisions, now)
        elif state.phase == "Progressing" and state.weight > 0:
            measured = _measure(source, shown, state.variant, strategy.analysis_interval_seconds)
            verdict = judge(strategy.checks, measured)
            change = rollout.on_analysis(state, strategy, verdict, True, False, revisions, now)
        else:
            canary = live.get(canary_name(state.variant))
            ready, settled = bool(canary and canary.ready), _settled(live.get(state.variant))
            change = rollout.on_analysis(state, strategy, None, ready, settled, revisions, now)
        revisions = change.revisions
        changes.append(change)
    return _publish(api, body, isvc, changes) if changes else None
