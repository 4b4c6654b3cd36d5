"""Every generated alert rule, checked and exercised by the real promtool.

`promtool check rules` must accept the PrometheusRule's groups, and for each alert a
`promtool test rules` file feeds series like Triton's and the DCGM exporter's into the rule:
a breach fires after `for` with the expected labels and annotations, is still pending just
before, and healthy series (plus series of other services that breach) stay silent.

promtool comes from Debian's `prometheus` package (`make promtool` installs it). Where it is
missing these tests skip, except in CI (CI=true), which must run everything.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from builders import isvc

from missing import require
from unbusy import series
from unbusy.gpu.request import gpu_request
from unbusy.render import alerts, dashboard

NAMESPACE, NAME = "ml", "resnet"
POD = "resnet-main-7d9f8c6b5d-x2k4p"
SECOND_POD = "resnet-main-7d9f8c6b5d-q8w7e"
SAMPLES = 40  # one a minute: longer than any default `for` plus the margin below
MARGIN_S = 180  # after `for` has elapsed, time for rates to settle

MIG = {"gpu": {"migProfile": "1g.10gb", "product": "H100-80GB"}}
# ingress-nginx in front: the busy-rate alert reads it.
EDGE = {"routing": {"host": "resnet.example.com"}}
# Label values and a runbook URL that Go templates would run (or fail on), not show: the rule must
# carry them literally. `{{ end }}` alone makes Prometheus reject the whole rule group.
EXTRA_LABELS = {"team": "vision", "oncall": "ml-{{ $labels.pod }}"}
HOSTILE_RUNBOOK = 'https://runbooks.example.com/{{ end }}/{{ "x" }}$labels\\'
USER_TEXT = {"alerts": {"labels": EXTRA_LABELS, "runbookBaseUrl": HOSTILE_RUNBOOK}}
SPECS = {"whole-gpu": EDGE, "mig": MIG | EDGE, "user-text": USER_TEXT | EDGE}


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path:
        return path
    require("promtool not found: `make promtool` installs it (Debian package prometheus)")


def run(promtool: str, *args: str, cwd: Path) -> None:
    result = subprocess.run([promtool, *args], capture_output=True, text=True, cwd=cwd, timeout=60)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"


# --- input series --------------------------------------------------------------------------


def text(metric: str, labels: dict[str, str]) -> str:
    """A series in promtool's notation, e.g. nv_inference_count{namespace="ml",...}."""
    return metric + series.selector(*(series.matcher(k, v) for k, v in labels.items()))


def triton(pod: str = POD, namespace: str = NAMESPACE, isvc_name: str = NAME, variant: str = "main", **extra: str):
    labels = {"namespace": namespace, "inferenceservice": isvc_name, "variant": variant, "pod": pod}
    return labels | {"model": "resnet50", "version": "1"} | extra


def dcgm(pod: str = POD, namespace: str = NAMESPACE, mig: bool = False) -> dict[str, str]:
    labels = {
        "namespace": namespace,
        "pod": pod,
        "container": "triton",
        "gpu": "0",
        "UUID": "GPU-5fd4c2a4-8b5e-4b5e-9d3a-0c2f1b6e7a11",
        "modelName": "NVIDIA H100 80GB HBM3",
        "Hostname": "gpu-node-1",
    }
    return labels | ({"GPU_I_PROFILE": "1g.10gb", "GPU_I_ID": "7"} if mig else {})


# Other services' replicas: same pod name in another namespace, an InferenceService
# `resnet-main` (variant canary) whose pods start with ours, and a Deployment `resnet-mainline`.
TRITON_STRANGERS = [
    triton(namespace="other"),
    triton(pod="resnet-main-canary-6c8d9f7b5c-abcde", isvc_name="resnet-main", variant="canary"),
]
DCGM_STRANGERS = [
    dcgm(namespace="other"),
    dcgm(pod="resnet-main-canary-6c8d9f7b5c-abcde"),
    dcgm(pod="resnet-mainline-7d9f8c6b5d-x2k4p"),
]


