"""ServiceMonitor / PodMonitor (render/monitors.py): what Prometheus scrapes, and the labels it sets."""

from __future__ import annotations

import json

import jsonschema
import pytest
from builders import isvc

import schemas
from unbusy import series
from unbusy.render import monitors, render_all, service

VARIANTS = {"variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]}


def monitor(spec: dict | None = None, **kwargs) -> dict:
    (obj,) = monitors.render(isvc(spec, **kwargs))
    return obj


def validate_crd(obj: dict) -> None:
    # Not jsonschema.validate: it first checks the CRD schema itself, and Prometheus Operator's
    # CRDs hold Go regexes ('^(?i)...') that Python's re rejects. The object is what we test.
    schema = schemas.crd_schemas()[(obj["apiVersion"], obj["kind"])]
    jsonschema.validators.validator_for(schema)(schema).validate(obj)


def selects(match_labels: dict[str, str], labels: dict[str, str]) -> bool:
    return match_labels.items() <= labels.items()


def test_service_monitor_by_default():
    obj = monitor({"monitoring": {"labels": {"release": "prometheus"}, "interval": "30s"}})
    assert obj["apiVersion"] == "monitoring.coreos.com/v1"
    assert obj["kind"] == "ServiceMonitor"
    assert obj["metadata"]["name"] == "resnet"
    assert obj["metadata"]["namespace"] == "ml"
    assert obj["metadata"]["labels"]["release"] == "prometheus"
    (endpoint,) = obj["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["interval"] == "30s"
    validate_crd(obj)


def test_service_monitor_scrapes_each_variant_service_once():
    # The stable Service reaches the same pods as the variant Services: selecting it as
    # well would scrape every replica twice and double every sum.
    service_isvc = isvc(VARIANTS)
    match = monitor(VARIANTS)["spec"]["selector"]["matchLabels"]
    selected = [s for s in service.render(service_isvc) if selects(match, s["metadata"]["labels"])]
    assert sorted(s["metadata"]["name"] for s in selected) == ["resnet-canary", "resnet-stable"]
    for svc in selected:
        assert "metrics" in [p["name"] for p in svc["spec"]["ports"]]


def test_service_monitor_ignores_other_inference_services():
    match = monitor()["spec"]["selector"]["matchLabels"]
    others = service.render(isvc(name="resnet-canary"))
    assert not [s for s in others if selects(match, s["metadata"]["labels"])]


def test_pod_monitor_selects_the_triton_pods():
    spec = {**VARIANTS, "monitoring": {"kind": "PodMonitor"}}
    obj = monitor(spec)
    assert obj["kind"] == "PodMonitor"
    (endpoint,) = obj["spec"]["podMetricsEndpoints"]
    match = obj["spec"]["selector"]["matchLabels"]
    deployments = [m for m in render_all(isvc(spec)) if m["kind"] == "Deployment"]
    assert len(deployments) == 2
    for deployment in deployments:
        template = deployment["spec"]["template"]
        assert selects(match, template["metadata"]["labels"])
        ports = [p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])]
        assert endpoint["port"] in ports
    validate_crd(obj)


def test_no_monitor_for_kind_none():
    assert monitors.render(isvc({"monitoring": {"kind": "none"}})) == []


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PodMonitor"])
def test_relabelings_give_the_labels_series_selects_by(kind):
    obj = monitor({"monitoring": {"kind": kind}})
    (endpoint,) = obj["spec"]["endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"]
    copies = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert copies == {
        series.INFERENCE_SERVICE: ["__meta_kubernetes_pod_label_serving_unbusy_dev_inferenceservice"],
        series.VARIANT: ["__meta_kubernetes_pod_label_serving_unbusy_dev_variant"],
        series.POD: ["__meta_kubernetes_pod_name"],
        series.NAMESPACE: ["__meta_kubernetes_namespace"],
    }
    assert all(r["action"] == "replace" for r in endpoint["relabelings"])


def test_monitoring_labels_never_override_the_operators():
    spec = {"monitoring": {"labels": {"app.kubernetes.io/managed-by": "someone", "release": "prometheus"}}}
    labels = monitor(spec)["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "unbusy"
    assert labels["release"] == "prometheus"


def test_monitoring_labels_win_over_the_inference_services_own():
    manifest_isvc = isvc({"monitoring": {"labels": {"release": "prometheus"}}})
    relabelled = manifest_isvc.model_copy(
        update={"metadata": manifest_isvc.metadata.model_copy(update={"labels": {"release": "old", "team": "a"}})}
    )
    labels = monitors.metadata(relabelled, "x")["labels"]
    assert labels["release"] == "prometheus"
    assert labels["team"] == "a"


def test_rendering_is_deterministic():
    first = json.dumps(monitors.render(isvc(VARIANTS)))
    assert all(json.dumps(monitors.render(isvc(VARIANTS))) == first for _ in range(3))
