"""KEDA ScaledObjects (keda.sh/v1alpha1), one per variant, in autoscaling mode keda.

For clusters that already run KEDA. Its Prometheus scaler runs the operator's own queries (the
queue from series.py, the demand from render/edge.py, as scaling/promql.py reads them), so the
two modes scale on the same numbers. Each trigger is an AverageValue target, replicas =
ceil(query / threshold), the operator's rule for each input:

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
from unbusy.render import edge, hpa, meta
from unbusy.render.context import RenderContext, replica_bounds, weight

FALLBACK = {"hold": "currentReplicas", "minReplicas": "static"}


def _trigger(name: str, server: str, query: str, threshold: float) -> dict[str, Any]:
    # AverageValue: KEDA applies its fallback only to triggers of this metric type.
    return {
        "type": "prometheus",
        "name": name,
        "metricType": "AverageValue",
        "metadata": {"serverAddress": server, "query": query, "threshold": f"{threshold:g}"},
    }


def _triggers(isvc: InferenceService, variant: str, share: float) -> list[dict[str, Any]]:
    """`share` is the variant's part of the traffic (weight / 100), for an edge that counts the route only."""
    scaling = isvc.spec.autoscaling
    targets, server = scaling.targets, scaling.keda.server_address
    triggers = []
    if targets.queue_depth_per_replica:
        pending = meta.series_scope(isvc, variant).pending_total(isvc.spec.model.name)
        triggers.append(_trigger("queue", server, pending, targets.queue_depth_per_replica))
    if targets.capacity_utilization_percent:
        per_replica = scaling.capacity.rps_per_replica * targets.capacity_utilization_percent / 100
        demand = edge.demand_queries(isvc, variant, share, edge.RATE_WINDOW_S)
        triggers.append(_trigger("demand", server, demand.requests, per_replica))
    return triggers


def render(isvc: InferenceService, ctx: RenderContext) -> list[dict[str, Any]]:
    scaling = isvc.spec.autoscaling
    if scaling.mode != "keda":
        return []
    manifests = []
    for variant in isvc.spec.effective_variants():
        low, high = replica_bounds(isvc, variant)
        name = meta.variant_name(isvc, variant.name)
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
            "triggers": _triggers(isvc, variant.name, weight(variant, ctx) / 100),
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