def strangers(metric: str, values: str, mig: bool = False, **extra: str) -> list[tuple[str, str]]:
    """Breaching series of other services, in every scenario: none of them may fire our alert."""
    if metric.startswith("DCGM_"):
        return [
            (text(metric, labels | ({"GPU_I_PROFILE": "1g.10gb"} if mig else {})), values) for labels in DCGM_STRANGERS
        ]
    return [(text(metric, labels | extra), values) for labels in TRITON_STRANGERS]


@dataclass(frozen=True)
class Scenario:
    name: str
    series: list[tuple[str, str]]  # (series, values)
    value: str | None = None  # the humanized $value when the alert fires; None: stays silent
    labels: dict[str, str] = field(default_factory=dict)  # labels the expression keeps (pod, variant)


def p99_latency(mig: bool) -> list[Scenario]:
    metric, p99, p50 = series.REQUEST_SUMMARY_US, {"quantile": "0.99"}, {"quantile": "0.5"}
    noise = strangers(metric, f"9000000x{SAMPLES}", **p99)
    return [
        Scenario(
            "p99 of 2.5s",
            [
                (text(metric, triton(**p99)), f"2500000x{SAMPLES}"),
                (text(metric, triton(**p50)), f"100000x{SAMPLES}"),
                *noise,
            ],
            "2.5s",
            {"variant": "main"},
        ),
        # The median is not the p99: only the 0.99 quantile may count.
        Scenario(
            "p99 of 0.2s",
            [
                (text(metric, triton(**p99)), f"200000x{SAMPLES}"),
                (text(metric, triton(**p50)), f"9000000x{SAMPLES}"),
                *noise,
            ],
        ),
        # A summary without observations in its window reports NaN.
        Scenario("no observations", [(text(metric, triton(**p99)), " ".join(["NaN"] * SAMPLES)), *noise]),
    ]


def error_rate(mig: bool) -> list[Scenario]:
    ok, failed = series.REQUEST_SUCCESS, series.REQUEST_FAILURE
    rejected, backend = {"reason": "REJECTED"}, {"reason": "BACKEND"}
    noise = [*strangers(ok, f"0+1x{SAMPLES}"), *strangers(failed, f"0+50x{SAMPLES}", **rejected)]
    return [
        Scenario(
            "25% rejected",
            [
                (text(ok, triton()), f"0+15x{SAMPLES}"),
                (text(failed, triton(**rejected)), f"0+5x{SAMPLES}"),
                (text(failed, triton(**backend)), f"0+0x{SAMPLES}"),
                *noise,
            ],
            "25",
            {"variant": "main"},
        ),
        Scenario(
            "only failures",
            [(text(failed, triton(**rejected)), f"0+5x{SAMPLES}"), *noise],
            "100",
            {"variant": "main"},
        ),
        Scenario(
            "no failures",
            [(text(ok, triton()), f"0+15x{SAMPLES}"), (text(failed, triton(**rejected)), f"0+0x{SAMPLES}"), *noise],
        ),
        # 0 of 0 requests failed: the guard against dividing by zero keeps it quiet.
        Scenario(
            "no traffic",
            [(text(ok, triton()), f"0+0x{SAMPLES}"), (text(failed, triton(**rejected)), f"0+0x{SAMPLES}"), *noise],
        ),
    ]


def queue_depth(mig: bool) -> list[Scenario]:
    metric = series.PENDING_REQUESTS
    noise = strangers(metric, f"500x{SAMPLES}")
    second = (text(metric, triton(pod=SECOND_POD)), f"3x{SAMPLES}")
    return [
        Scenario(
            "one pod queues",
            [(text(metric, triton()), f"80x{SAMPLES}"), second, *noise],
            "80",
            {"variant": "main", "pod": POD},
        ),
        Scenario("short queues", [(text(metric, triton()), f"3x{SAMPLES}"), second, *noise]),
    ]


def gpu_memory(mig: bool) -> list[Scenario]:
    used, free = series.FB_USED, series.FB_FREE

    def pod(name: str, used_mib: int, free_mib: int) -> list[tuple[str, str]]:
        labels = dcgm(name, mig=mig)
        return [(text(used, labels), f"{used_mib}x{SAMPLES}"), (text(free, labels), f"{free_mib}x{SAMPLES}")]

    noise = strangers(used, f"79000x{SAMPLES}", mig) + strangers(free, f"1000x{SAMPLES}", mig)
    return [
        Scenario("95% used", pod(POD, 76000, 4000) + pod(SECOND_POD, 20000, 60000) + noise, "95", {"pod": POD}),
        Scenario("25% used", pod(POD, 20000, 60000) + noise),
    ]


