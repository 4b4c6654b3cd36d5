"""Names and labels every child shares, so that all rooms agree on them."""

from __future__ import annotations

from typing import Any

from unbusy import series
from unbusy.api import InferenceService

MANAGED_BY = "app.kubernetes.io/managed-by"
INFERENCE_SERVICE = "serving.unbusy.dev/inferenceservice"
VARIANT = "serving.unbusy.dev/variant"
OPERATOR = "unbusy"

# Triton's three ports, named so that Services and monitors refer to them by name.
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002


def variant_name(isvc: InferenceService, variant: str) -> str:
    """Deployment, Service, PDB and HPA of one variant share this name."""
    return f"{isvc.metadata.name}-{variant}"


def series_scope(isvc: InferenceService, variant: str | None = None) -> series.Scope:
    """Where the metric series of the replicas of the InferenceService, or of one variant, live."""
    variants = [variant] if variant else [v.name for v in isvc.spec.effective_variants()]
    deployments = tuple(variant_name(isvc, name) for name in variants)
    return series.Scope(isvc.metadata.namespace, isvc.metadata.name, deployments, variant)


def selector(isvc: InferenceService, variant: str | None = None) -> dict[str, str]:
    """Labels that select the pods of the whole InferenceService, or of one variant."""
    labels = {INFERENCE_SERVICE: isvc.metadata.name}
    return labels | ({VARIANT: variant} if variant else {})


def label_selector(labels: dict[str, str]) -> str:
    """Labels as the API's labelSelector query string."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def selector_string(isvc: InferenceService) -> str:
    return label_selector(selector(isvc))


def children_selector(name: str) -> str:
    """Every child the operator made for the InferenceService `name`."""
    return label_selector({MANAGED_BY: OPERATOR, INFERENCE_SERVICE: name})


def labels(isvc: InferenceService, variant: str | None = None) -> dict[str, str]:
    """The operator's labels, under the user's own labels of the InferenceService."""
    ours = {
        MANAGED_BY: OPERATOR,
        "app.kubernetes.io/name": "triton",
        "app.kubernetes.io/instance": isvc.metadata.name,
    }
    return isvc.metadata.labels | ours | selector(isvc, variant)


def metadata(isvc: InferenceService, name: str, variant: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": isvc.metadata.namespace, "labels": labels(isvc, variant), **extra}


def int_or_percent(value: str) -> int | str:
    """The spec's '25%' or '1' as the IntOrString a Kubernetes object expects."""
    return value if value.endswith("%") else int(value)
