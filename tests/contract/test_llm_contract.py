"""Contract with the LLM engines Unbusy reads tokens, TTFT, TPOT and KV use from: every metric and
label the LLM queries (scaling/promql.py llm_queries) and alerts use is one the engine exports, and
every query evaluates, in the real promtool, on that exposition.

The expositions are committed under data/ with their provenance (repository, commit, path, lines),
taken from the projects' own README and source: CI reaches package registries only, not GitHub.
- vllm: the Triton vLLM backend (README "Triton Metrics"; src/utils/metrics.py);
- tensorrtllm: the Triton TensorRT-LLM backend (README "Triton Metrics"; custom_metrics_reporter.cc),
  with Triton's own first-response histogram (core: src/metrics.cc);
- python: a Python-backend LLM exporting the vLLM backend's names and vLLM's scheduler gauges.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from builders import isvc
from test_promtool import promtool, text  # noqa: F401  (promtool is a fixture)

from unbusy import series
from unbusy.render import alerts
from unbusy.scaling.promql import LlmQueries, llm_queries

DATA = Path(__file__).parent / "data"
EXPOSITIONS = {
    "vllm": ["vllm_backend-metrics.txt"],
    "tensorrtllm": ["tensorrtllm_backend-metrics.txt", "triton-first-response.txt"],
    "python": ["vllm_backend-metrics.txt", "python_llm-metrics.txt"],
}
# The model each exposition names (the TensorRT-LLM model of Triton's examples, the vLLM backend's sample).
MODELS = {"vllm": "vllm_model", "tensorrtllm": "tensorrt_llm", "python": "llm"}
BACKENDS = {"vllm": "vllm", "tensorrtllm": "tensorrtllm", "python": "python"}
NAMESPACE, NAME, VARIANT = "ml", "llama", "main"
PODS = ("llama-main-7d9f8c6b5d-x2k4p", "llama-main-7d9f8c6b5d-q8w7e")
# Labels the ServiceMonitor adds to every scraped series (render/monitors.py): not the engine's.
TARGET_LABELS = {series.NAMESPACE, series.INFERENCE_SERVICE, series.VARIANT, series.POD}
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")


def spec(engine: str) -> dict:
    llm = {
        "slo": {"ttftP99Ms": 2000, "tpotP99Ms": 100},
        "capacity": {"promptTokensPerSecond": 20000, "outputTokensPerSecond": 2000},
        "kvCacheTokens": 400_000,
    }
    config = {"backend": BACKENDS[engine], "maxBatchSize": 0}
    return {"model": {"name": MODELS[engine], "repository": "pvc://models/llm", "config": config, "llm": llm}}


def exposition(engine: str) -> list[tuple[str, dict[str, str], float, str]]:
    """(metric, labels, value, type of its family) of every sample in the engine's committed exposition."""
    samples, types = [], {}
    for name in EXPOSITIONS[engine]:
        for line in (DATA / name).read_text().splitlines():
            if line.startswith("# TYPE "):
                _, _, family, kind = line.split()
                types[family] = kind
            match = SAMPLE.match(line)
            if line.startswith("#") or not match:
                continue  # comments, and the README's "..." elisions
            metric, labels, value = match.groups()
            family = re.sub(r"_(bucket|sum|count)$", "", metric)
            kind = types.get(metric) or types.get(family)
            samples.append((metric, dict(LABEL.findall(labels or "")), float(value), kind))
    return samples


def queries(engine: str) -> LlmQueries:
    return llm_queries(isvc(spec(engine), name=NAME, namespace=NAMESPACE), VARIANT, 1.0)


def llm_query_texts(engine: str) -> dict[str, str]:
    fields = asdict(queries(engine))
    return {k: v for k, v in fields.items() if isinstance(v, str) and k != "engine"}


def used_series(query: str) -> list[tuple[str, dict[str, str]]]:
    """Each selector of a query: its metric and the label matchers it adds to the target labels."""
    return [
        (metric, {k: v for k, v in LABEL.findall(matchers) if k not in TARGET_LABELS})
        for metric, matchers in SELECTOR.findall(query)
    ]


@pytest.mark.parametrize("engine", EXPOSITIONS)
def test_every_series_and_label_the_queries_read_is_exported(engine):
    exported = exposition(engine)
    for field, query in llm_query_texts(engine).items():
        for metric, matchers in used_series(query):
            assert any(m == metric and matchers.items() <= labels.items() for m, labels, _, _ in exported), (
                f"{field}: {metric}{matchers} is not in the {engine} exposition ({', '.join(EXPOSITIONS[engine])})"
            )