def gpu_utilization(mig: bool) -> list[Scenario]:
    # Under MIG the rule must read the graphics engine activity (0-1); a whole GPU, GPU_UTIL (%).
    # Each scenario also carries the other metric, breaching: the rule must not read it.
    metric, other = (series.GR_ENGINE_ACTIVE, series.GPU_UTIL) if mig else (series.GPU_UTIL, series.GR_ENGINE_ACTIVE)
    busy, idle = ("0.97", "0.4") if mig else ("97", "40")
    distractor = (text(other, dcgm(mig=mig)), f"{'100' if other == series.GPU_UTIL else '1'}x{SAMPLES}")
    noise = strangers(metric, f"{'1' if mig else '100'}x{SAMPLES}", mig)
    return [
        Scenario("busy", [(text(metric, dcgm(mig=mig)), f"{busy}x{SAMPLES}"), *noise], "97", {"pod": POD}),
        Scenario("idle", [(text(metric, dcgm(mig=mig)), f"{idle}x{SAMPLES}"), distractor, *noise]),
    ]


def nginx(status: str, namespace: str = NAMESPACE, canary: str = "") -> dict[str, str]:
    """A request counter of ingress-nginx scraped without honorLabels, for the primary Ingress."""
    labels = {"namespace": "ingress-nginx", "exported_namespace": namespace, "ingress": NAME, "service": f"{NAME}-main"}
    return labels | {"canary": canary, "status": status, "method": "POST", "path": "/", "host": "resnet.example.com"}


def busy_rate(mig: bool) -> list[Scenario]:
    metric = series.NGINX_REQUESTS
    noise = [(text(metric, nginx("503", namespace="other")), f"0+600x{SAMPLES}")]
    return [
        Scenario(
            "2% refused",
            [
                (text(metric, nginx("200")), f"0+2940x{SAMPLES}"),
                (text(metric, nginx("503")), f"0+60x{SAMPLES}"),
                *noise,
            ],
            "2",
        ),
        # No replica ready: every request refused, and no 200 series at all.
        Scenario("all refused", [(text(metric, nginx("503")), f"0+60x{SAMPLES}"), *noise], "100"),
        Scenario(
            "0.5% refused",
            [
                (text(metric, nginx("200")), f"0+2985x{SAMPLES}"),
                (text(metric, nginx("503")), f"0+15x{SAMPLES}"),
                *noise,
            ],
        ),
        Scenario("no traffic", [(text(metric, nginx("200")), f"0x{SAMPLES}"), *noise]),
    ]


SCENARIOS = {
    "TritonP99LatencyHigh": p99_latency,
    "TritonErrorRateHigh": error_rate,
    "TritonQueueDepthHigh": queue_depth,
    "GpuMemoryHigh": gpu_memory,
    "GpuUtilizationHigh": gpu_utilization,
    "ServerBusyRateHigh": busy_rate,
}


# --- rule files and unit-test files --------------------------------------------------------


def prometheus_rule(spec: dict[str, Any]) -> dict[str, Any]:
    service = isvc(spec, name=NAME, namespace=NAMESPACE)
    (rule,) = alerts.render(service, gpu_request(service.spec.gpu, service.spec.model.gpu_memory))
    return rule


def rule_of(rule: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == name)


def seconds(duration: str) -> int:
    number, unit = re.fullmatch(r"([0-9]+)(ms|s|m|h)", duration).groups()
    return int(int(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit])


def expand(template: str, value: str, labels: dict[str, str]) -> str:
    """What Prometheus makes of our annotation templates for one alert instance."""
    template = template.replace(alerts.VALUE, value).replace(alerts.DURATION, value)
    if template.startswith('{{ "'):  # alerts.template_literal: a Go string constant, shown as is
        return json.loads(template.removeprefix("{{ ").removesuffix(" }}"))
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)


