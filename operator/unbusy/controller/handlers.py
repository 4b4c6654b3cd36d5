"""kopf handlers. Each is glue: pick the object, call reconcile or refresh_status."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import kopf
from kubernetes.dynamic.exceptions import DynamicApiError
from urllib3.exceptions import HTTPError

from unbusy.api import GROUP, PLURAL, VERSION
from unbusy.controller import nodes, reconcile, rollout
from unbusy.controller.refresher import Refresher
from unbusy.controller.scaler import Scaler
from unbusy.health import GONE, node_trouble
from unbusy.kube import observe
from unbusy.kube.client import connect
from unbusy.kube.status import get_inference_service
from unbusy.render.meta import INFERENCE_SERVICE, MANAGED_BY, OPERATOR
from unbusy.scaling.source import PrometheusSource

RESOURCE = (GROUP, VERSION, PLURAL)
REFRESH_THREADS = 8  # status refreshes at once (refresher.py), beside kopf's reconciles
log = logging.getLogger("unbusy")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # our own Events say what happened; kopf's would double them
    settings.execution.max_workers = 16
    # A replica that dies without a goodbye blocks its standby until its record expires: the takeover bound.
    settings.peering.lifetime = memo.get("peering_lifetime", settings.peering.lifetime)
    # Every worker thread, refresh thread and the scaling loop's may be in an API call at once:
    # one pooled connection each.
    pool = settings.execution.max_workers + REFRESH_THREADS + 1
    memo.api = connect(memo.get("kubeconfig"), pool_size=pool)
    url = memo.get("prometheus_url")
    memo.prometheus = PrometheusSource(url) if url else None
    memo.scaler = Scaler(memo.api, memo.prometheus)
    memo.scaler.start()
    memo.refresher = Refresher(lambda key: _refresh_by_key(memo, key), REFRESH_THREADS)
    memo.refresher.start()
    # Per-object memos are shallow copies of this one, so this dict is shared by all handlers:
    # a Deployment event keeps its parent's last reconcile errors in the Degraded condition.
    memo.reconcile_errors = {}


@kopf.on.cleanup()
def stop_scaling(memo: kopf.Memo, **_: Any) -> None:
    memo.scaler.stop()
    memo.refresher.stop()


def _guarded(work, *args: Any, **kwargs: Any) -> Any:
    """API trouble is worth a retry with back-off; anything from bad input is already reported."""
    try:
        return work(*args, **kwargs)
    except (DynamicApiError, HTTPError) as error:
        raise kopf.TemporaryError(f"API server: {error}", delay=10) from error


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
def reconcile_inference_service(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    outcome = _guarded(reconcile.reconcile, memo.api, dict(body))
    memo.reconcile_errors[(body["metadata"]["namespace"], body["metadata"]["name"])] = outcome.errors if outcome else []


def _refresh_by_key(memo: kopf.Memo, key: tuple[str, str]) -> None:
    """Recompute one InferenceService's status from its children (refresher.py's threads), with
    its last reconcile's errors kept in the Degraded condition."""
    parent = get_inference_service(memo.api, *key)
    if parent is not None:
        errors = memo.reconcile_errors.get(key, [])
        reconcile.refresh_status(memo.api, parent, errors=errors, probe_models=memo.get("probe_models", False))


@kopf.on.event("apps", "v1", "deployments", labels={MANAGED_BY: OPERATOR, INFERENCE_SERVICE: kopf.PRESENT})
async def deployment_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Keep the parent's status true as replicas come and go."""
    meta = body["metadata"]
    memo.refresher.ask((meta["namespace"], meta["labels"][INFERENCE_SERVICE]))


@kopf.on.event("", "v1", "nodes")
def node_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A node lost (deleted, not Ready) or back: the status of every InferenceService with replicas
    on it says so at once, not only once Kubernetes deletes their pods (a minute or more)."""
    node = body["metadata"]["name"]
    if nodes.LOST.note(node, GONE if type == "DELETED" else node_trouble(body), time.monotonic()):
        for key in _guarded(observe.services_on_node, memo.api, node, memo.get("namespaces", [])):
            memo.refresher.ask(key)


async def resync_status(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The status follows the children even where no event comes: one the operator missed (killed,
    a failed call) or a write it lost. Writes nothing when nothing changed."""
    memo.refresher.ask((body["metadata"]["namespace"], body["metadata"]["name"]))


def resync_every(seconds: float) -> None:
    """Run resync_status for every InferenceService every `seconds`, the first at a random point
    of the first interval, so that a thousand of them do not all resync at once."""
    kopf.timer(*RESOURCE, interval=seconds, initial_delay=lambda **_: random.uniform(0, seconds))(resync_status)


def _operator_mode(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("autoscaling", {}).get("mode", "operator") == "operator"


@kopf.daemon(*RESOURCE, when=_operator_mode, cancellation_timeout=10)
async def scale_inference_service(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """In operator mode an InferenceService belongs to the fleet's scaling loop (scaler.py): one
    tick per spec.autoscaling.intervalSeconds scales every variant and moves weight to and from
    spec.fallback's variant. A coroutine that waits, not a thread per InferenceService."""
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    memo.scaler.join(key, body)
    try:
        await stopped.wait()
    finally:
        memo.scaler.leave(key)


def _canary_strategy(spec: kopf.Spec, **_: Any) -> bool:
    return bool(spec.get("rollout", {}).get("canary"))


# How often the rollout loop looks for the user's annotations between analyses.
ANNOTATION_POLL_S = 1.0


def _roll_out_once(memo: kopf.Memo, body: dict[str, Any]) -> None:
    """One analysis (or the user's action); a rollout that moved is reconciled at once, so its
    weights reach the routes."""
    try:
        moved = rollout.tick(memo.api, memo.prometheus, body)
        if moved is not None:
            reconcile.reconcile(memo.api, moved)
    except (DynamicApiError, HTTPError) as error:  # a lost race included: the next tick reads again
        meta = body["metadata"]
        log.warning("%s/%s: rollout tick failed: %s", meta["namespace"], meta["name"], error)


@kopf.daemon(*RESOURCE, when=_canary_strategy, cancellation_timeout=10)
async def roll_out_inference_service(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Canary rollouts: one analysis per spec.rollout.canary.analysisIntervalSeconds, and the
    user's pause/resume/abort/promote/rollback annotations within a second. A coroutine that
    borrows a thread only while an analysis runs, so a thousand canaries are not a thousand
    threads."""
    since_analysis = 0.0
    while not stopped:
        annotations = body.get("metadata", {}).get("annotations") or {}
        interval = body.get("spec", {}).get("rollout", {}).get("canary", {}).get("analysisIntervalSeconds", 30)
        if since_analysis >= interval or rollout.ACTION in annotations or rollout.ROLLBACK in annotations:
            since_analysis = 0.0
            await asyncio.to_thread(_roll_out_once, memo, dict(body))
        await stopped.wait(ANNOTATION_POLL_S)
        since_analysis += ANNOTATION_POLL_S


# Optional: no finalizer of its own (the resync timer and the scaling daemon do add kopf's).
@kopf.on.delete(*RESOURCE, optional=True)
def deleted(body: kopf.Body, **_: Any) -> None:
    # Children carry owner references: the garbage collector removes them.
    log.info("%s/%s: deleted; its children go with it", body["metadata"]["namespace"], body["metadata"]["name"])
