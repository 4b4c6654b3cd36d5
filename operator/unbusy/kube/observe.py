"""Read what the cluster shows about an InferenceService's replicas."""

from __future__ import annotations

from typing import Any

from unbusy.health import VariantState
from unbusy.kube.client import CountingClient
from unbusy.render.meta import INFERENCE_SERVICE, VARIANT, children_selector, label_selector
from unbusy.render.routing import NGINX


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c["type"] == type_), {})


def _unschedulable(pods: list[dict[str, Any]]) -> tuple[int, str | None]:
    """How many replicas the scheduler could not place, and its message for one of them."""
    stuck = [
        _condition(p, "PodScheduled")
        for p in pods
        if _condition(p, "PodScheduled").get("reason") == "Unschedulable" and not p["metadata"].get("deletionTimestamp")
    ]
    return len(stuck), (stuck[0].get("message") if stuck else None)


def _pods(
    api: CountingClient, namespace: str, name: str, variant: str, field_selector: str | None = None
) -> list[dict[str, Any]]:
    pods = api.resources.get(api_version="v1", kind="Pod")
    selected = label_selector({INFERENCE_SERVICE: name, VARIANT: variant})
    return api.get(pods, namespace=namespace, label_selector=selected, field_selector=field_selector).to_dict()["items"]


def variant_states(
    api: CountingClient, namespace: str, name: str, weights: dict[str, int], rendered: dict[str, int | None]
) -> list[VariantState]:
    """One VariantState per variant, in the spec's order."""
    deployments = api.resources.get(api_version="apps/v1", kind="Deployment")
    live = {
        d["metadata"]["labels"].get(VARIANT): d
        for d in api.get(deployments, namespace=namespace, label_selector=children_selector(name)).to_dict()["items"]
    }
    states = []
    for variant, weight in weights.items():
        deployment = live.get(variant)
        if deployment is None:
            states.append(VariantState(variant, weight, desired=rendered.get(variant) or 0))
            continue
        spec, status = deployment["spec"], deployment.get("status") or {}
        desired = spec.get("replicas", 1)
        ready = status.get("readyReplicas") or 0
        pending, message = 0, None
        if ready < desired:
            pending, message = _unschedulable(_pods(api, namespace, name, variant, "status.phase=Pending"))
        progress = _condition(deployment, "Progressing")
        failure = _condition(deployment, "ReplicaFailure")
        states.append(
            VariantState(
                variant,
                weight,
                desired=desired,
                replicas=status.get("replicas") or 0,
                ready=ready,
                updated=status.get("updatedReplicas") or 0,
                exists=True,
                rolled_out=(status.get("observedGeneration") or 0) >= deployment["metadata"].get("generation", 0),
                stalled=progress.get("message") if progress.get("reason") == "ProgressDeadlineExceeded" else None,
                replica_failure=failure.get("message") if failure.get("status") == "True" else None,
                unschedulable=message,
                pending=pending,
            )
        )
    return states


def pod_readiness(api: CountingClient, namespace: str, name: str, variant: str) -> dict[str, bool]:
    """Live (not terminating) pods of one variant -> whether each passes its readiness probe."""
    return {
        p["metadata"]["name"]: _condition(p, "Ready").get("status") == "True"
        for p in _pods(api, namespace, name, variant)
        if not p["metadata"].get("deletionTimestamp")
    }


def live_pods(api: CountingClient, namespace: str, name: str) -> dict[str, tuple[str, bool]]:
    """Every live (not terminating) pod of an InferenceService -> (its variant, whether it is Ready)."""
    pods = api.resources.get(api_version="v1", kind="Pod")
    items = api.get(pods, namespace=namespace, label_selector=label_selector({INFERENCE_SERVICE: name}))
    return {
        p["metadata"]["name"]: (
            p["metadata"]["labels"].get(VARIANT, ""),
            _condition(p, "Ready").get("status") == "True",
        )
        for p in items.to_dict()["items"]
        if not p["metadata"].get("deletionTimestamp")
    }


def nginx_weights(api: CountingClient, namespace: str, name: str) -> dict[str, int]:
    """{variant: weight} as ingress-nginx splits traffic by the live Ingresses: the canary Ingress's
    variant takes its canary-weight, the primary's the rest."""
    ingresses = api.resources.get(api_version="networking.k8s.io/v1", kind="Ingress")
    items = api.get(ingresses, namespace=namespace, label_selector=children_selector(name)).to_dict()["items"]
    canary = {
        i["metadata"]["labels"][VARIANT]: int(i["metadata"]["annotations"][f"{NGINX}/canary-weight"])
        for i in items
        if (i["metadata"].get("annotations") or {}).get(f"{NGINX}/canary") == "true"
    }
    primary = {
        i["metadata"]["labels"][VARIANT]: 100 - sum(canary.values())
        for i in items
        if i["metadata"]["labels"][VARIANT] not in canary
    }
    return primary | canary


def scale_deployment(api: CountingClient, namespace: str, name: str, replicas: int) -> None:
    """Write replicas through the Deployment's scale subresource, as kubectl scale does."""
    deployments = api.resources.get(api_version="apps/v1", kind="Deployment")
    api.patch(
        deployments.scale,
        name=name,
        namespace=namespace,
        body={"spec": {"replicas": replicas}},
        content_type="application/merge-patch+json",
    )
