"""The PromQL of an LLM engine's signals: tokens per second, time to first token and per output
token, requests running and waiting, KV-cache use; read from the names each engine exports
(series.py), inferred where it exports none. Shared by the scaling loop (scaling/promql.py),
the alerts and the dashboard, so that what a panel shows is what the loop and the pages read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from unbusy import series
from unbusy.api.llm import Llm
from unbusy.api.model import Model
from unbusy.series import number

P99 = 0.99


@dataclass(frozen=True)
class LlmSignals:
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
    # How those requests spread in size: the size histograms' buckets over the window, one row per
    # `le` (serving/llm.py SizeHistogram reads their second moments and quantiles from them).
    prompt_tokens_buckets: str
    output_tokens_buckets: str
    ttft_p99_seconds: str | None
    tpot_p99_seconds: str | None
    running_per_pod: str | None  # requests in the engine's batch
    waiting_per_pod: str | None  # requests the engine holds outside its batch
    # The least of them over the window (a window's mean where inferred), of pods a window old:
    # requests waited throughout, so the pod served all it could (scaling/capacity.py). The gauge
    # now would read a request that arrived during a step as waiting, a replica at half load as saturated.
    least_waiting_per_pod: str | None
    kv_used_per_pod: str | None  # fraction 0-1 of the KV cache
    inferred: frozenset[str]


@dataclass(frozen=True)
class Grouping:
    """What the queries keep: `pods` the labels of a per-pod query, `whole` those of a p99 or a
    mean per request (none: the scope's whole). Alerts keep the variant in both."""

    pods: Sequence[str] = (series.POD,)
    whole: Sequence[str] = ()

    def per_pod(self, expr: str, op: str = "sum") -> str:
        return f"{op} by ({', '.join(self.pods)}) ({expr})"

    def rate(self, metric: str, where: str, window: str) -> str:
        return self.per_pod(f"rate({metric}{where}{window})")

    def mean(self, histogram: str, where: str, window: str) -> str:
        """The mean observation over the window; no sample without observations."""
        by = f" by ({', '.join(self.whole)})" if self.whole else ""
        count = f"sum{by} (rate({histogram}{series.COUNT}{where}{window}))"
        return f"sum{by} (rate({histogram}{series.SUM}{where}{window})) / ({count} > 0)"

    def since_window_start(self, expr: str, counter: str, where: str, window: str) -> str:
        """`expr` for the pods whose `counter` was there a window ago: over a younger pod's few
        scrapes a least says nothing (its first may find a request waiting)."""
        held = self.per_pod(f"{counter}{where} offset {window.strip('[]')}", "count")
        return f"({expr}) and on ({', '.join(self.pods)}) ({held})"

    def buckets(self, histogram: str, where: str, window: str) -> str:
        """The observations per second at or below each bound (one row per `le`) over the window."""
        by = ", ".join([*self.whole, series.LE])
        return f"sum by ({by}) (rate({histogram}{series.BUCKET}{where}{window}))"

    def p99(self, histogram: str, where: str, window: str) -> str:
        return f"histogram_quantile({P99}, {self.buckets(histogram, where, window)})"


def _work(prompt: str, output: str, llm: Llm) -> str:
    capacity = llm.capacity
    return (
        f"{prompt} / {number(capacity.prompt_tokens_per_second)}"
        f" + {output} / {number(capacity.output_tokens_per_second)}"
    )


def _vllm(llm: Llm, engine: str, scope: series.Scope, window: str, group: Grouping) -> LlmSignals:
    """vLLM's names: the vLLM backend (counters and histograms), or a Python-backend LLM, which may
    also export vLLM's scheduler gauges; where a gauge is absent, Little's law infers it."""
    where = scope.triton()
    prompt = group.rate(series.VLLM_PROMPT_TOKENS, where, window)
    output = group.rate(series.VLLM_OUTPUT_TOKENS, where, window)
    # Requests before their first token: the rate of the TTFT sum (each spends its TTFT there). Of
    # those, prompt tokens/s over the prefill capacity are being prefilled; the rest wait.
    before_first = group.rate(series.VLLM_TTFT_SECONDS + series.SUM, where, window)
    waiting = f"clamp_min({before_first} - {prompt} / {number(llm.capacity.prompt_tokens_per_second)}, 0)"
    # A decoding request observes one TPOT interval after another: the rate of the TPOT sum is the
    # number of requests decoding at once.
    running = group.rate(series.VLLM_TPOT_SECONDS + series.SUM, where, window)
    kv_used = None
    if llm.kv_cache_tokens is not None:
        # Each request in the batch holds its prompt and, on average, half its output.
        prompt_each, output_each = (
            f"{group.rate(h + series.SUM, where, window)} / ({group.rate(h + series.COUNT, where, window)} > 0)"
            for h in (series.VLLM_REQUEST_PROMPT_TOKENS, series.VLLM_REQUEST_OUTPUT_TOKENS)
        )
        kv_used = f"({running}) * ({prompt_each} + ({output_each}) / 2) / {llm.kv_cache_tokens}"
    least_waiting = waiting
    if engine == "python":
        running = f"({group.per_pod(series.VLLM_RUNNING + where)}) or ({running})"
        least_waiting = f"({group.per_pod(f'min_over_time({series.VLLM_WAITING}{where}{window})')}) or ({waiting})"
        waiting = f"({group.per_pod(series.VLLM_WAITING + where)}) or ({waiting})"
        reported = group.per_pod(series.VLLM_KV_USED + where, "max")
        kv_used = reported if kv_used is None else f"({reported}) or ({kv_used})"
    inferred = {"running_per_pod", "waiting_per_pod", "least_waiting_per_pod"}
    inferred |= {"kv_used_per_pod"} if llm.kv_cache_tokens else set()
    return LlmSignals(
        engine=engine,
        prompt_tokens_per_pod=prompt,
        output_tokens_per_pod=output,
        work_per_pod=_work(prompt, output, llm),
        finished_per_pod=group.rate(series.VLLM_E2E_SECONDS + series.COUNT, where, window),
        prompt_tokens_per_request=group.mean(series.VLLM_REQUEST_PROMPT_TOKENS, where, window),
        output_tokens_per_request=group.mean(series.VLLM_REQUEST_OUTPUT_TOKENS, where, window),
        prompt_tokens_buckets=group.buckets(series.VLLM_REQUEST_PROMPT_TOKENS, where, window),
        output_tokens_buckets=group.buckets(series.VLLM_REQUEST_OUTPUT_TOKENS, where, window),
        ttft_p99_seconds=group.p99(series.VLLM_TTFT_SECONDS, where, window),
        tpot_p99_seconds=group.p99(series.VLLM_TPOT_SECONDS, where, window),
        running_per_pod=running,
        waiting_per_pod=waiting,
        least_waiting_per_pod=group.since_window_start(least_waiting, series.VLLM_PROMPT_TOKENS, where, window),
        kv_used_per_pod=kv_used,
        inferred=frozenset(inferred),
    )


def _tensorrtllm(llm: Llm, model: str, scope: series.Scope, window: str, group: Grouping) -> LlmSignals:
    """The TensorRT-LLM backend's names: scheduler and KV gauges, token counts per finished request;
    no TTFT or TPOT of its own: TTFT from Triton's first-response histogram (histogram_latencies=true)."""
    tokens = series.TRTLLM_TOKEN_TYPE
    inputs = scope.triton(series.matcher(tokens, series.TRTLLM_INPUT))
    outputs = scope.triton(series.matcher(tokens, series.TRTLLM_OUTPUT))
    prompt = group.rate(series.TRTLLM_INPUT_TOKENS + series.SUM, inputs, window)
    output = group.rate(series.TRTLLM_OUTPUT_TOKENS + series.SUM, outputs, window)

    def requests(kind: str) -> str:
        return group.per_pod(series.TRTLLM_REQUESTS + scope.triton(series.matcher(series.TRTLLM_REQUEST_TYPE, kind)))

    waiting = scope.triton(series.matcher(series.TRTLLM_REQUEST_TYPE, series.TRTLLM_WAITING))

    kv = scope.triton(series.matcher(series.TRTLLM_KV_BLOCK_TYPE, series.TRTLLM_KV_FRACTION))
    # Triton's own histogram, of the model users call (an ensemble's, where it is one).
    first_response = group.p99(series.FIRST_RESPONSE_MS, scope.triton(series.matcher(series.MODEL, model)), window)
    return LlmSignals(
        engine="tensorrtllm",
        prompt_tokens_per_pod=prompt,
        output_tokens_per_pod=output,
        work_per_pod=_work(prompt, output, llm),
        finished_per_pod=group.rate(series.TRTLLM_OUTPUT_TOKENS + series.COUNT, outputs, window),
        prompt_tokens_per_request=group.mean(series.TRTLLM_INPUT_TOKENS, inputs, window),
        output_tokens_per_request=group.mean(series.TRTLLM_OUTPUT_TOKENS, outputs, window),
        # Bounds 10 to 1000 only: most of a long-prompt mix falls past the last, and its spread there
        # is the exponential the histogram's sum leaves (serving/llm.py SizeHistogram).
        prompt_tokens_buckets=group.buckets(series.TRTLLM_INPUT_TOKENS, inputs, window),
        output_tokens_buckets=group.buckets(series.TRTLLM_OUTPUT_TOKENS, outputs, window),
        ttft_p99_seconds=f"{first_response} / 1000",
        tpot_p99_seconds=None,
        running_per_pod=requests(series.TRTLLM_SCHEDULED),
        waiting_per_pod=requests(series.TRTLLM_WAITING),
        least_waiting_per_pod=group.since_window_start(
            group.per_pod(f"min_over_time({series.TRTLLM_REQUESTS}{waiting}{window})"),
            series.TRTLLM_INPUT_TOKENS + series.SUM,
            inputs,
            window,
        ),
        kv_used_per_pod=group.per_pod(series.TRTLLM_KV_BLOCKS + kv, "max"),
        inferred=frozenset(),
    )


def llm_signals(model: Model, scope: series.Scope, window: str, group: Grouping = Grouping()) -> LlmSignals | None:
    """The signals of `model`'s engine over `scope`, rates over `window` (e.g. "[60s]"); None for a
    model that is no LLM (no spec.model.llm)."""
    engine = model.llm_engine()
    if model.llm is None or engine is None:
        return None
    if engine == "tensorrtllm":
        return _tensorrtllm(model.llm, model.name, scope, window, group)
    return _vllm(model.llm, engine, scope, window, group)
