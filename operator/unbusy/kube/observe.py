"""Read what the cluster shows about InferenceServices' replicas: one at a time (reconcile and
status), or a whole fleet's at once (the scaling loop: two paged lists per namespace, not two
per InferenceService)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from unbusy.health import VariantState
from unbusy.kube.client import CountingClient, plain
from unbusy.render.meta import INFERENCE_SERVICE, MANAGED_BY, OPERATOR, VARIANT, children_selector, label_selector
from unbusy.render.routing import NGINX
from unbusy.timestamps import parse

PAGE = 250  # objects per list request: a fleet's pods are read a page at a time, never all at once


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c["type"] == type_), {})


@dataclass(frozen=True)
class Pod:
    """What the operator needs of one replica."""

    name: str
    ready: bool  # passes its readiness probe
    deleting: bool
    unschedulable: str | None  # the scheduler's message while it cannot place a pending pod
    node: str | None  # the node it is bound to
    created: float | None = None  # metadata.creationTimestamp, seconds since the epoch
    ready_since: float | None = None  # while Ready: its Ready condition's lastTransitionTime


def _seconds(text: str | None) -> float | None:
    return parse(text).timestamp() if text else None


def _pod(pod: dict[str, Any]) -> Pod:
    scheduled = _condition(pod, "PodScheduled")
    pending = pod.get("status", {}).get("phase") == "Pending" and scheduled.get("reason") == "Unschedulable"
    ready = _condition(pod, "Ready")
    return Pod(
        name=pod["metadata"]["name"],
        ready=ready.get("status") == "True",
        deleting=bool(pod["metadata"].get("deletionTimestamp")),
        unschedulable=(scheduled.get("message") or "") if pending else None,
        node=pod.get("spec", {}).get("nodeName"),
        created=_seconds(pod["metadata"].get("creationTimestamp")),
        ready_since=_seconds(ready.get("lastTransitionTime")) if ready.get("status") == "True" else None,
    )


def _items(
    api: CountingClient,
    api_version: str,
    kind: str,
    namespace: str | None,
    selector: str,
    field_selector: str | None = None,
) -> Iterator[dict[str, Any]]:
    resource = api.resources.get(api_version=api_version, kind=kind)
    token = None
    while True:
        page = api.get(
            resource,
            namespace=namespace,
            label_selector=selector,
            field_selector=field_selector,
            limit=PAGE,
            _continue=token,
            serializer=plain,
        )
        yield from page["items"]
        token = page["metadata"].get("continue")
        if not token:
            return


def _pods(api: CountingClient, namespace: str, name: str, variant: str, field_selector: str | None = None) -> list[Pod]:
    selected = label_selector({INFERENCE_SERVICE: name, VARIANT: variant})
    return [_pod(p) for p in _items(api, "v1", "Pod", namespace, selected, field_selector)]


def states_of(
    live: dict[str, dict[str, Any]],
    pods: Callable[[str], list[Pod]],
    weights: dict[str, int],
    rendered: dict[str, int | None],
    lost_nodes: Mapping[str, str] | None = None,
) -> list[VariantState]:
    """One VariantState per variant, in the spec's order, from its live Deployment (variant ->
    Deployment) and its pods: those bound to `lost_nodes` (node -> why, see health.node_trouble;
    `pods` must then give every pod) and, while it lacks ready replicas, the pending ones."""
    lost_nodes = lost_nodes or {}
    states = []
    for variant, weight in weights.items():
        deployment = live.get(variant)
        if deployment is None:
            states.append(VariantState(variant, weight, desired=rendered.get(variant) or 0))
            continue
        spec, status = deployment["spec"], deployment.get("status") or {}
        desired = spec.get("replicas", 1)
        lost = [p for p in pods(variant) if p.node in lost_nodes and not p.deleting] if lost_nodes else []
        ready = max(0, (status.get("readyReplicas") or 0) - sum(p.ready for p in lost))  # the pods may be newer
        stuck = [p for p in pods(variant) if p.unschedulable is not None and not p.deleting] if ready < desired else []
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
                unschedulable=stuck[0].unschedulable if stuck else None,
                pending=len(stuck),
                lost=len(lost),
                lost_on=tuple(sorted({(p.node, lost_nodes[p.node]) for p in lost})),
            )
        )
    return states


def variant_states(
    api: CountingClient,
    namespace: str,
    name: str,
    weights: dict[str, int],
    rendered: dict[str, int | None],
    lost_nodes: Mapping[str, str] | None = None,
) -> list[VariantState]:
    """One VariantState per variant of one InferenceService, in the spec's order. Its pods are
    listed whole (one list) only while some node is lost; else only a variant's pending ones, and
    only while it lacks ready replicas."""
    live = {
        d["metadata"]["labels"].get(VARIANT): d
        for d in _items(api, "apps/v1", "Deployment", namespace, children_selector(name))
    }
    if lost_nodes:
        every: dict[str, list[Pod]] = defaultdict(list)
        for p in _items(api, "v1", "Pod", namespace, label_selector({INFERENCE_SERVICE: name})):
            every[p["metadata"]["labels"].get(VARIANT, "")].append(_pod(p))
        return states_of(live, lambda variant: every.get(variant, []), weights, rendered, lost_nodes)
    return states_of(
        live, lambda variant: _pods(api, namespace, name, variant, "status.phase=Pending"), weights, rendered
    )


def _trimmed(deployment: dict[str, Any]) -> dict[str, Any]:
    """What states_of reads of a Deployment: a fleet's are kept without their pod templates."""
    meta = deployment["metadata"]
    return {
        "metadata": {"labels": meta.get("labels") or {}, "generation": meta.get("generation", 0)},
        "spec": {"replicas": deployment["spec"].get("replicas", 1)},
        "status": deployment.get("status") or {},
    }