def expected_alert(rule: dict[str, Any], scenario: Scenario, extra: dict[str, str]) -> dict[str, Any]:
    ours = {"severity": rule["labels"]["severity"], "namespace": NAMESPACE, "inferenceservice": NAME}
    labels = extra | ours | scenario.labels
    annotations = {key: expand(text, scenario.value, labels) for key, text in rule["annotations"].items()}
    return {"exp_labels": labels, "exp_annotations": annotations}


def unit_tests(
    rule: dict[str, Any], scenarios: list[Scenario], extra: dict[str, str], margin_s: int = MARGIN_S
) -> dict[str, Any]:
    fires_at = seconds(rule["for"]) + margin_s
    assert fires_at < SAMPLES * 60, "input series too short for this `for`"
    pending_at = seconds(rule["for"]) - 60  # active since t=0 or t=1m: still pending here
    tests = []
    for scenario in scenarios:
        checks = [{"eval_time": f"{fires_at}s", "alertname": rule["alert"], "exp_alerts": []}]
        if scenario.value is not None:
            checks[0]["exp_alerts"] = [expected_alert(rule, scenario, extra)]
            if pending_at > 0:
                checks.append({"eval_time": f"{pending_at}s", "alertname": rule["alert"], "exp_alerts": []})
        tests.append(
            {
                "name": scenario.name,
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in scenario.series],
                "alert_rule_test": checks,
            }
        )
    return {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}


def write_rules(directory: Path, rule: dict[str, Any]) -> None:
    (directory / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))


# --- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", SPECS)
def test_promtool_accepts_the_rules(promtool, tmp_path, case):
    write_rules(tmp_path, prometheus_rule(SPECS[case]))
    run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)


@pytest.mark.parametrize("case", SPECS)
@pytest.mark.parametrize("alert", SCENARIOS)
def test_alert_fires_on_a_breach_and_only_then(promtool, tmp_path, case, alert):
    rule = prometheus_rule(SPECS[case])
    write_rules(tmp_path, rule)
    extra = EXTRA_LABELS if case == "user-text" else {}
    scenarios = SCENARIOS[alert](mig=case == "mig")
    assert any(s.value for s in scenarios) and any(s.value is None for s in scenarios)
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(unit_tests(rule_of(rule, alert), scenarios, extra)))
    run(promtool, "test", "rules", "test.yaml", cwd=tmp_path)


def test_every_alert_is_exercised():
    rule = prometheus_rule(EDGE)
    assert sorted(r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]) == sorted(SCENARIOS)


@pytest.mark.parametrize("case", ["whole-gpu", "mig", "llm-vllm", "llm-tensorrtllm", "llm-python"])
def test_dashboard_queries_parse(promtool, tmp_path, case):
    spec = llm_spec(case.removeprefix("llm-")) if case.startswith("llm-") else SPECS[case]
    doc = dashboard.dashboard(isvc({**spec, "monitoring": {"grafanaDashboard": True}}))
    queries = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    # Grafana fills in $__rate_interval; promtool needs a real range.
    rules = [
        {"record": f"unbusy:dashboard:{i}", "expr": q.replace(dashboard.RATE_WINDOW, "5m")}
        for i, q in enumerate(queries)
    ]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)


def test_escaped_values_select_exactly_themselves(promtool, tmp_path):
    """series.quote and series.pod_regex against the real PromQL parser and regex engine."""
    hostile = ['ml"} or up{namespace="b', "back\\slash", 'quote"', "new\nline", "a.b", "{{ x }}"]
    regular = ["a", "b", "ml", "axb"]
    names = hostile + regular
    pods = ["a.b-h1-p1", "axb-h1-p1", "c|d-h1-p1", "c-h1-p1", "d-h1-p1", "a.b-h1", "a.b-h1-p1-x"]
    input_series = [{"series": text("up", {"namespace": n}), "values": "1"} for n in names]
    input_series += [{"series": text("up", {"pod": p}), "values": "1"} for p in pods]
    checks = [
        {
            "expr": f"up{series.selector(series.matcher('namespace', n))}",
            "eval_time": "0s",
            "exp_samples": [{"labels": text("up", {"namespace": n}), "value": 1}],
        }
        for n in hostile
    ]
    checks.append(
        {
            "expr": f"up{series.selector(series.matcher('pod', series.pod_regex(['a.b', 'c|d']), '=~'))}",
            "eval_time": "0s",
            "exp_samples": [{"labels": text("up", {"pod": p}), "value": 1} for p in ("a.b-h1-p1", "c|d-h1-p1")],
        }
    )
    tests = {"rule_files": [], "tests": [{"interval": "1m", "input_series": input_series, "promql_expr_test": checks}]}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    run(promtool, "test", "rules", "test.yaml", cwd=tmp_path)


