"""HorizontalPodAutoscalers (autoscaling/v2), one per variant, in autoscaling mode hpa.

The queue and GPU metrics reach the HPA through prometheus-adapter under the names below
(examples/prometheus-adapter-rules.yaml maps them to Triton's and DCGM's series).
"""

from __future__ import annotations

from typing import Any

from unbusy.api import InferenceService
from unbusy.api.autoscaling import Autoscaling, ScalingRules
from unbusy.render import meta
from unbusy.render.context import replica_bounds

# External, AverageValue: ceil(sum / target), so a replica still loading its model (queue 0)
# does not dilute the average the way a Pods metric would.
QUEUE_METRIC = "unbusy_triton_pending_requests"
GPU_METRIC = "unbusy_gpu_utilization_percent"


def _rules(rules: ScalingRules, select: str) -> dict[str, Any]:
    return {
        "stabilizationWindowSeconds": rules.stabilization_window_seconds,
        "selectPolicy": select,
        "policies": [
            {"type": "Pods", "value": rules.max_pods_per_step, "periodSeconds": rules.period_seconds},
            {"type": "Percent", "value": rules.max_percent_per_step, "periodSeconds": rules.period_seconds},
        ],
    }


def behavior(scaling: Autoscaling) -> dict[str, Any]:
    """The HPA's behaviour: fast up (Max of the two policies), slow down (Min of them); KEDA's
    ScaledObjects pass the same to the HPA they make."""
    return {
        "scaleUp": _rules(scaling.behavior.scale_up, "Max"),
        "scaleDown": _rules(scaling.behavior.scale_down, "Min"),
    }


def _metrics(isvc: InferenceService, variant: str) -> list[dict[str, Any]]:
    targets = isvc.spec.autoscaling.targets
    selector = {"matchLabels": {"inferenceservice": isvc.metadata.name, "variant": variant}}
    metrics = []
    if targets.queue_depth_per_replica:
        metrics.append(
            {
                "type": "External",
                "external": {
                    "metric": {"name": QUEUE_METRIC, "selector": selector},
                    "target": {"type": "AverageValue", "averageValue": str(targets.queue_depth_per_replica)},
                },
            }
        )
    if targets.gpu_utilization_percent:
        metrics.append(
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": GPU_METRIC},
                    "target": {"type": "AverageValue", "averageValue": str(targets.gpu_utilization_percent)},
                },
            }
        )
    if targets.cpu_utilization_percent:
        metrics.append(
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": targets.cpu_utilization_percent},
                },
            }
        )
    return metrics


def render(isvc: InferenceService) -> list[dict[str, Any]]:
    scaling = isvc.spec.autoscaling
    if scaling.mode != "hpa":
        return []
    manifests = []
    for variant in isvc.spec.effective_variants():
        low, high = replica_bounds(isvc, variant)
        name = meta.variant_name(isvc, variant.name)
        spec = {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": max(low, 1),
            "maxReplicas": high,
            "metrics": _metrics(isvc, variant.name),
            "behavior": behavior(scaling),
        }
        manifests.append(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": meta.metadata(isvc, name, variant.name),
                "spec": spec,
            }
        )
    return manifests
