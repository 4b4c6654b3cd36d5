"""The scaling loop's queries: escaped, MIG-aware, and accepted and evaluated by the real promtool."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from builders import isvc
from test_promtool import promtool, run, text  # noqa: F401  (promtool is a fixture)

from unbusy import series
from unbusy.gpu.request import gpu_request
from unbusy.render.edge import demand_queries
from unbusy.scaling.promql import LlmQueries, Queries, llm_queries, queries, variant_queries

MIG = {"gpu": {"migProfile": "1g.10gb", "product": "H100-80GB"}}
# Values no spec can hold today (the API validates them); the queries must stay safe regardless.
HOSTILE_NAMESPACE = 'ml"} or up{namespace="b'
HOSTILE_MODEL = 'res\\net"50\n'
POD, OTHER_POD = "resnet-main-7d9f8c6b5d-x2k4p", "resnet-main-7d9f8c6b5d-q8w7e"
STRANGER_POD = "resnet-mainline-7d9f8c6b5d-x2k4p"  # another Deployment whose name starts with ours
# The demand queries have tests of their own (test_edge.py); here they ride along.
DEMAND = demand_queries(isvc({}), "main", share=1.0, window_seconds=60)


def of(spec: dict) -> Queries:
    service = isvc(spec, name="resnet", namespace="ml")
    return variant_queries(service, "main", gpu_request(service.spec.gpu, service.spec.model.gpu_memory), share=1.0)


def triton_expressions(q: Queries) -> dict[str, str]:
    """The queries of Triton's and the DCGM exporter's series, by field."""
    return {name: value for name, value in dataclasses.asdict(q).items() if name != "demand"}


def named_expressions(q: Queries) -> dict[str, str]:
    """Every query the loop runs, by field."""
    return triton_expressions(q) | {"demand_requests": q.demand.requests, "demand_rejected": q.demand.rejected}


def test_whole_gpus_read_gpu_util_and_mig_slices_gr_engine_activity():
    whole, mig = of({}), of(MIG)
    assert series.GPU_UTIL in whole.gpu_utilization_per_pod
    assert series.GR_ENGINE_ACTIVE not in whole.gpu_utilization_per_pod
    assert f"100 * {series.GR_ENGINE_ACTIVE}" in mig.gpu_utilization_per_pod
    assert whole.pending_total == (
        'sum(nv_inference_pending_request_count{namespace="ml",inferenceservice="resnet",variant="main",'
        'model="resnet50"})'
    )


def test_spec_values_reach_promql_only_quoted():
    scope = series.Scope(HOSTILE_NAMESPACE, "resnet", ("resnet-main",), "main")
    q = queries(scope, HOSTILE_MODEL, mig=False, demand=DEMAND)
    for expr in triton_expressions(q).values():
        assert HOSTILE_NAMESPACE not in expr and HOSTILE_MODEL not in expr
        assert series.quote(HOSTILE_NAMESPACE) in expr
    assert series.quote(HOSTILE_MODEL) in q.pending_total


def test_rate_window_must_be_positive():
    with pytest.raises(ValueError, match="window_seconds"):
        queries(series.Scope("ml", "resnet", ("resnet-main",), "main"), "resnet50", False, DEMAND, window_seconds=0)


@pytest.mark.parametrize("spec", [{}, MIG], ids=["whole-gpu", "mig"])
def test_promtool_accepts_the_queries(promtool, tmp_path, spec):  # noqa: F811
    rules = [{"record": f"unbusy:scaling:{name}", "expr": expr} for name, expr in named_expressions(of(spec)).items()]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": [{"name": "scaling", "rules": rules}]}))
    run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)


def triton(pod: str, namespace: str = HOSTILE_NAMESPACE, model: str = HOSTILE_MODEL, **extra: str) -> dict[str, str]:
    labels = {"namespace": namespace, "inferenceservice": "resnet", "variant": "main", "pod": pod}
    return labels | {"model": model, "version": "1"} | extra


def dcgm(pod: str, namespace: str = HOSTILE_NAMESPACE, mig: bool = False) -> dict[str, str]:
    labels = {"namespace": namespace, "pod": pod, "gpu": "0", "UUID": "GPU-1"}
    return labels | ({"GPU_I_PROFILE": "1g.10gb", "GPU_I_ID": "7"} if mig else {})


@pytest.mark.parametrize("mig", [False, True], ids=["whole-gpu", "mig"])
def test_queries_select_exactly_this_variant_and_model(promtool, tmp_path, mig):  # noqa: F811
    """Evaluated by promtool over our pods' series and breaching series of strangers."""
    q = queries(series.Scope(HOSTILE_NAMESPACE, "resnet", ("resnet-main",), "main"), HOSTILE_MODEL, mig, DEMAND)
    strangers = [
        triton(POD, namespace="other"),
        triton(POD, model="other-model"),
        triton(POD, variant="canary"),
        triton(STRANGER_POD, inferenceservice="resnet-mainline"),
    ]
    gpu_metric, busy, other = (series.GR_ENGINE_ACTIVE, "0.75", "1") if mig else (series.GPU_UTIL, "75", "100")
    ours = [
        (text(series.PENDING_REQUESTS, triton(POD)), "12x40"),
        (text(series.PENDING_REQUESTS, triton(OTHER_POD)), "4x40"),
        # 10 requests/s answered plus 2/s rejected on POD, each having waited 20 ms in the queue.
        (text(series.REQUEST_SUCCESS, triton(POD)), "0+150x40"),
        (text(series.REQUEST_FAILURE, triton(POD, reason=series.REJECTED)), "0+30x40"),
        (text(series.QUEUE_DURATION_US, triton(POD)), "0+3000000x40"),
        (text(gpu_metric, dcgm(POD, mig=mig)), f"{busy}x40"),
    ]
    noise = [
        (text(m, labels), "0+999x40") for labels in strangers for m in (series.PENDING_REQUESTS, series.REQUEST_SUCCESS)
    ]
    noise += [
        (text(gpu_metric, dcgm(pod, namespace=ns, mig=mig)), f"{other}x40")
        for pod, ns in ((POD, "other"), (STRANGER_POD, HOSTILE_NAMESPACE))
    ]
    pod = text("", {"pod": POD})
    checks = [
        (q.pending_total, [("{}", 16)]),
        (q.pending_per_pod, [(pod, 12), (text("", {"pod": OTHER_POD}), 4)]),
        (q.gpu_utilization_per_pod, [(pod, 75)]),
        (q.request_rate_per_pod, [(pod, 12)]),
        (q.queue_time_ms_per_pod, [(pod, 20)]),
    ]
    tests = {
        "rule_files": [],
        "tests": [
            {
                "interval": "15s",
                "input_series": [{"series": s, "values": v} for s, v in ours + noise],
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": "5m",
                        "exp_samples": [{"labels": labels, "value": value} for labels, value in expected],
                    }
                    for expr, expected in checks
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    run(promtool, "test", "rules", "test.yaml", cwd=tmp_path)


# --- LLM variants ---------------------------------------------------------------------------

LLM = {
    "slo": {"ttftP99Ms": 2000},
    "capacity": {"promptTokensPerSecond": 20000, "outputTokensPerSecond": 2000},
    "kvCacheTokens": 400_000,
}


def llm_of(backend: str, variants: list | None = None) -> LlmQueries | None:
    model = {"name": "llama", "repository": "pvc://models/llm", "config": {"backend": backend}, "llm": LLM}
    service = isvc({"model": model, **({"variants": variants} if variants else {})}, name="resnet", namespace="ml")
    return llm_queries(service, "main", share=1.0)


def test_a_model_that_is_no_llm_has_no_llm_queries():
    assert llm_queries(isvc({}), "main", share=1.0) is None


@pytest.mark.parametrize("backend", ["vllm", "tensorrtllm", "python"])
def test_llm_queries_select_one_variant_and_carry_its_demand(backend):
    variants = [{"name": "main", "weight": 80}, {"name": "small", "weight": 20}]
    q = llm_of(backend, variants)
    texts = [v for v in dataclasses.asdict(q).values() if isinstance(v, str) and v != backend]
    assert texts and all('variant="main"' in t and 'namespace="ml"' in t for t in texts)
    assert q.demand.requests and q.engine == backend


def test_the_request_size_histograms_are_read_by_bucket_bound_over_the_variant():
    """What the profile's pricing reads of how sizes spread: each bound's observations per second,
    summed over the variant's pods (one row per `le`), from the names each engine exports."""
    vllm, trt = llm_of("vllm"), llm_of("tensorrtllm")
    scope = 'namespace="ml",inferenceservice="resnet",variant="main"'
    assert vllm.prompt_tokens_buckets == f"sum by (le) (rate(vllm:request_prompt_tokens_bucket{{{scope}}}[60s]))"
    assert vllm.output_tokens_buckets == f"sum by (le) (rate(vllm:request_generation_tokens_bucket{{{scope}}}[60s]))"
    inputs = f'{scope},response_metric_type="total_input_tokens"'
    assert trt.prompt_tokens_buckets == f"sum by (le) (rate(nv_llm_input_token_len_bucket{{{inputs}}}[60s]))"
    assert trt.output_tokens_buckets.startswith("sum by (le) (rate(nv_llm_output_token_len_bucket{")
    # The p99s read the same sums of buckets.
    assert vllm.ttft_p99_seconds.startswith(
        "histogram_quantile(0.99, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{"
    )


def test_the_vllm_backend_waiting_running_and_kv_are_inferred_by_littles_law(promtool, tmp_path):  # noqa: F811
    """3 requests/s of TTFT summed (3 before their first token) of which 20,000 prompt tokens/s at a
    capacity of 20,000 are in prefill: 2 wait. 12 s of TPOT a second: 12 decode. Each holds its 1,000
    prompt and half its 200 output tokens: 12 x 1,100 of 400,000 KV tokens."""
    q = llm_of("vllm")
    labels = {"namespace": "ml", "inferenceservice": "resnet", "variant": "main", "pod": POD, "model": "llama"}
    per_minute = {
        series.VLLM_TTFT_SECONDS + series.SUM: 180,
        series.VLLM_PROMPT_TOKENS: 1_200_000,
        series.VLLM_TPOT_SECONDS + series.SUM: 720,
        series.VLLM_REQUEST_PROMPT_TOKENS + series.SUM: 60_000,
        series.VLLM_REQUEST_PROMPT_TOKENS + series.COUNT: 60,
        series.VLLM_REQUEST_OUTPUT_TOKENS + series.SUM: 12_000,
        series.VLLM_REQUEST_OUTPUT_TOKENS + series.COUNT: 60,
    }
    input_series = [{"series": text(m, labels), "values": f"0+{n}x20"} for m, n in per_minute.items()]
    checks = [
        {
            "expr": f"round({expr}, 0.0001)",
            "eval_time": "10m",
            "exp_samples": [{"labels": f'{{pod="{POD}"}}', "value": v}],
        }
        for expr, v in ((q.waiting_per_pod, 2), (q.running_per_pod, 12), (q.kv_used_per_pod, 0.033))
    ]
    tests = {"rule_files": [], "tests": [{"interval": "1m", "input_series": input_series, "promql_expr_test": checks}]}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    run(promtool, "test", "rules", "test.yaml", cwd=tmp_path)


def test_the_least_waiting_reads_the_gauge_over_the_window_of_pods_a_window_old(promtool, tmp_path):  # noqa: F811
    """A Python-backend LLM's waiting gauge reads 3 now but 0 at times in the window: its requests did
    not wait throughout, so the pod is not read as saturated (the window's least, not the last value).
    A pod 30 s old has no least: its first scrapes found a request waiting, which says nothing yet."""
    q = llm_of("python")
    young = POD.replace("x2k4p", "y7n3q")
    labels = {"namespace": "ml", "inferenceservice": "resnet", "variant": "main", "model": "llama"}
    inputs = [
        {"series": text(series.VLLM_WAITING, labels | {"pod": POD}), "values": "2 0 1 0 2 3 3"},
        {"series": text(series.VLLM_PROMPT_TOKENS, labels | {"pod": POD}), "values": "0+100x6"},
        {"series": text(series.VLLM_WAITING, labels | {"pod": young}), "values": "_ _ _ _ 1 1 1"},
        {"series": text(series.VLLM_PROMPT_TOKENS, labels | {"pod": young}), "values": "_ _ _ _ 0 100 200"},
    ]
    on = lambda pod, value: {"labels": f'{{pod="{pod}"}}', "value": value}  # noqa: E731
    checks = [
        {"expr": q.waiting_per_pod, "eval_time": "90s", "exp_samples": [on(POD, 3), on(young, 1)]},
        {"expr": q.least_waiting_per_pod, "eval_time": "90s", "exp_samples": [on(POD, 0)]},
    ]
    group = {"interval": "15s", "input_series": inputs, "promql_expr_test": checks}
    tests = {"rule_files": [], "evaluation_interval": "15s", "tests": [group]}  # data loaded up to each 15 s
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    run(promtool, "test", "rules", "test.yaml", cwd=tmp_path)
