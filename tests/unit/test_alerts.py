"""Alert rules (render/alerts.py) and the PromQL building blocks they share (unbusy/series.py)."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from builders import isvc

import schemas
from unbusy import series
from unbusy.api import SpecError
from unbusy.gpu.request import gpu_request
from unbusy.render import alerts

NAMES = ["TritonP99LatencyHigh", "TritonErrorRateHigh", "TritonQueueDepthHigh", "GpuMemoryHigh", "GpuUtilizationHigh"]
MIG = {"gpu": {"migProfile": "1g.10gb", "product": "H100-80GB"}}
MODEL = {"name": "resnet50", "repository": "s3://models/vision"}


def rendered(spec: dict | None = None, **kwargs) -> list[dict]:
    service = isvc(spec, **kwargs)
    return alerts.render(service, gpu_request(service.spec.gpu, service.spec.model.gpu_memory))


def rules(spec: dict | None = None, **kwargs) -> dict[str, dict]:
    (rule,) = rendered(spec, **kwargs)
    (group,) = rule["spec"]["groups"]
    return {r["alert"]: r for r in group["rules"]}


def validate_crd(obj: dict) -> None:
    # Not jsonschema.validate: it first checks the CRD schema itself, and Prometheus Operator's
    # CRD holds a Go regex ('^(?i)...') that Python's re rejects. The object is what we test.
    schema = schemas.crd_schemas()[(obj["apiVersion"], obj["kind"])]
    jsonschema.validators.validator_for(schema)(schema).validate(obj)


# --- the PrometheusRule ------------------------------------------------------------------


def test_one_prometheus_rule_with_every_alert():
    (rule,) = rendered({"monitoring": {"labels": {"release": "prometheus"}}})
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["name"] == "resnet-alerts"
    assert rule["metadata"]["namespace"] == "ml"
    labels = rule["metadata"]["labels"]
    assert labels["release"] == "prometheus"  # Prometheus' ruleSelector picks it up
    assert labels["app.kubernetes.io/managed-by"] == "unbusy"
    assert labels["serving.unbusy.dev/inferenceservice"] == "resnet"
    (group,) = rule["spec"]["groups"]
    assert group["name"] == "unbusy.ml.resnet"
    assert [r["alert"] for r in group["rules"]] == NAMES
    validate_crd(rule)


def test_every_alert_has_for_labels_and_annotations():
    for name, rule in rules().items():
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}
        assert rule["labels"]["namespace"] == "ml"
        assert rule["labels"]["inferenceservice"] == "resnet"
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert list(rule["annotations"]) == ["summary", "description", "runbook_url"]
        assert rule["annotations"]["runbook_url"] == f"https://unbusy.dev/runbooks/{name}"
        assert "{{ $value" in rule["annotations"]["description"]
        assert 'namespace="ml"' in rule["expr"]


def test_defaults_of_the_spec():
    got = {name: (r["for"], r["labels"]["severity"], r["expr"].rsplit(" > ", 1)[1]) for name, r in rules().items()}
    assert got == {
        "TritonP99LatencyHigh": ("5m", "critical", "1"),
        "TritonErrorRateHigh": ("5m", "critical", "5"),
        "TritonQueueDepthHigh": ("2m", "warning", "50"),
        "GpuMemoryHigh": ("3m", "warning", "90"),
        "GpuUtilizationHigh": ("5m", "warning", "90"),
    }


def test_thresholds_for_severity_and_runbook_from_the_spec():
    spec = {
        "alerts": {
            "p99LatencySeconds": {"threshold": 0.25, "for": "10m", "severity": "warning"},
            "queueDepth": {"threshold": 40},
            "runbookBaseUrl": "https://runbooks.example.com/unbusy/",
        }
    }
    got = rules(spec)
    p99 = got["TritonP99LatencyHigh"]
    assert p99["expr"].endswith("/ 1e6 > 0.25")  # seconds: Triton's microseconds converted
    assert p99["for"] == "10m"
    assert p99["labels"]["severity"] == "warning"
    assert "threshold 0.25s" in p99["annotations"]["description"]
    assert got["TritonQueueDepthHigh"]["expr"].endswith(" > 40")
    assert p99["annotations"]["runbook_url"] == "https://runbooks.example.com/unbusy/TritonP99LatencyHigh"


def test_the_queries():
    got = {name: r["expr"] for name, r in rules().items()}
    triton = '{namespace="ml",inferenceservice="resnet"}'
    dcgm = '{namespace="ml",pod=~"^(?:resnet-main)-[a-z0-9]+-[a-z0-9]+$"}'
    assert got["TritonP99LatencyHigh"] == (
        'max by (variant) (nv_inference_request_summary_us{namespace="ml",inferenceservice="resnet",'
        'quantile="0.99"}) / 1e6 > 1'
    )
    assert got["TritonQueueDepthHigh"] == f"max by (variant, pod) (nv_inference_pending_request_count{triton}) > 50"
    assert got["GpuUtilizationHigh"] == f"max by (pod) (DCGM_FI_DEV_GPU_UTIL{dcgm}) > 90"
    assert got["GpuMemoryHigh"] == (
        f"max by (pod) (100 * DCGM_FI_DEV_FB_USED{dcgm} / (DCGM_FI_DEV_FB_USED{dcgm} + DCGM_FI_DEV_FB_FREE{dcgm})) > 90"
    )
    errors = got["TritonErrorRateHigh"]
    assert "clamp_min(" in errors  # no division by zero without traffic
    assert f"rate(nv_inference_request_failure{triton}[5m])" in errors
    assert f"rate(nv_inference_request_success{triton}[5m])" in errors


NGINX = {"routing": {"host": "resnet.example.com"}}
GATEWAY = {"host": "resnet.example.com", "provider": "gateway", "gateway": {"name": "edge"}}


def test_busy_rate_reads_the_edge():
    got = rules(NGINX)
    assert list(got) == [*NAMES, "ServerBusyRateHigh"]
    busy = got["ServerBusyRateHigh"]
    assert (busy["for"], busy["labels"]["severity"]) == ("5m", "warning")
    assert busy["expr"].startswith("100 * (") and busy["expr"].endswith(" > 1")
    refused = '{exported_namespace="ml",ingress="resnet",service="resnet-main",canary="",status="503"}[300s]'
    assert f"rate({series.NGINX_REQUESTS}{refused})" in busy["expr"]
    assert (
        "refused with HTTP 503 at the edge (nginx) over the last 5m (threshold 1%)"
        in (busy["annotations"]["description"])
    )


def test_busy_rate_through_envoy_gateway_counts_5xx():
    spec = {"routing": GATEWAY, "autoscaling": {"demand": {"source": "envoy-gateway"}}}
    busy = rules(spec)["ServerBusyRateHigh"]
    assert 'envoy_cluster_name="httproute/ml/resnet/rule/0",envoy_response_code_class="5"' in busy["expr"]
    assert (
        "refused with HTTP 5xx (Envoy counts code classes) at the edge (envoy-gateway)"
        in (busy["annotations"]["description"])
    )


def test_no_busy_rate_without_an_edge():
    # Triton counts the requests it refuses for a full queue nowhere: there is no busy rate to read.
    assert "ServerBusyRateHigh" not in rules()
    assert "ServerBusyRateHigh" not in rules({**NGINX, "alerts": {"busyRatePercent": {"enabled": False}}})


def test_whole_gpus_read_gpu_util():
    expr = rules()["GpuUtilizationHigh"]["expr"]
    assert series.GPU_UTIL in expr
    assert series.GR_ENGINE_ACTIVE not in expr


def test_mig_reads_graphics_engine_activity():
    # DCGM does not report DCGM_FI_DEV_GPU_UTIL for MIG instances.
    rule = rules(MIG)["GpuUtilizationHigh"]
    assert series.GR_ENGINE_ACTIVE in rule["expr"]
    assert series.GPU_UTIL not in rule["expr"]
    assert "100 * DCGM_FI_PROF_GR_ENGINE_ACTIVE{" in rule["expr"]  # a 0-1 ratio, compared in percent
    assert "MIG slice (1g.10gb)" in rule["annotations"]["description"]


def test_mig_auto_profile_is_mig_too():
    spec = {"gpu": {"migProfile": "auto", "product": "H100-80GB"}, "model": {**MODEL, "gpuMemory": "8Gi"}}
    assert series.GR_ENGINE_ACTIVE in rules(spec)["GpuUtilizationHigh"]["expr"]


def test_pods_of_every_variant_are_selected():
    spec = {"variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]}
    expr = rules(spec)["GpuMemoryHigh"]["expr"]
    assert 'pod=~"^(?:resnet-canary|resnet-stable)-[a-z0-9]+-[a-z0-9]+$"' in expr


def test_disabled_alerts_are_absent():
    spec = {"alerts": {"gpuMemoryPercent": {"enabled": False}, "errorRatePercent": {"enabled": False}}}
    assert list(rules(spec)) == ["TritonP99LatencyHigh", "TritonQueueDepthHigh", "GpuUtilizationHigh"]


def test_no_rule_when_alerts_are_off():
    assert rendered({"alerts": {"enabled": False}}) == []


def test_no_rule_when_every_alert_is_off():
    off = {"enabled": False}
    spec = {
        "alerts": {
            key: off
            for key in (
                "p99LatencySeconds",
                "gpuMemoryPercent",
                "errorRatePercent",
                "queueDepth",
                "gpuUtilizationPercent",
                "busyRatePercent",
            )
        }
    }
    assert rendered({**spec, **NGINX}) == []


def test_extra_labels_never_override_ours():
    spec = {"alerts": {"labels": {"team": "vision", "severity": "none", "namespace": "elsewhere"}}}
    for rule in rules(spec).values():
        assert rule["labels"]["team"] == "vision"
        assert rule["labels"]["namespace"] == "ml"
        assert rule["labels"]["severity"] != "none"
        assert list(rule["labels"]) == sorted(rule["labels"])


def test_label_values_with_template_braces_are_shown_literally():
    # Prometheus expands rule labels as Go templates; promtool proves the round trip (test_promtool).
    labels = rules({"alerts": {"labels": {"team": 'ml-{{ "x" }}'}}})["GpuMemoryHigh"]["labels"]
    assert labels["team"] == '{{ "ml-{{ \\"x\\" }}" }}'
    assert alerts.template_literal("vision") == "vision"


@pytest.mark.parametrize("bad", ["team-name", "1team", "__reserved", "a b"])
def test_bad_label_names_name_the_field(bad):
    with pytest.raises(SpecError, match=r"spec\.alerts\.labels: .*not Prometheus label names"):
        rendered({"alerts": {"labels": {bad: "x"}}})


def test_rendering_is_deterministic():
    spec = {"variants": [{"name": "b", "weight": 50}, {"name": "a", "weight": 50}], "alerts": {"labels": {"z": "1"}}}
    first = json.dumps(rendered(spec))
    assert all(json.dumps(rendered(spec)) == first for _ in range(3))
    # The variants' order in the spec does not reorder the pod regex.
    swapped = {**spec, "variants": list(reversed(spec["variants"]))}
    assert rules(swapped)["GpuMemoryHigh"]["expr"] == rules(spec)["GpuMemoryHigh"]["expr"]


def test_thresholds_read_as_promql_numbers():
    assert [alerts.number(x) for x in (90, 90.0, 0.25, 1e-05, 2.5)] == ["90", "90", "0.25", "1e-05", "2.5"]


# --- series.py: matchers that a spec cannot break out of ----------------------------------

HOSTILE = [
    'ml"} or vector(1) #',
    "back\\slash",
    'trailing\\"',
    "new\nline",
    "carriage\rreturn",
    "{{ $value }}",
    'a"b\\"c\n"',
]


@pytest.mark.parametrize("value", HOSTILE)
def test_quoted_values_stay_inside_the_string(value):
    quoted = series.quote(value)
    assert quoted.startswith('"') and quoted.endswith('"')
    body = quoted[1:-1]
    # Every quote inside is escaped, and no raw newline survives (it would end the query).
    assert re.search(r'(?<!\\)(\\\\)*"', body) is None
    assert "\n" not in quoted and "\r" not in quoted
    # PromQL's escapes for these characters are JSON's, so JSON reads back the very value.
    assert json.loads(quoted) == value


def test_matcher_escapes_and_checks():
    assert series.matcher("namespace", 'a"b') == 'namespace="a\\"b"'
    assert series.matcher("pod", "x.*", "=~") == 'pod=~"x.*"'
    with pytest.raises(ValueError, match="label name"):
        series.matcher('namespace="x",evil', "v")
    with pytest.raises(ValueError, match="operator"):
        series.matcher("namespace", "v", "==")


def test_selectors():
    assert series.triton_selector("ml", "resnet") == '{namespace="ml",inferenceservice="resnet"}'
    assert series.triton_selector("ml", "resnet", variant="canary") == (
        '{namespace="ml",inferenceservice="resnet",variant="canary"}'
    )
    assert series.triton_selector("ml", 'x"}', series.matcher("reason", "REJECTED")) == (
        '{namespace="ml",inferenceservice="x\\"}",reason="REJECTED"}'
    )
    assert series.dcgm_selector("ml", ["resnet-main"]) == (
        '{namespace="ml",pod=~"^(?:resnet-main)-[a-z0-9]+-[a-z0-9]+$"}'
    )
    assert series.deployment_selector("ml", ["b", "a", "b"]) == '{namespace="ml",deployment=~"^(?:a|b)$"}'


def test_scope_of_one_variant():
    where = series.Scope("ml", "resnet", ("resnet-canary",), variant="canary")
    assert where.triton() == '{namespace="ml",inferenceservice="resnet",variant="canary"}'
    assert where.dcgm() == '{namespace="ml",pod=~"^(?:resnet-canary)-[a-z0-9]+-[a-z0-9]+$"}'


def test_regex_metacharacters_are_escaped():
    assert series.escape_regex("a.b|c(d)*+?[e]{f}^$\\") == "a\\.b\\|c\\(d\\)\\*\\+\\?\\[e\\]\\{f\\}\\^\\$\\\\"
    assert series.escape_regex("resnet-main") == "resnet-main"  # RE2 rejects Python's needless '\-'


@pytest.mark.parametrize(
    ("pod", "selected"),
    [
        ("resnet-main-7d9f8c6b5d-x2k4p", True),
        ("resnet-canary-5c4b9d7f8-abcde", True),
        ("resnet-mainline-7d9f8c6b5d-x2k4p", False),  # another Deployment's name starting with ours
        ("resnet-main-canary-7d9f8c6b5d-x2k4p", False),  # InferenceService resnet-main, variant canary
        ("resnet-main-7d9f8c6b5d", False),
        ("xresnet-main-7d9f8c6b5d-x2k4p", False),
        ("resnet-main-7d9f8c6b5d-x2k4p-extra", False),
    ],
)
def test_pod_regex_selects_exactly_the_variants_pods(pod, selected):
    regex = series.pod_regex(["resnet-main", "resnet-canary"])
    assert (re.fullmatch(regex, pod) is not None) == selected
    assert (re.search(regex, pod) is not None) == selected  # anchored on its own, not only by Prometheus


def test_pod_regex_dots_are_literal():
    assert re.fullmatch(series.pod_regex(["a.b"]), "axb-123-abc") is None
    assert re.fullmatch(series.pod_regex(["a.b"]), "a.b-123-abc")


def test_empty_alternation_is_refused():
    with pytest.raises(ValueError):
        series.pod_regex([])
