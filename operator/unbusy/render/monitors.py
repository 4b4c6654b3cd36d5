"""How Prometheus finds Triton's metrics port: a ServiceMonitor or a PodMonitor.

Both relabel the pod's labels into the target labels that unbusy.series selects by, so the
alert rules, the dashboard and the scaling loop find every replica's series the same way.
"""

from __future__ import annotations

import re
from typing import Any

from unbusy import series
from unbusy.api import InferenceService
from unbusy.render import meta
from unbusy.render.service import ROLE

API_VERSION = "monitoring.coreos.com/v1"
METRICS_PORT_NAME = "metrics"
# render/service.py marks the per-variant Services with this role and the whole-service one
# with `stable`; both reach the same pods, so scraping both would count every series twice.
VARIANT_ROLE = "variant"


def metadata(isvc: InferenceService, name: str) -> dict[str, Any]:
    """metadata of a monitoring object: the operator's labels plus spec.monitoring.labels.

    Prometheus and Grafana pick these objects up by label (ruleSelector, serviceMonitorSelector,
    the dashboard sidecar): monitoring.labels win over the InferenceService's own labels, never
    over the operator's, which selectors and pruning rely on.
    """
    result = meta.metadata(isvc, name)
    bare = isvc.model_copy(update={"metadata": isvc.metadata.model_copy(update={"labels": {}})})
    result["labels"] = isvc.metadata.labels | isvc.spec.monitoring.labels | meta.labels(bare)
    return result


def pod_label_source(label: str) -> str:
    """The discovery meta label of a pod label, sanitised as Prometheus does."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label)


def relabelings() -> list[dict[str, Any]]:
    """Pod labels -> the target labels unbusy.series selects Triton series by."""
    copies = [
        (pod_label_source(meta.INFERENCE_SERVICE), series.INFERENCE_SERVICE),
        (pod_label_source(meta.VARIANT), series.VARIANT),
        ("__meta_kubernetes_pod_name", series.POD),
        ("__meta_kubernetes_namespace", series.NAMESPACE),
    ]
    return [{"action": "replace", "sourceLabels": [source], "targetLabel": target} for source, target in copies]


def _endpoint(isvc: InferenceService) -> dict[str, Any]:
    return {
        "port": METRICS_PORT_NAME,
        "path": "/metrics",
        "scheme": "http",
        "interval": isvc.spec.monitoring.interval,
        "relabelings": relabelings(),
    }


def service_monitor(isvc: InferenceService) -> dict[str, Any]:
    match = {
        meta.MANAGED_BY: meta.OPERATOR,
        meta.INFERENCE_SERVICE: isvc.metadata.name,
        ROLE: VARIANT_ROLE,
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": metadata(isvc, isvc.metadata.name),
        "spec": {"selector": {"matchLabels": match}, "endpoints": [_endpoint(isvc)]},
    }


def pod_monitor(isvc: InferenceService) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "PodMonitor",
        "metadata": metadata(isvc, isvc.metadata.name),
        "spec": {"selector": {"matchLabels": meta.selector(isvc)}, "podMetricsEndpoints": [_endpoint(isvc)]},
    }


def render(isvc: InferenceService) -> list[dict[str, Any]]:
    kind = isvc.spec.monitoring.kind
    if kind == "ServiceMonitor":
        return [service_monitor(isvc)]
    if kind == "PodMonitor":
        return [pod_monitor(isvc)]
    return []
