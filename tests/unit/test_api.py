"""The API models: defaults, cross-field rules, and errors that name the field."""

from __future__ import annotations

import pytest
from builders import isvc, manifest

from unbusy.api import SpecError, load


def problems(spec: dict) -> list[str]:
    with pytest.raises(SpecError) as error:
        isvc(spec)
    return error.value.problems


def test_defaults_follow_the_seeds():
    spec = isvc().spec
    assert (spec.rollout.max_surge, spec.rollout.max_unavailable) == ("25%", "10%")
    assert spec.alerts.p99_latency_seconds.threshold == 1.0 and spec.alerts.p99_latency_seconds.for_ == "5m"
    assert spec.alerts.gpu_memory_percent.threshold == 90 and spec.alerts.gpu_memory_percent.for_ == "3m"
    assert spec.alerts.error_rate_percent.threshold == 5
    assert spec.alerts.queue_depth.threshold == 50
    assert spec.alerts.gpu_utilization_percent.threshold == 90 and spec.alerts.gpu_utilization_percent.for_ == "5m"
    assert spec.autoscaling.targets.cpu_utilization_percent == 70
    assert [v.name for v in spec.effective_variants()] == ["main"]


def test_partial_alert_keeps_that_alerts_own_defaults():
    alerts = isvc({"alerts": {"queueDepth": {"threshold": 40}}}).spec.alerts
    assert alerts.queue_depth.threshold == 40 and alerts.queue_depth.for_ == "2m"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 40}]},
            "spec.variants: the weights must add up to 100",
        ),
        (
            {"variants": [{"name": "a", "weight": 50}, {"name": "a", "weight": 50}]},
            "spec.variants: variant names must be unique",
        ),
        (
            {
                "routing": {"host": "x.example.com", "provider": "nginx"},
                "variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 30}, {"name": "c", "weight": 20}],
            },
            "spec.variants: with routing.provider nginx at most two variants may carry weight",
        ),
        ({"routing": {"host": "x.example.com", "provider": "gateway"}}, "spec.routing.gateway: gateway is required"),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "spec.autoscaling.minReplicas: must be <= maxReplicas"),
        (
            {"variants": [{"name": "a", "weight": 100, "minReplicas": 3, "maxReplicas": 1}]},
            "spec.variants[0].minReplicas: must be <= maxReplicas",
        ),
        ({"gpu": {"count": 1, "migProfile": "1g.10gb", "product": "A100-80GB"}}, "spec.gpu: set exactly one of count"),
        ({"gpu": {"product": "A100-80GB"}}, "spec.gpu: set exactly one of count"),
        ({"gpu": {"migProfile": "1g.10gb"}}, "spec.gpu.product: required with migProfile"),
    ],
)
def test_cross_field_rules_name_the_field(spec, expected):
    assert any(p.startswith(expected) for p in problems(spec)), problems(spec)


def test_three_weighted_variants_are_fine_through_gateway():
    variants = [{"name": "a", "weight": 50}, {"name": "b", "weight": 30}, {"name": "c", "weight": 20}]
    routing = {"host": "x.example.com", "provider": "gateway", "gateway": {"name": "gw"}}
    assert len(isvc({"variants": variants, "routing": routing}).spec.variants) == 3


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"model": {"name": "m", "repository": "http://x"}}, "spec.model.repository: String should match pattern"),
        ({"gpu": {"count": 1, "product": "V100"}}, "spec.gpu.product: must be one of 'A100-40GB'"),
        ({"gpu": {"count": 1, "colour": "red"}}, "spec.gpu.colour: unknown field"),
        ({"autoscaling": {"mode": "keda"}}, "spec.autoscaling.mode: must be one of 'operator', 'hpa' or 'none'"),
        ({"rollout": {"maxSurge": "lots"}}, "spec.rollout.maxSurge: String should match pattern"),
    ],
)
def test_schema_errors_name_the_field(spec, expected):
    assert any(p.startswith(expected) for p in problems(spec)), problems(spec)


def test_missing_required_sections_are_named():
    document = manifest()
    del document["spec"]["model"]
    with pytest.raises(SpecError) as error:
        load(document)
    assert "spec.model: Field required" in error.value.problems


def test_metadata_name_must_leave_room_for_child_names():
    with pytest.raises(SpecError) as error:
        isvc(name="x" * 41)
    assert error.value.problems[0].startswith("metadata.name:")


def test_a_metric_target_of_zero_turns_it_off():
    targets = isvc({"autoscaling": {"targets": {"gpuUtilizationPercent": 0}}}).spec.autoscaling.targets
    assert (targets.gpu_utilization_percent, targets.queue_depth_per_replica) == (0, 8)
