"""The e2e metrics emulator serves what a real Triton serves: the same series names, with
Triton's own labels plus the ones the ServiceMonitor's relabelling adds in a cluster."""

from __future__ import annotations

import urllib.request
from dataclasses import replace

import pytest
import yaml
from builders import isvc, small_model
from test_edge_contract import ingress_nginx, nginx_request_labels  # noqa: F401  (ingress_nginx is a fixture)
from test_llm_contract import exposition, llm_query_texts, used_series
from test_llm_live import PROFILE
from test_promtool import promtool, run, text  # noqa: F401  (promtool is a fixture)
from test_triton_contract import expected_series, metric_shapes, parse, served_metric_shapes, value

from unbusy import series
from unbusy.render.edge import demand_queries
from unbusy.serving.model import ServiceModel
from unbusy.sim.emulator import Emulator, LlmEmulator
from unbusy.sim.llm import MixShift

pytestmark = pytest.mark.contract

# What the scrape adds to every Triton series (tests/e2e relies on these, as the alerts do).
SCRAPE_LABELS = {series.NAMESPACE, series.INFERENCE_SERVICE, series.VARIANT, series.POD}


@pytest.fixture
def emulated() -> set[tuple[str, frozenset[str]]]:
    pods = {"svc-main-abc12-x1y2z": ("main", True)}
    emulator = Emulator(
        lambda: pods, namespace="ml", inference_service="svc", model="add_sub", service=ServiceModel(), rps=50
    ).start()
    try:
        emulator.tick()
        with urllib.request.urlopen(f"http://{emulator.address}/metrics", timeout=5) as response:
            return metric_shapes(response.read().decode())
    finally:
        emulator.stop()


def _by_name(shapes: set[tuple[str, frozenset[str]]]) -> dict[str, frozenset[str]]:
    """Every label name a series carries in any of its samples (a failure's `reason` varies)."""
    names: dict[str, frozenset[str]] = {}
    for name, labels in shapes:
        names[name] = names.get(name, frozenset()) | labels
    return names


def test_emulator_serves_the_real_series_the_scaling_queries_read(triton, emulated):
    # Triton serves its per-model counters and gauges from the moment the model loads.
    real = _by_name(served_metric_shapes(triton))
    emulated_by_name = _by_name(emulated)
    read_by_the_loop = {
        series.PENDING_REQUESTS,
        series.QUEUE_DURATION_US,
        series.REQUEST_SUCCESS,
        series.REQUEST_FAILURE,
    }
    for name in sorted(read_by_the_loop & expected_series().keys()):
        assert name in real, f"the real Triton does not serve {name}"
        assert name in emulated_by_name, f"the emulator does not serve {name}"
        assert real[name] | SCRAPE_LABELS <= emulated_by_name[name], (name, real[name], emulated_by_name[name])


# --- ingress-nginx in front of the emulated pods ---------------------------------------------

WINDOW_S = 20
EDGE_SPEC = {
    "routing": {"host": "svc.example.com"},
    "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}],
}
EDGE_PODS = {"svc-stable-abc12-x1y2z": ("stable", True), "svc-canary-def34-q8w7e": ("canary", True)}


def test_emulator_counts_at_the_edge_as_ingress_nginx_does(ingress_nginx, promtool, tmp_path):  # noqa: F811
    """Its request counter carries exactly the real controller's labels, and the operator's
    demand query of each variant reads what that variant's emulated replicas answered or refused."""
    service = isvc(EDGE_SPEC, name="svc", namespace="ml")
    # Twice what the two replicas can serve: both answer and refuse.
    emulator = Emulator(
        lambda: EDGE_PODS,
        namespace="ml",
        inference_service="svc",
        model="m",
        service=small_model(),
        rps=2000,
        isvc=service,
    )
    scrapes, counted = [], []
    for _ in range(WINDOW_S + 1):
        emulator.tick()
        scrapes.append([s for s in parse(emulator.render()) if s.name == series.NGINX_REQUESTS])
        per_variant = {v: 0.0 for v in ("stable", "canary")}
        refused = dict(per_variant)
        for pod in emulator.fleet.pods.values():
            per_variant[pod.variant] += pod.served + pod.rejected
            refused[pod.variant] += pod.rejected
        counted.append((per_variant, refused))

    labels = nginx_request_labels(ingress_nginx)
    assert scrapes[-1] and all(set(s.labels) == labels for s in scrapes[-1]), (labels, scrapes[-1][0].labels)

    keys = sorted({tuple(sorted(s.labels.items())) for scrape in scrapes for s in scrape})
    values = {key: ["_"] * len(scrapes) for key in keys}
    for t, scrape in enumerate(scrapes):
        for s in scrape:
            values[tuple(sorted(s.labels.items()))][t] = f"{s.value:g}"
    given = [{"series": text(series.NGINX_REQUESTS, dict(key)), "values": " ".join(v)} for key, v in values.items()]
    checks = []
    for variant in ("stable", "canary"):
        q = demand_queries(service, variant, share=0.5, window_seconds=WINDOW_S)
        requests = (counted[-1][0][variant] - counted[0][0][variant]) / WINDOW_S
        rejected = (counted[-1][1][variant] - counted[0][1][variant]) / WINDOW_S
        assert requests > rejected > 0
        # Whole requests on the counter, fractions in the simulation: within half a request a second.
        for query, expected in ((q.requests, requests), (q.rejected, rejected)):
            checks.append(
                {
                    "expr": f"abs(({query}) - {expected!r}) < bool 0.5",
                    "eval_time": f"{WINDOW_S}s",
                    "exp_samples": [{"labels": "{}", "value": 1}],
                }
            )
    # promtool feeds the series in as it steps through evaluations: one a second, as they were scraped.
    test = {"interval": "1s", "input_series": given, "promql_expr_test": checks}
    tests = {"rule_files": [], "evaluation_interval": "1s", "tests": [test]}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    run(promtool, "test", "rules", "test.yaml", cwd=tmp_path)


