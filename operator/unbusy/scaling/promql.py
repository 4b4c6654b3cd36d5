"""The PromQL the scaling loop runs for one variant, one query per input of the policy.

Every selector comes from series.py, which escapes the values taken from the spec (namespace,
InferenceService and model name), so a spec cannot inject PromQL. Per-pod queries are
grouped `by (pod)` so that the loop can join them with the pods' readiness from the API server
(the policy averages GPU utilisation over ready pods only). The variant's demand, refused
requests included, is read at the edge (render/edge.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from unbusy import series
from unbusy.api import InferenceService
from unbusy.api.spec import Llm
from unbusy.gpu.request import GpuRequest
from unbusy.render import meta
from unbusy.render.alerts import number
from unbusy.render.edge import DemandQueries, demand_queries


@dataclass(frozen=True)
class Queries:
    pending_total: str  # all requests pending in the variant: the queue-depth metric sums them
    pending_per_pod: str
    gpu_utilization_per_pod: str  # percent
    request_rate_per_pod: str  # requests per second arriving, answered or rejected
    queue_time_ms_per_pod: str  # mean wait in Triton's queue; no sample while a pod has no traffic
    served_rate_per_pod: str  # requests answered per second: a saturated pod's is its capacity
    least_pending_per_pod: str  # the least pending count over the rate window: saturated throughout?
    demand: DemandQueries  # offered load of the variant, refused requests included where the edge is read


@dataclass(frozen=True)
class PerPod:
    """Per-pod inputs of the policy, each query grouped `by` the labels that name a pod."""

    pending: str
    gpu_utilization: str  # percent
    request_rate: str
    queue_time_ms: str
    served_rate: str
    least_pending: str


def per_pod(triton: str, requests: str, dcgm: str, mig: bool, by: str, dcgm_by: str, window: str) -> PerPod:
    """The per-pod queries over Triton series `triton` (and `requests`: its answered and failed
    counters), DCGM series `dcgm`, grouped `by` (DCGM's by `dcgm_by`), rates over `window`."""
    waited = f"sum by ({by}) (rate({series.QUEUE_DURATION_US}{triton}{window}))"
    # `> 0` drops idle pods instead of dividing by zero into NaN.
    answered = f"(sum by ({by}) (rate({series.REQUEST_SUCCESS}{triton}{window})) > 0)"
    return PerPod(
        pending=f"sum by ({by}) ({series.PENDING_REQUESTS}{triton})",
        gpu_utilization=f"avg by ({dcgm_by}) ({series.gpu_utilization_percent(dcgm, mig)})",
        request_rate=f"sum by ({by}) (rate({requests}{window}))",
        queue_time_ms=f"{waited} / {answered} / 1000",
        served_rate=f"sum by ({by}) (rate({series.REQUEST_SUCCESS}{triton}{window}))",
        least_pending=f"sum by ({by}) (min_over_time({series.PENDING_REQUESTS}{triton}{window}))",
    )


def _window(window_seconds: int) -> str:
    if window_seconds < 1:
        raise ValueError(f"window_seconds must be at least 1, not {window_seconds}")
    return f"[{window_seconds}s]"


# Answered and failed requests: both counters, selected by name.
_REQUESTS = series.matcher("__name__", series.names_regex([series.REQUEST_SUCCESS, series.REQUEST_FAILURE]), "=~")


def queries(scope: series.Scope, model: str, mig: bool, demand: DemandQueries, window_seconds: int = 60) -> Queries:
    """The queries of one scope (one variant) and model; `window_seconds` is the rate window."""
    window = _window(window_seconds)
    triton = scope.triton(series.matcher(series.MODEL, model))
    requests = scope.triton(_REQUESTS, series.matcher(series.MODEL, model))
    pods = per_pod(triton, requests, scope.dcgm(), mig, series.POD, series.POD, window)
    return Queries(
        pending_total=f"sum({series.PENDING_REQUESTS}{triton})",
        pending_per_pod=pods.pending,
        gpu_utilization_per_pod=pods.gpu_utilization,
        request_rate_per_pod=pods.request_rate,
        queue_time_ms_per_pod=pods.queue_time_ms,
        served_rate_per_pod=pods.served_rate,
        least_pending_per_pod=pods.least_pending,
        demand=demand,
    )


# A fleet's per-pod series, grouped so that each row names its pod (pod names are unique within
# a namespace) and, for Triton's, the model it serves.
FLEET_TRITON_BY = (series.NAMESPACE, series.POD, series.MODEL)
FLEET_DCGM_BY = (series.NAMESPACE, series.POD)


def fleet_per_pod(namespaces: Iterable[str], mig: bool, window_seconds: int = 60) -> PerPod:
    """The per-pod queries of every InferenceService in `namespaces` at once: Triton's series of
    any InferenceService (its `inferenceservice` target label set), every GPU's there."""
    where = series.matcher(series.NAMESPACE, series.names_regex(namespaces), "=~")
    managed = series.matcher(series.INFERENCE_SERVICE, "", "!=")
    triton, requests = series.selector(where, managed), series.selector(_REQUESTS, where, managed)
    by, dcgm_by = ", ".join(FLEET_TRITON_BY), ", ".join(FLEET_DCGM_BY)
    return per_pod(triton, requests, series.selector(where), mig, by, dcgm_by, _window(window_seconds))


def variant_queries(
    isvc: InferenceService, variant: str, gpu: GpuRequest, share: float, window_seconds: int = 60
) -> Queries:
    """The queries for one variant of an InferenceService; MIG slices read GR engine activity.
    `share` is the variant's part of the traffic (weight / 100), for an edge that counts the route only."""
    demand = demand_queries(isvc, variant, share, window_seconds)
    scope = meta.series_scope(isvc, variant)
    return queries(scope, isvc.spec.model.name, gpu.mig_profile is not None, demand, window_seconds)


# --- LLM variants: tokens, time to first token, KV cache ------------------------------------

P99 = 0.99


@dataclass(frozen=True)
class LlmQueries:
    """The token-level inputs of one LLM variant, read from what its engine exports (series.py).

    Per-pod queries are grouped by pod; the p99s and the tokens per request are the variant's.
    A field is None where the engine reports nothing to read it from or infer it by; `inferred`
    names the fields Unbusy derives (Little's law over the engine's histograms, with the capacity
    of spec.model.llm) instead of reading, wholly or where the engine's own gauge is absent.
    """

    engine: str
    prompt_tokens_per_pod: str  # prompt (prefill) tokens per second
    output_tokens_per_pod: str  # output (decode) tokens per second
    work_per_pod: str  # prompt/P + output/O with the spec's capacities: 1 is a saturated replica
    finished_per_pod: str  # requests finished per second
    prompt_tokens_per_request: str  # mean over the variant's requests finished in the window
    output_tokens_per_request: str
    ttft_p99_seconds: str | None
    tpot_p99_seconds: str | None
    running_per_pod: str | None  # requests in the engine's batch
    waiting_per_pod: str | None  # requests the engine holds outside its batch
    kv_used_per_pod: str | None  # fraction 0-1 of the KV cache
    inferred: frozenset[str]
    demand: DemandQueries


def _sum_rate(metric: str, where: str, window: str) -> str:
    return f"sum by ({series.POD}) (rate({metric}{where}{window}))"


def _per_pod_mean(histogram: str, where: str, window: str) -> str:
    """Each pod's mean observation over the window; no sample for a pod without observations."""
    count = _sum_rate(histogram + series.COUNT, where, window)
    return f"{_sum_rate(histogram + series.SUM, where, window)} / ({count} > 0)"


def _mean(histogram: str, where: str, window: str) -> str:
    """The mean observation over the window, over every pod of the variant."""
    count = f"sum(rate({histogram}{series.COUNT}{where}{window}))"
    return f"sum(rate({histogram}{series.SUM}{where}{window})) / ({count} > 0)"


def _p99(histogram: str, where: str, window: str) -> str:
    return f"histogram_quantile({P99}, sum by ({series.LE}) (rate({histogram}{series.BUCKET}{where}{window})))"


def _gauge(op: str, metric: str, where: str) -> str:
    return f"{op} by ({series.POD}) ({metric}{where})"


def _work(prompt: str, output: str, llm: Llm) -> str:
    capacity = llm.capacity
    return (
        f"{prompt} / {number(capacity.prompt_tokens_per_second)}"
        f" + {output} / {number(capacity.output_tokens_per_second)}"
    )


def _vllm(llm: Llm, engine: str, scope: series.Scope, window: str, demand: DemandQueries) -> LlmQueries:
    """vLLM's names: the vLLM backend (counters and histograms), or a Python-backend LLM, which may
    also export vLLM's scheduler gauges; where a gauge is absent, Little's law infers it."""
    where = scope.triton()
    prompt = _sum_rate(series.VLLM_PROMPT_TOKENS, where, window)
    output = _sum_rate(series.VLLM_OUTPUT_TOKENS, where, window)
    # Requests before their first token, per second of TTFT summed: the rate of the TTFT sum. Of
    # those, prompt tokens/s over the prefill capacity are being prefilled; the rest wait.
    before_first = _sum_rate(series.VLLM_TTFT_SECONDS + series.SUM, where, window)
    waiting = f"clamp_min({before_first} - {prompt} / {number(llm.capacity.prompt_tokens_per_second)}, 0)"
    # A decoding request observes one TPOT interval after another: the rate of the TPOT sum is the
    # number of requests decoding at once.
    running = _sum_rate(series.VLLM_TPOT_SECONDS + series.SUM, where, window)
    kv_used = None
    if llm.kv_cache_tokens is not None:
        # Each request in the batch holds its prompt and, on average, half its output.
        prompt_each = _per_pod_mean(series.VLLM_REQUEST_PROMPT_TOKENS, where, window)
        output_each = _per_pod_mean(series.VLLM_REQUEST_OUTPUT_TOKENS, where, window)
        kv_used = f"({running}) * ({prompt_each} + ({output_each}) / 2) / {llm.kv_cache_tokens}"
    if engine == "python":
        running = f"({_gauge('sum', series.VLLM_RUNNING, where)}) or ({running})"
        waiting = f"({_gauge('sum', series.VLLM_WAITING, where)}) or ({waiting})"
        reported = _gauge("max", series.VLLM_KV_USED, where)
        kv_used = reported if kv_used is None else f"({reported}) or ({kv_used})"
    inferred = {"running_per_pod", "waiting_per_pod"} | ({"kv_used_per_pod"} if llm.kv_cache_tokens else set())
    return LlmQueries(
        engine=engine,
        prompt_tokens_per_pod=prompt,
        output_tokens_per_pod=output,
        work_per_pod=_work(prompt, output, llm),
        finished_per_pod=_sum_rate(series.VLLM_E2E_SECONDS + series.COUNT, where, window),
        prompt_tokens_per_request=_mean(series.VLLM_REQUEST_PROMPT_TOKENS, where, window),
        output_tokens_per_request=_mean(series.VLLM_REQUEST_OUTPUT_TOKENS, where, window),
        ttft_p99_seconds=_p99(series.VLLM_TTFT_SECONDS, where, window),
        tpot_p99_seconds=_p99(series.VLLM_TPOT_SECONDS, where, window),
        running_per_pod=running,
        waiting_per_pod=waiting,
        kv_used_per_pod=kv_used,
        inferred=frozenset(inferred),
        demand=demand,
    )


def _tensorrtllm(llm: Llm, model: str, scope: series.Scope, window: str, demand: DemandQueries) -> LlmQueries:
    """The TensorRT-LLM backend's names: scheduler and KV gauges, token counts per finished request;
    no TTFT or TPOT of its own: TTFT from Triton's first-response histogram (histogram_latencies=true)."""
    tokens = series.TRTLLM_TOKEN_TYPE
    inputs = scope.triton(series.matcher(tokens, series.TRTLLM_INPUT))
    outputs = scope.triton(series.matcher(tokens, series.TRTLLM_OUTPUT))
    prompt = _sum_rate(series.TRTLLM_INPUT_TOKENS + series.SUM, inputs, window)
    output = _sum_rate(series.TRTLLM_OUTPUT_TOKENS + series.SUM, outputs, window)
    requests = series.TRTLLM_REQUESTS

    def request_gauge(kind: str) -> str:
        return _gauge("sum", requests, scope.triton(series.matcher(series.TRTLLM_REQUEST_TYPE, kind)))

    kv = scope.triton(series.matcher(series.TRTLLM_KV_BLOCK_TYPE, series.TRTLLM_KV_FRACTION))
    # Triton's own histogram, of the model users call (an ensemble's, where it is one).
    first_response = _p99(series.FIRST_RESPONSE_MS, scope.triton(series.matcher(series.MODEL, model)), window)
    return LlmQueries(
        engine="tensorrtllm",
        prompt_tokens_per_pod=prompt,
        output_tokens_per_pod=output,
        work_per_pod=_work(prompt, output, llm),
        finished_per_pod=_sum_rate(series.TRTLLM_OUTPUT_TOKENS + series.COUNT, outputs, window),
        prompt_tokens_per_request=_mean(series.TRTLLM_INPUT_TOKENS, inputs, window),
        output_tokens_per_request=_mean(series.TRTLLM_OUTPUT_TOKENS, outputs, window),
        ttft_p99_seconds=f"{first_response} / 1000",
        tpot_p99_seconds=None,
        running_per_pod=request_gauge(series.TRTLLM_SCHEDULED),
        waiting_per_pod=request_gauge(series.TRTLLM_WAITING),
        kv_used_per_pod=_gauge("max", series.TRTLLM_KV_BLOCKS, kv),
        inferred=frozenset(),
        demand=demand,
    )


def llm_queries(isvc: InferenceService, variant: str, share: float, window_seconds: int = 60) -> LlmQueries | None:
    """The LLM queries of one variant for its engine (spec.model.llm); None for a model that is no LLM.
    `share` is the variant's part of the traffic, as for variant_queries."""
    model = isvc.spec.model
    engine = model.llm_engine()
    if model.llm is None or engine is None:
        return None
    window, scope = _window(window_seconds), meta.series_scope(isvc, variant)
    demand = demand_queries(isvc, variant, share, window_seconds)
    if engine == "tensorrtllm":
        return _tensorrtllm(model.llm, model.name, scope, window, demand)
    return _vllm(model.llm, engine, scope, window, demand)