# --- LLM alerts (spec.model.llm), per engine ------------------------------------------------

LLM_MODEL = "llama"
LLM_BLOCK = {
    "slo": {"ttftP99Ms": 2000, "tpotP99Ms": 100},
    "capacity": {"promptTokensPerSecond": 20000, "outputTokensPerSecond": 2000},
}


def llm_spec(backend: str) -> dict[str, Any]:
    model = {"name": LLM_MODEL, "repository": "pvc://models/llm", "config": {"backend": backend, "maxBatchSize": 0}}
    return {"model": model | {"llm": LLM_BLOCK}} | EDGE


LLM_ENGINES = ("vllm", "tensorrtllm", "python")
# What each engine's alerts are: no TPOT from TensorRT-LLM, no KV use from the vLLM backend
# without llm.kvCacheTokens; an LLM's request p99 and Triton queue alerts give way to these.
LLM_ALERTS = {
    "vllm": ["LlmTtftP99High", "LlmTpotP99High", "LlmTokenCapacityHigh"],
    "tensorrtllm": ["LlmTtftP99High", "LlmKvCacheHigh", "LlmTokenCapacityHigh"],
    "python": ["LlmTtftP99High", "LlmTpotP99High", "LlmKvCacheHigh", "LlmTokenCapacityHigh"],
}


def llm_triton(**extra: str) -> dict[str, str]:
    return triton(model=LLM_MODEL, **extra)


def histogram(metric: str, bounds: list[str], per_minute: list[int]) -> list[tuple[str, str]]:
    """A histogram's buckets (cumulative) growing by `per_minute` observations in each bucket a minute,
    for our pod and, breaching, for strangers."""
    rows, total = [], 0
    for bound, count in zip([*bounds, "+Inf"], [*per_minute, 0], strict=True):
        total += count
        rows.append((text(metric, llm_triton(le=bound)), f"0+{total}x{SAMPLES}"))
        rows += strangers(metric, f"0+{sum(per_minute)}x{SAMPLES}", model=LLM_MODEL, le=bound)
    return rows


def llm_ttft(engine: str) -> list[Scenario]:
    if engine == "tensorrtllm":  # Triton's first-response histogram, in ms
        metric, bounds, value = series.FIRST_RESPONSE_MS + series.BUCKET, ["100", "500", "2000", "5000"], "4.97s"
    else:
        metric, bounds, value = series.VLLM_TTFT_SECONDS + series.BUCKET, ["0.5", "1", "2.5", "5"], "4.975s"
    return [
        # Every first token within 2.5-5 s (2-5 s): the p99 interpolates to 4.975 s (4.97 s).
        Scenario("ttft over the slo", histogram(metric, bounds, [0, 0, 0, 60]), value, {"variant": "main"}),
        Scenario("ttft within the slo", histogram(metric, bounds, [50, 10, 0, 0])),
    ]


def llm_tpot(engine: str) -> list[Scenario]:
    metric, bounds = series.VLLM_TPOT_SECONDS + series.BUCKET, ["0.05", "0.1", "0.2"]
    return [
        Scenario("tpot over the slo", histogram(metric, bounds, [0, 0, 600]), "199ms", {"variant": "main"}),
        Scenario("tpot within the slo", histogram(metric, bounds, [600, 6, 0])),
    ]