def test_what_each_engine_does_not_report_is_inferred_or_absent():
    vllm, trt, python = queries("vllm"), queries("tensorrtllm"), queries("python")
    # The vLLM backend exports no scheduler gauge: running, waiting and KV use come from its histograms.
    assert vllm.inferred == {"running_per_pod", "waiting_per_pod", "least_waiting_per_pod", "kv_used_per_pod"}
    assert series.VLLM_WAITING not in vllm.waiting_per_pod and series.VLLM_TTFT_SECONDS in vllm.waiting_per_pod
    # A Python-backend LLM's gauges are read where it exports them, inferred where not.
    assert python.waiting_per_pod.startswith(f"(sum by (pod) ({series.VLLM_WAITING}")
    # TensorRT-LLM reports its scheduler and KV cache, no time per output token.
    assert trt.inferred == frozenset() and trt.tpot_p99_seconds is None
    assert series.FIRST_RESPONSE_MS in trt.ttft_p99_seconds


# --- the queries on the exposition, in promtool -----------------------------------------------


def input_series(engine: str) -> list[dict[str, str]]:
    """The exposition as two pods of the variant scrape it for ten minutes: counters and histograms
    grow by the documented value each minute, gauges hold it."""
    rows = []
    for pod in PODS:
        scope = {"namespace": NAMESPACE, "inferenceservice": NAME, "variant": VARIANT, "pod": pod}
        for metric, labels, value, kind in exposition(engine):
            values = f"{value}x10" if kind == "gauge" else f"0+{value}x10"
            rows.append({"series": text(metric, labels | scope), "values": values})
    return rows


def per_pod(field: str) -> bool:
    return field.endswith("_per_pod")


def rows_of(engine: str, field: str, query: str) -> int:
    """The series a query yields on the exposition: one per pod, one per bucket bound of a size
    histogram's buckets (summed over the pods), else one."""
    if per_pod(field):
        return len(PODS)
    if field.endswith("_buckets"):
        (metric, matchers), *_ = used_series(query)
        return len(
            {
                labels[series.LE]
                for m, labels, _, _ in exposition(engine)
                if m == metric and matchers.items() <= labels.items()
            }
        )
    return 1


def finite_count(query: str, expected: int) -> dict:
    """`query` yields `expected` series, none of them NaN (NaN != NaN)."""
    return {"expr": f"count(({query}) == ({query}))", "eval_time": "5m", "exp_samples": [{"value": expected}]}


def exact(query: str, value: float, to: float | None = 0.001) -> dict:
    """`query` is `value`, rounded `to` this (None: a gauge's value, read as written)."""
    expr = query if to is None else f"round({query}, {to})"
    return {"expr": expr, "eval_time": "5m", "exp_samples": [{"value": value}]}


def run_promtool(path: str, tmp_path: Path, engine: str, checks: list[dict]) -> None:
    tests = {
        "rule_files": [],
        "tests": [{"interval": "1m", "input_series": input_series(engine), "promql_expr_test": checks}],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(
        [path, "test", "rules", "test.yaml"], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert result.returncode == 0, f"promtool test rules:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("engine", EXPOSITIONS)
def test_every_query_evaluates_on_the_exposition(promtool, tmp_path, engine):  # noqa: F811
    checks = [finite_count(q, rows_of(engine, f, q)) for f, q in llm_query_texts(engine).items()]
    run_promtool(promtool, tmp_path, engine, checks)


def test_values_read_from_the_exposition(promtool, tmp_path):  # noqa: F811
    """Counters that grow by the documented values each minute read as those values per 60 s."""
    trt, python = queries("tensorrtllm"), queries("python")
    # 1,800 prompt and 400 output tokens over 2 requests a minute, on each pod; 2 of 4 first responses
    # within 500 ms, all within 2 s: the p99 interpolates in the 500-2000 ms bucket.
    run_promtool(
        promtool,
        tmp_path,
        "tensorrtllm",
        [
            exact(trt.prompt_tokens_per_request, 900),
            exact(trt.output_tokens_per_request, 200),
            exact(f"sum({trt.prompt_tokens_per_pod})", 60),
            exact(trt.ttft_p99_seconds, 1.97),
            # Both pods' 2 requests a minute are at or below +Inf, none at or below 10 tokens.
            exact(f"max({trt.prompt_tokens_buckets})", 0.067),
            exact(f"min({trt.output_tokens_buckets})", 0),
            exact(f"max({trt.kv_used_per_pod})", 0.4875, None),
            exact(f"max({trt.waiting_per_pod})", 1, None),
        ],
    )
    # The gauges a Python-backend LLM exports win over what Unbusy would infer.
    run_promtool(
        promtool,
        tmp_path,
        "python",
        [exact(f"max({python.running_per_pod})", 12, None), exact(f"max({python.kv_used_per_pod})", 0.42, None)],
    )


def test_llm_alerts_read_only_exported_series():
    for engine in EXPOSITIONS:
        service = isvc(spec(engine), name=NAME, namespace=NAMESPACE)
        exported = exposition(engine)
        for alert in alerts.llm_alerts(service):
            for metric, matchers in used_series(alert.query):
                assert any(m == metric and matchers.items() <= labels.items() for m, labels, _, _ in exported), (
                    f"{alert.name} ({engine}): {metric}{matchers} is not exported"
                )
