"""A Service per variant, and one stable Service that spans every variant."""

from __future__ import annotations

from typing import Any

from unbusy.api import InferenceService
from unbusy.render import meta

ROLE = "serving.unbusy.dev/role"

PORTS = [
    {"name": "http", "port": meta.HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
    {"name": "grpc", "port": meta.GRPC_PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
    {"name": "metrics", "port": meta.METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
]


def _service(isvc: InferenceService, name: str, variant: str | None, role: str) -> dict[str, Any]:
    metadata = meta.metadata(isvc, name, variant)
    metadata["labels"][ROLE] = role
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {"type": "ClusterIP", "selector": meta.selector(isvc, variant), "ports": PORTS},
    }


def render(isvc: InferenceService) -> list[dict[str, Any]]:
    # The stable Service reaches every ready replica of every variant: in-cluster clients
    # that bypass the ingress still get answered while one variant is down.
    stable = _service(isvc, isvc.metadata.name, None, "stable")
    variants = [
        _service(isvc, meta.variant_name(isvc, v.name), v.name, "variant") for v in isvc.spec.effective_variants()
    ]
    return [stable, *variants]