def llm_kv_cache(engine: str) -> list[Scenario]:
    if engine == "tensorrtllm":
        metric, labels = series.TRTLLM_KV_BLOCKS, {series.TRTLLM_KV_BLOCK_TYPE: series.TRTLLM_KV_FRACTION}
    else:
        metric, labels = series.VLLM_KV_USED, {}
    noise = strangers(metric, f"1x{SAMPLES}", model=LLM_MODEL, **labels)
    second = (text(metric, llm_triton(pod=SECOND_POD, **labels)), f"0.3x{SAMPLES}")
    # TensorRT-LLM's other block counts (max, used ...) are not fractions: the alert must not read them.
    other = [(text(metric, llm_triton(**{series.TRTLLM_KV_BLOCK_TYPE: "max"})), f"6239x{SAMPLES}")]
    return [
        Scenario(
            "kv cache 95% used",
            [(text(metric, llm_triton(**labels)), f"0.95x{SAMPLES}"), second, *noise],
            "95",
            {"variant": "main", "pod": POD},
        ),
        Scenario(
            "kv cache half used",
            [(text(metric, llm_triton(**labels)), f"0.5x{SAMPLES}"), second, *noise]
            + (other if engine == "tensorrtllm" else []),
        ),
    ]


def llm_token_capacity(engine: str) -> list[Scenario]:
    if engine == "tensorrtllm":  # counted when a request ends, in the histograms' sums
        prompt = (series.TRTLLM_INPUT_TOKENS + series.SUM, {series.TRTLLM_TOKEN_TYPE: series.TRTLLM_INPUT})
        output = (series.TRTLLM_OUTPUT_TOKENS + series.SUM, {series.TRTLLM_TOKEN_TYPE: series.TRTLLM_OUTPUT})
    else:
        prompt, output = (series.VLLM_PROMPT_TOKENS, {}), (series.VLLM_OUTPUT_TOKENS, {})

    def load(prompt_per_s: int, output_per_s: int) -> list[tuple[str, str]]:
        return [
            (text(prompt[0], llm_triton(**prompt[1])), f"0+{prompt_per_s * 60}x{SAMPLES}"),
            (text(output[0], llm_triton(**output[1])), f"0+{output_per_s * 60}x{SAMPLES}"),
            *strangers(prompt[0], f"0+{10**7}x{SAMPLES}", model=LLM_MODEL, **prompt[1]),
            *strangers(output[0], f"0+{10**6}x{SAMPLES}", model=LLM_MODEL, **output[1]),
        ]

    return [
        # 10,000 prompt tokens/s of 20,000 and 900 output tokens/s of 2,000: 50% + 45%.
        Scenario("95% of the token capacity", load(10_000, 900), "95", {"variant": "main", "pod": POD}),
        Scenario("a third of the token capacity", load(4_000, 300)),
    ]


LLM_SCENARIOS = {
    "LlmTtftP99High": llm_ttft,
    "LlmTpotP99High": llm_tpot,
    "LlmKvCacheHigh": llm_kv_cache,
    "LlmTokenCapacityHigh": llm_token_capacity,
}


@pytest.mark.parametrize("engine", LLM_ENGINES)
def test_promtool_accepts_the_llm_rules(promtool, tmp_path, engine):
    rule = prometheus_rule(llm_spec(engine))
    names = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    # An LLM's own alerts replace the request p99 and Triton's queue, which say nothing of it.
    assert [n for n in names if n.startswith("Llm")] == LLM_ALERTS[engine]
    assert "TritonP99LatencyHigh" not in names and "TritonQueueDepthHigh" not in names
    write_rules(tmp_path, rule)
    run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)


@pytest.mark.parametrize(("engine", "alert"), [(e, a) for e in LLM_ENGINES for a in LLM_ALERTS[e]])
def test_llm_alert_fires_on_a_breach_and_only_then(promtool, tmp_path, engine, alert):
    rule = prometheus_rule(llm_spec(engine))
    write_rules(tmp_path, rule)
    scenarios = LLM_SCENARIOS[alert](engine)
    # A rate of tokens reads low until its window holds the counters' whole history: fire that much later.
    margin = MARGIN_S + seconds(alerts.ERROR_RATE_WINDOW)
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(unit_tests(rule_of(rule, alert), scenarios, {}, margin)))
    run(promtool, "test", "rules", "test.yaml", cwd=tmp_path)