@dataclass(frozen=True)
class Fleet:
    """The Deployments and pods of every InferenceService of some namespaces, as listed at once."""

    deployments: dict[tuple[str, str], dict[str, dict[str, Any]]]  # (namespace, name) -> variant -> Deployment
    pods: dict[tuple[str, str, str], list[Pod]]  # (namespace, name, variant) -> its pods

    def variant_states(
        self, namespace: str, name: str, weights: dict[str, int], rendered: dict[str, int | None]
    ) -> list[VariantState]:
        live = self.deployments.get((namespace, name), {})
        return states_of(live, lambda variant: self.pods.get((namespace, name, variant), []), weights, rendered)

    def pod_readiness(self, namespace: str, name: str, variant: str) -> dict[str, bool]:
        """Live (not terminating) pods of one variant -> whether each passes its readiness probe."""
        return {p.name: p.ready for p in self.live_pods(namespace, name, variant)}

    def live_pods(self, namespace: str, name: str, variant: str) -> list[Pod]:
        """One variant's pods that are not terminating."""
        return [p for p in self.pods.get((namespace, name, variant), []) if not p.deleting]


# Up to this many InferenceServices of a namespace are listed by name (a set-based selector);
# more, and the namespace's are listed whole: one page costs less than a URL of a thousand names.
BY_NAME = 100


def fleet(api: CountingClient, names: Iterable[tuple[str, str]]) -> Fleet:
    """The Deployments and pods of these InferenceServices (namespace, name)."""
    deployments: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    pods: dict[tuple[str, str, str], list[Pod]] = defaultdict(list)
    by_namespace: dict[str, set[str]] = defaultdict(set)
    for namespace, name in names:
        by_namespace[namespace].add(name)
    for namespace, wanted in sorted(by_namespace.items()):
        which = f"{INFERENCE_SERVICE} in ({','.join(sorted(wanted))})" if len(wanted) <= BY_NAME else INFERENCE_SERVICE
        for d in _items(api, "apps/v1", "Deployment", namespace, f"{MANAGED_BY}={OPERATOR},{which}"):
            labels = d["metadata"]["labels"]
            deployments[namespace, labels[INFERENCE_SERVICE]][labels.get(VARIANT)] = _trimmed(d)
        for p in _items(api, "v1", "Pod", namespace, f"{which},{VARIANT}"):
            labels = p["metadata"]["labels"]
            pods[namespace, labels[INFERENCE_SERVICE], labels[VARIANT]].append(_pod(p))
    return Fleet(dict(deployments), dict(pods))


