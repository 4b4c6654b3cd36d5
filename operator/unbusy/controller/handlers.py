"""kopf handlers. Each is glue: put a key in a work queue (workqueue.py), or tell the fleet
loops (scaler.py, rollouts.py) what the watch saw."""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf
from kubernetes.dynamic.exceptions import DynamicApiError
from urllib3.exceptions import HTTPError

from unbusy.api import GROUP, PLURAL, VERSION
from unbusy.controller import nodes, reconcile
from unbusy.controller.fleetloop import pack
from unbusy.controller.rollouts import Rollouts
from unbusy.controller.scaler import Scaler
from unbusy.controller.workqueue import WorkQueue
from unbusy.health import GONE, node_trouble
from unbusy.kube import observe
from unbusy.kube.client import connect
from unbusy.kube.status import get_inference_service
from unbusy.render.meta import INFERENCE_SERVICE, MANAGED_BY, OPERATOR
from unbusy.scaling.source import PrometheusSource

RESOURCE = (GROUP, VERSION, PLURAL)
RECONCILE_THREADS = 16  # reconciles at once (workqueue.py)
REFRESH_THREADS = 8  # status refreshes at once, beside them
KOPF_THREADS = 4  # kopf's own, for the few handlers that are not coroutines (nodes, deletions)
log = logging.getLogger("unbusy")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # our own Events say what happened; kopf's would double them
    settings.execution.max_workers = KOPF_THREADS
    # A replica that dies without a goodbye blocks its standby until its record expires: the takeover bound.
    settings.peering.lifetime = memo.get("peering_lifetime", settings.peering.lifetime)
    # Every thread (kopf's, the queues', the scaling loop's) may be in an API call at once:
    # one pooled connection each.
    pool = KOPF_THREADS + RECONCILE_THREADS + REFRESH_THREADS + 1
    memo.api = connect(memo.get("kubeconfig"), pool_size=pool)
    url = memo.get("prometheus_url")
    memo.prometheus = PrometheusSource(url) if url else None
    memo.scaler = Scaler(memo.api, memo.prometheus, memo.get("peering"))
    memo.rollouts = Rollouts(memo.api, memo.prometheus, memo.get("peering"))
    memo.scaler.start()
    memo.rollouts.start()
    memo.reconciler = WorkQueue(lambda key: _reconcile_by_key(memo, key), RECONCILE_THREADS, "reconcile")
    memo.refresher = WorkQueue(
        lambda key: _refresh_by_key(memo, key), REFRESH_THREADS, "status refresh", memo.resync_seconds
    )
    memo.reconciler.start()
    memo.refresher.start()
    # Per-object memos are shallow copies of this one, so this dict is shared by all handlers:
    # a Deployment event keeps its parent's last reconcile errors in the Degraded condition.
    memo.reconcile_errors = {}


@kopf.on.cleanup()
def stop_threads(memo: kopf.Memo, **_: Any) -> None:
    memo.scaler.stop()
    memo.rollouts.stop()
    memo.reconciler.stop()
    memo.refresher.stop()


def _guarded(work, *args: Any, **kwargs: Any) -> Any:
    """API trouble is worth kopf's retry with back-off; anything from bad input is already reported."""
    try:
        return work(*args, **kwargs)
    except (DynamicApiError, HTTPError) as error:
        raise kopf.TemporaryError(f"API server: {error}", delay=10) from error


def _reconcile_by_key(memo: kopf.Memo, key: tuple[str, str]) -> None:
    """Make one InferenceService's children match its spec (the reconcile queue's threads), as
    it is when its turn comes."""
    body = get_inference_service(memo.api, *key)
    if body is None:
        _forget(memo, key)
        return
    outcome = reconcile.reconcile(memo.api, body)
    memo.reconcile_errors[key] = outcome.errors if outcome else []


def _refresh_by_key(memo: kopf.Memo, key: tuple[str, str]) -> None:
    """Recompute one InferenceService's status from its children (the refresh queue's threads),
    with its last reconcile's errors kept in the Degraded condition."""
    parent = get_inference_service(memo.api, *key)
    if parent is None:  # deleted while no event could say so (the operator paused or down)
        _forget(memo, key)
    else:
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
        # A namespaced operator lists where its InferenceServices are: `--namespace` may be a glob.
        served = memo.refresher.namespaces() if memo.get("namespaces") else None
        for key in _guarded(observe.services_on_node, memo.api, node, served):
            memo.refresher.ask(key)


def _operator_mode(spec: Any) -> bool:
    return spec.get("autoscaling", {}).get("mode", "operator") == "operator"


def _canary_strategy(spec: Any) -> bool:
    return bool(spec.get("rollout", {}).get("canary"))


def _spec_unreconciled(body: Any) -> bool:
    """A generation (spec) no reconcile has answered yet: the API server moves `generation` on
    with every change of the spec, and never for status or metadata."""
    meta, status = body["metadata"], body.get("status") or {}
    return not meta.get("deletionTimestamp") and status.get("observedGeneration") != meta.get("generation")


@kopf.on.event(*RESOURCE)
async def inference_service_seen(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Level-triggered, as controller-runtime is: every InferenceService is reconciled when the
    operator starts (kopf's listing, type None) and whenever its spec has a generation not yet
    reconciled; resynced by the refresh queue; in operator mode scaled by the fleet's scaling
    loop, under a canary strategy rolled out by the rollouts loop, each from the body of its
    latest event. No kopf change handler (create/update/resume) and no timer or daemon: kopf
    writes no annotation of its own to the object and keeps no body of it (fleetloop.py,
    workqueue.py)."""
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    if type == "DELETED":
        # Children carry owner references: the garbage collector removes them.
        log.info("%s/%s: deleted; its children go with it", *key)
        _forget(memo, key)
        return
    if type is None or _spec_unreconciled(body):
        memo.reconciler.ask(key)
    memo.refresher.track(key)
    spec, packed = body.get("spec", {}), pack(body)
    for loop, concerned in ((memo.scaler, _operator_mode(spec)), (memo.rollouts, _canary_strategy(spec))):
        if concerned:
            loop.join(key, packed)
        else:
            loop.leave(key)


def _forget(memo: kopf.Memo, key: tuple[str, str]) -> None:
    memo.reconciler.forget(key)
    memo.refresher.forget(key)
    memo.scaler.leave(key)
    memo.rollouts.leave(key)
    memo.reconcile_errors.pop(key, None)