# --- an LLM (spec.model.llm) on a Python backend exporting vLLM's names ------------------------


def test_the_llm_emulator_serves_what_a_python_backend_llm_exports():
    """Every series the LLM queries of engine python read (scaling/promql.py llm_queries) is served by
    the LLM emulator with the labels and type of the committed exposition (data/python_llm-metrics.txt
    over the vLLM backend's), the target labels added; Triton's pending count reads 0: decoupled."""
    pods = {"llama-main-abc12-x1y2z": ("main", True)}
    emulator = LlmEmulator(
        lambda: pods, profile=PROFILE, mix=MixShift("conv"), namespace="ml", inference_service="llama", model="llm"
    )
    emulator.set_rate(20)
    try:
        for _ in range(10):
            emulator.tick()
        text = emulator.render()
    finally:
        emulator.server.server_close()  # never started: no thread to stop
    served = _by_name(metric_shapes(text))
    types = {line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE ")}
    documented = exposition("python")
    read = {
        (metric, tuple(sorted(m.items()))) for q in llm_query_texts("python").values() for metric, m in used_series(q)
    }
    assert len(read) >= 8
    for metric, _ in sorted(read):
        labels = {name for m, found, _, _ in documented if m == metric for name in found}
        kinds = {kind for m, _, _, kind in documented if m == metric}
        assert labels, f"{metric} is not in the documented exposition"
        assert metric in served, f"the LLM emulator does not serve {metric}"
        assert labels | SCRAPE_LABELS <= served[metric], (metric, labels, served[metric])
        family = metric.removesuffix(series.BUCKET).removesuffix(series.SUM).removesuffix(series.COUNT)
        assert {types.get(family) or types.get(metric)} == kinds, (metric, kinds)
    assert value(parse(text), series.PENDING_REQUESTS) == 0
    assert value(parse(text), series.VLLM_PROMPT_TOKENS) > 0


def test_the_llm_emulators_edge_counts_a_refusal_of_the_engine_as_a_503():
    """With a waiting limit the engine refuses what it cannot hold: ingress-nginx's counter shows it as 503."""
    service = isvc(EDGE_SPEC, name="svc", namespace="ml")
    pods = {"svc-stable-abc12-x1y2z": ("stable", True)}
    emulator = LlmEmulator(
        lambda: pods,
        profile=replace(PROFILE, kv_cache_tokens=20_000, max_waiting=4),
        mix=MixShift("conv"),
        namespace="ml",
        inference_service="svc",
        model="llm",
        isvc=service,
        weights=lambda: {"stable": 100},
    )
    emulator.set_rate(40)  # far past what one replica of this profile serves
    try:
        for _ in range(20):
            emulator.tick()
        samples = [s for s in parse(emulator.render()) if s.name == series.NGINX_REQUESTS]
    finally:
        emulator.server.server_close()  # never started: no thread to stop
    pod = emulator.fleet.pods["svc-stable-abc12-x1y2z"]
    by_status = {s.labels[series.NGINX_STATUS]: s.value for s in samples}
    assert pod.rejected > 0
    assert {status: count for status, count in by_status.items() if count} == {"200": pod.served, "503": pod.rejected}
