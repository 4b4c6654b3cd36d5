"""The Grafana dashboard ConfigMap (render/dashboard.py)."""

from __future__ import annotations

import json

from builders import isvc

import schemas
from unbusy import series
from unbusy.render import alerts, dashboard, meta

ON = {"monitoring": {"grafanaDashboard": True}}
MIG = {**ON, "gpu": {"migProfile": "1g.10gb", "product": "H100-80GB"}}
TITLES = [
    "Request rate",
    "P99 latency",
    "Queue depth per pod",
    "GPU utilisation per pod",
    "Replicas",
    "Rejected requests (queue full, HTTP 503)",
    "GPU memory used per pod",
]


def config_map(spec: dict | None = None, **kwargs) -> dict:
    (obj,) = dashboard.render(isvc(spec, **kwargs))
    return obj


def document(spec: dict | None = None, **kwargs) -> dict:
    (text,) = config_map(spec, **kwargs)["data"].values()
    return json.loads(text)


def exprs(doc: dict) -> dict[str, list[str]]:
    return {p["title"]: [t["expr"] for t in p["targets"]] for p in doc["panels"]}


def test_no_dashboard_unless_asked():
    assert dashboard.render(isvc()) == []


def test_config_map_for_the_grafana_sidecar():
    obj = config_map({"monitoring": {"grafanaDashboard": True, "labels": {"release": "prometheus"}}})
    assert obj["kind"] == "ConfigMap"
    assert obj["metadata"]["name"] == "resnet-dashboard"
    assert obj["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert obj["metadata"]["labels"]["release"] == "prometheus"
    assert list(obj["data"]) == ["unbusy-ml-resnet.json"]
    schemas.validate(obj)


def test_a_grafana_dashboard():
    doc = document(ON)
    assert doc["title"] == "Unbusy / ml / resnet"
    assert len(doc["uid"]) <= 40  # Grafana's limit
    assert doc["templating"]["list"][0]["type"] == "datasource"
    assert [p["title"] for p in doc["panels"]] == TITLES
    assert [p["id"] for p in doc["panels"]] == list(range(1, len(TITLES) + 1))
    cells = {(p["gridPos"]["x"], p["gridPos"]["y"]) for p in doc["panels"]}
    assert len(cells) == len(TITLES)  # no two panels on top of each other
    for panel in doc["panels"]:
        assert panel["type"] == "timeseries"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def test_panels_plot_the_alerts_own_queries():
    service = isvc(ON)
    where = meta.series_scope(service)
    got = exprs(document(ON))
    assert got["P99 latency"] == [alerts.p99_latency_query(where)]
    assert got["Queue depth per pod"] == [alerts.queue_depth_query(where)]
    assert got["GPU utilisation per pod"] == [alerts.gpu_utilization_query(where, mig=False)]
    assert got["GPU memory used per pod"] == [alerts.gpu_memory_query(where)]


def test_replicas_and_rejections():
    got = exprs(document(ON))
    available, desired = got["Replicas"]
    assert available.startswith("sum by (deployment) (kube_deployment_status_replicas_available{")
    assert desired.startswith("sum by (deployment) (kube_deployment_spec_replicas{")
    assert 'deployment=~"^(?:resnet-main)$"' in available
    (rejected,) = got["Rejected requests (queue full, HTTP 503)"]
    assert 'nv_inference_request_failure{namespace="ml",inferenceservice="resnet",reason="REJECTED"}' in rejected


def test_busy_rate_at_the_edge_plots_its_alert():
    spec = {**ON, "routing": {"host": "resnet.example.com"}, "alerts": {"busyRatePercent": {"threshold": 2}}}
    doc = document(spec)
    assert [p["title"] for p in doc["panels"]] == [*TITLES, "Busy rate at the edge (HTTP 503)"]
    assert exprs(doc)["Busy rate at the edge (HTTP 503)"] == [alerts.busy_rate_query(isvc(spec))]
    (panel,) = (p for p in doc["panels"] if p["title"].startswith("Busy rate"))
    assert panel["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] == 2


def test_mig_plots_graphics_engine_activity():
    (gpu,) = exprs(document(MIG))["GPU utilisation per pod"]
    assert series.GR_ENGINE_ACTIVE in gpu
    assert series.GPU_UTIL not in gpu


def test_alert_thresholds_drawn_as_lines():
    spec = {**ON, "alerts": {"queueDepth": {"threshold": 40}, "gpuUtilizationPercent": {"enabled": False}}}
    panels = {p["title"]: p["fieldConfig"]["defaults"] for p in document(spec)["panels"]}
    assert panels["Queue depth per pod"]["thresholds"]["steps"][-1]["value"] == 40
    assert panels["Queue depth per pod"]["custom"]["thresholdsStyle"]["mode"] == "line"
    assert panels["GPU utilisation per pod"]["custom"]["thresholdsStyle"]["mode"] == "off"


def test_deterministic_and_sorted():
    first = config_map(ON)
    (text,) = first["data"].values()
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2)
    assert all(config_map(ON) == first for _ in range(3))
    assert document(ON, namespace="a")["uid"] != document(ON, namespace="b")["uid"]


def llm(backend: str, **block) -> dict:
    config = {"backend": backend, "maxBatchSize": 0}
    llm_block = {
        "slo": {"ttftP99Ms": 1500, "tpotP99Ms": 80},
        "capacity": {"promptTokensPerSecond": 20000, "outputTokensPerSecond": 2000},
    } | block
    return {**ON, "model": {"name": "llama", "repository": "pvc://models/llm", "config": config, "llm": llm_block}}


def test_an_llm_plots_tokens_ttft_and_kv_instead_of_request_p99_and_queue():
    doc = document(llm("tensorrtllm"))
    titles = [p["title"] for p in doc["panels"]]
    assert "P99 latency" not in titles and "Queue depth per pod" not in titles
    assert titles[1:6] == [
        "Tokens per second per pod",
        "Time to first token p99",
        "Requests running and waiting per pod",
        "KV cache used per pod",
        "Token capacity used per pod",
    ]
    ttft = next(p for p in doc["panels"] if p["title"] == "Time to first token p99")
    # The SLO is the red line, in the panel's unit (seconds), and the panel reads what the alert reads.
    assert ttft["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == 1.5
    service = isvc(llm("tensorrtllm"))
    assert ttft["targets"][0]["expr"] == alerts.llm_signals_of(service).ttft_p99_seconds


def test_the_vllm_backend_plots_tpot_and_marks_what_is_inferred():
    doc = document(llm("vllm"))
    panels = {p["title"]: p for p in doc["panels"]}
    assert "Time per output token p99" in panels and "KV cache used per pod" not in panels
    legends = [t["legendFormat"] for t in panels["Requests running and waiting per pod"]["targets"]]
    assert legends == ["{{pod}} running (inferred)", "{{pod}} waiting (inferred)"]
    # With the KV cache's size known, its use is inferred too.
    assert "KV cache used per pod" in {p["title"] for p in document(llm("vllm", kvCacheTokens=400_000))["panels"]}
