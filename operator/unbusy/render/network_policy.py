"""A NetworkPolicy per InferenceService: only the routing layer (and the operator) reach Triton's
HTTP and gRPC ports, only Prometheus its metrics port, nobody else any port of its pods."""

from __future__ import annotations

from typing import Any

from unbusy.api import InferenceService
from unbusy.api.network_policy import NetworkPeer
from unbusy.render import meta

# The label the API server sets on every namespace to its own name (Kubernetes 1.22+).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
SERVING_PORTS = ("http", "grpc")  # Triton's container ports (render/deployment.py), by name
METRICS_PORTS = ("metrics",)


def peer(allowed: NetworkPeer) -> dict[str, Any]:
    selected: dict[str, Any] = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: allowed.namespace}}}
    if allowed.pod_labels:
        selected["podSelector"] = {"matchLabels": dict(allowed.pod_labels)}
    return selected


def _rule(peers: list[NetworkPeer], ports: tuple[str, ...]) -> list[dict[str, Any]]:
    # A rule without `from` admits every source: no peers means no rule at all, so nobody.
    if not peers:
        return []
    return [{"from": [peer(p) for p in peers], "ports": [{"protocol": "TCP", "port": port} for port in ports]}]


def render(isvc: InferenceService) -> list[dict[str, Any]]:
    policy = isvc.spec.network_policy
    if not policy.enabled:
        return []
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta.metadata(isvc, isvc.metadata.name),
            "spec": {
                "podSelector": {"matchLabels": meta.selector(isvc)},
                "policyTypes": ["Ingress"],
                "ingress": _rule(policy.serving, SERVING_PORTS) + _rule(policy.metrics, METRICS_PORTS),
            },
        }
    ]
