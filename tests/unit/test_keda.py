"""Autoscaling mode keda: a KEDA ScaledObject per variant on the operator's own queries."""

from __future__ import annotations

import pytest
from builders import isvc

import schemas
from unbusy.api import SpecError
from unbusy.gpu.request import gpu_request
from unbusy.render import hpa, render_all
from unbusy.scaling.promql import variant_queries

PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"
CANARY = {
    "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10, "maxReplicas": 3}],
    "routing": {"host": "resnet.example.com"},
}


def keda(**autoscaling) -> dict:
    """A spec in mode keda; a section given as None is left out."""
    base = {
        "mode": "keda",
        "minReplicas": 2,
        "maxReplicas": 8,
        "targets": {"queueDepthPerReplica": 16, "capacityUtilizationPercent": 80},
        "capacity": {"rpsPerReplica": 250},
        "keda": {"serverAddress": PROMETHEUS},
    }
    return {"autoscaling": {key: value for key, value in (base | autoscaling).items() if value is not None}}


def by_kind(manifests: list[dict], kind: str) -> list[dict]:
    return [m for m in manifests if m["kind"] == kind]


def test_a_scaled_object_per_variant_runs_the_operators_queries():
    service = isvc(keda() | CANARY)
    objects = by_kind(render_all(service), "ScaledObject")
    assert [o["metadata"]["name"] for o in objects] == ["resnet-stable", "resnet-canary"]
    gpu = gpu_request(service.spec.gpu, service.spec.model.gpu_memory)
    for scaled, (variant, share, high) in zip(objects, [("stable", 0.9, 8), ("canary", 0.1, 3)], strict=True):
        schemas.validate(scaled)  # against KEDA's own CRD, from its Go module
        spec = scaled["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"resnet-{variant}"}
        assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["pollingInterval"]) == (2, high, 15)
        queries = variant_queries(service, variant, gpu, share=share)
        assert [(t["name"], t["metadata"]["query"], t["metadata"]["threshold"]) for t in spec["triggers"]] == [
            ("queue", queries.pending_total, "16"),
            ("demand", queries.demand.requests, "200"),  # 80% of 250 rps
        ]
        assert {(t["type"], t["metricType"], t["metadata"]["serverAddress"]) for t in spec["triggers"]} == {
            ("prometheus", "AverageValue", PROMETHEUS)
        }
        assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == hpa.behavior(service.spec.autoscaling)


@pytest.mark.parametrize(("missing", "behavior"), [("hold", "currentReplicas"), ("minReplicas", "static")])
def test_fallback_when_prometheus_is_down_follows_on_metrics_missing(missing, behavior):
    spec = keda(onMetricsMissing=missing, keda={"serverAddress": PROMETHEUS, "failureThreshold": 5})
    (scaled,) = by_kind(render_all(isvc(spec)), "ScaledObject")
    assert scaled["spec"]["fallback"] == {"failureThreshold": 5, "replicas": 2, "behavior": behavior}


def test_queue_alone_needs_no_capacity():
    spec = keda(targets={"queueDepthPerReplica": 4, "capacityUtilizationPercent": 0}, capacity=None)
    (scaled,) = by_kind(render_all(isvc(spec)), "ScaledObject")
    assert [t["name"] for t in scaled["spec"]["triggers"]] == ["queue"]


def test_replicas_are_left_to_keda_and_nothing_else_scales():
    manifests = render_all(isvc(keda()))
    (deployment,) = by_kind(manifests, "Deployment")
    assert "replicas" not in deployment["spec"]
    assert not by_kind(manifests, "HorizontalPodAutoscaler")
    assert not by_kind(render_all(isvc({"autoscaling": {"mode": "hpa"}})), "ScaledObject")


def problems(spec: dict) -> list[str]:
    with pytest.raises(SpecError) as error:
        isvc(spec)
    return error.value.problems


@pytest.mark.parametrize(
    ("autoscaling", "expected"),
    [
        ({"keda": None}, "spec.autoscaling.keda: required with mode keda: the Prometheus address KEDA reads"),
        (
            {"capacity": {}},
            "spec.autoscaling.capacity.rpsPerReplica: required with mode keda and "
            "targets.capacityUtilizationPercent above 0",
        ),
        (
            {"targets": {"queueDepthPerReplica": 0, "capacityUtilizationPercent": 0}},
            "spec.autoscaling.targets: mode keda scales on queueDepthPerReplica and capacityUtilizationPercent",
        ),
        ({"keda": {"serverAddress": "prometheus:9090"}}, "spec.autoscaling.keda.serverAddress: String should match"),
    ],
)
def test_a_keda_spec_that_cannot_scale_names_the_field(autoscaling, expected):
    assert any(p.startswith(expected) for p in problems(keda(**autoscaling))), problems(keda(**autoscaling))