def services_on_node(api: CountingClient, node: str, namespaces: Iterable[str] | None) -> set[tuple[str, str]]:
    """(namespace, name) of every InferenceService with a pod bound to `node`, in these namespaces
    (None: in every namespace, listed at once)."""
    selector = f"{MANAGED_BY}={OPERATOR},{INFERENCE_SERVICE}"
    return {
        (p["metadata"]["namespace"], p["metadata"]["labels"][INFERENCE_SERVICE])
        for namespace in ([None] if namespaces is None else namespaces)
        for p in _items(api, "v1", "Pod", namespace, selector, f"spec.nodeName={node}")
    }


def live_pods(api: CountingClient, namespace: str, name: str) -> dict[str, tuple[str, bool]]:
    """Every live (not terminating) pod of an InferenceService -> (its variant, whether it is Ready)."""
    live = {}
    for item in _items(api, "v1", "Pod", namespace, label_selector({INFERENCE_SERVICE: name})):
        pod = _pod(item)
        if not pod.deleting:
            live[pod.name] = (item["metadata"]["labels"].get(VARIANT, ""), pod.ready)
    return live


def ready_addresses(api: CountingClient, namespace: str, name: str) -> dict[str, tuple[str, str]]:
    """Every Ready, live pod of an InferenceService that has an IP -> (its variant, its IP)."""
    addresses = {}
    for item in _items(api, "v1", "Pod", namespace, label_selector({INFERENCE_SERVICE: name})):
        pod, ip = _pod(item), item.get("status", {}).get("podIP")
        if pod.ready and not pod.deleting and ip:
            addresses[pod.name] = (item["metadata"]["labels"].get(VARIANT, ""), ip)
    return addresses


def nginx_weights(api: CountingClient, namespace: str, name: str) -> dict[str, int]:
    """{variant: weight} as ingress-nginx splits traffic by the live Ingresses: the canary Ingress's
    variant takes its canary-weight, the primary's the rest."""
    ingresses = api.resources.get(api_version="networking.k8s.io/v1", kind="Ingress")
    items = api.get(ingresses, namespace=namespace, label_selector=children_selector(name), serializer=plain)["items"]
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


def route_weights(api: CountingClient, namespace: str, name: str) -> dict[str, int]:
    """{variant: weight} of the backendRefs of the InferenceService's HTTPRoute, as a Gateway splits
    traffic by it (empty while there is none); a backendRef names a variant's Service, <name>-<variant>."""
    routes = api.resources.get(api_version="gateway.networking.k8s.io/v1", kind="HTTPRoute")
    items = api.get(routes, namespace=namespace, label_selector=children_selector(name), serializer=plain)["items"]
    return {
        ref["name"].removeprefix(f"{name}-"): ref.get("weight", 1)
        for route in items
        for rule in route["spec"].get("rules", [])
        for ref in rule.get("backendRefs", [])
    }


def scale_deployment(api: CountingClient, namespace: str, name: str, replicas: int) -> None:
    """Write replicas through the Deployment's scale subresource, as kubectl scale does."""
    deployments = api.resources.get(api_version="apps/v1", kind="Deployment")
    api.patch(
        deployments.scale,
        name=name,
        namespace=namespace,
        body={"spec": {"replicas": replicas}},
        content_type="application/merge-patch+json",
        serializer=plain,
    )
