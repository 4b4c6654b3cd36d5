"""KEDA ScaledObjects (keda.sh/v1alpha1), one per variant, in autoscaling mode keda.

For clusters that already run KEDA. Its Prometheus scaler runs the operator's own queries
(scaling/promql.py, the demand from render/edge.py), so the two modes scale on the same
numbers. Each trigger is an AverageValue target, replicas = ceil(query / threshold), the
operator's rule for each input:

- queue: every request pending in the variant's Tritons, per queueDepthPerReplica;
- demand: the variant's offered load, refused requests included, per the share of a replica's
  capacity the demand may fill (capacity.rpsPerReplica x capacityUtilizationPercent; KEDA
  cannot learn the capacity from Triton's counters as the operator does).

KEDA makes an HPA of the ScaledObject, with hpa mode's bounds and behaviour (render/hpa.py).
When Prometheus cannot be read failureThreshold times in a row, KEDA's fallback does what
autoscaling.onMetricsMissing says: hold the current replicas, or go to minReplicas.
"""

from __future__ import annotations

from typing import Any

from unbusy.api import InferenceService
from unbusy.gpu.request import GpuRequest
from unbusy.render import hpa, meta
from unbusy.render.context import RenderContext, replica_bounds, weight

# The module, not its names: scaling.promql builds on render (meta, edge) itself, so either
# may be imported first.
from unbusy.scaling import promql

FALLBACK = {"hold": "currentReplicas", "minReplicas": "static"}


def _trigger(name: str, server: str, query: str, threshold: float) -> dict[str, Any]:
    # AverageValue: KEDA applies its fallback only to triggers of this metric type.
    return {
        "type": "prometheus",
        "name": name,
        "metricType": "AverageValue",
        "metadata": {"serverAddress": server, "query": query, "threshold": f"{threshold:g}"},
    }


def _triggers(isvc: InferenceService, queries: promql.Queries) -> list[dict[str, Any]]:
    scaling = isvc.spec.autoscaling
    targets, server = scaling.targets, scaling.keda.server_address
    triggers = []
    if targets.queue_depth_per_replica:
        triggers.append(_trigger("queue", server, queries.pending_total, targets.queue_depth_per_replica))
    if targets.capacity_utilization_percent:
        per_replica = scaling.capacity.rps_per_replica * targets.capacity_utilization_percent / 100
        triggers.append(_trigger("demand", server, queries.demand.requests, per_replica))
    return triggers


def render(isvc: InferenceService, ctx: RenderContext, gpu: GpuRequest) -> list[dict[str, Any]]:
    scaling = isvc.spec.autoscaling
    if scaling.mode != "keda":
        return []
    manifests = []
    for variant in isvc.spec.effective_variants():
        low, high = replica_bounds(isvc, variant)
        name = meta.variant_name(isvc, variant.name)
        queries = promql.variant_queries(isvc, variant.name, gpu, share=weight(variant, ctx) / 100)
        spec = {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "pollingInterval": scaling.interval_seconds,
            "minReplicaCount": low,
            "maxReplicaCount": high,
            "fallback": {
                "failureThreshold": scaling.keda.failure_threshold,
                "replicas": low,
                "behavior": FALLBACK[scaling.on_metrics_missing],
            },
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": hpa.behavior(scaling)}},
            "triggers": _triggers(isvc, queries),
        }
        manifests.append(
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledObject",
                "metadata": meta.metadata(isvc, name, variant.name),
                "spec": spec,
            }
        )
    return manifests
