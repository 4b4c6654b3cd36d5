"""What Unbusy's operator reads of simulated LLM replicas, counted in tokens: the same observation
(scaling/tokens.py) the operator builds from Prometheus (scaling/fleet.py Answers.llm), built here
from the replicas' scrapes (sim/llm.py Window), so the simulator runs the operator's decisions.

Per replica: its prompt and output tokens per second between two scrapes, and its waiting requests
at the newest; over the variant: the requests finished per second (what a request costs in tokens),
the TTFT and TPOT p99 of the histograms summed over replicas (what `histogram_quantile(0.99, sum by
(le) (rate(...)))` reads), the requests' prompt and output sizes as their histograms spread them (the
profile's pricing reads their second moments) and the fullest ready replica's KV cache; the edge's
requests and 503s.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

from unbusy.scaling import tokens
from unbusy.scaling.policy import Observation, ReplicaSample
from unbusy.serving.llm import LlmProfile, SizeHistogram, token_capacity
from unbusy.sim.llm import Buckets, MixShift, Observe, Window, histogram_quantile, rate


def _summed(histograms: Iterable[Buckets | None]) -> Buckets | None:
    """One histogram of many replicas' (None: a replica not scraped before reads as empty)."""
    found = [h for h in histograms if h is not None]
    if not found:
        return None
    total = Buckets(found[0].bounds)
    for histogram in found:
        total.counts = [a + b for a, b in zip(total.counts, histogram.counts, strict=True)]
        total.total += histogram.total
        total.count += histogram.count
    return total


def _over_window(window: Window, name: str) -> tuple[Buckets | None, Buckets | None]:
    """Histogram `name` summed over the replicas, at the newest scrape and at the one before."""
    newest = _summed(getattr(n, name) for n, _ in window.replicas)
    before = _summed(
        getattr(b, name) if b is not None else Buckets(getattr(n, name).bounds) for n, b in window.replicas
    )
    return newest, before


def _p99_ms(window: Window, name: str) -> float | None:
    newest, before = _over_window(window, name)
    if newest is None:
        return None
    p99 = histogram_quantile(0.99, newest, before)
    return None if p99 is None else 1000 * p99


def _sizes(window: Window, name: str) -> SizeHistogram | None:
    """What `sum by (le) (rate(<name>_bucket[...]))` reads of a size histogram, as the operator parses it."""
    newest, before = _over_window(window, name)
    if newest is None or before is None:
        return None
    grown = itertools.accumulate(n - b for n, b in zip(newest.counts, before.counts, strict=True))
    return SizeHistogram.from_cumulative(zip((*newest.bounds, math.inf), grown, strict=True))


def observe_tokens(
    window: Window,
    current: int,
    costs: tokens.TokenCosts,
    ttft_slo_ms: float,
    tpot_slo_ms: float | None = None,
    pricing: tokens.Pricing | None = None,
) -> Observation:
    """The operator's observation of the simulated variant, in weighted tokens."""
    samples, pods, finished = [], [], 0.0
    for newest, before in window.replicas:
        samples.append(
            ReplicaSample(
                ready=newest.ready,
                queue_depth=newest.pending,
                gpu_utilization=100 * newest.gpu_utilization,
            )
        )
        pods.append(
            tokens.PodTokens(
                rate(newest, before, "prompt_tokens"), rate(newest, before, "generation_tokens"), newest.waiting
            )
        )
        finished += rate(newest, before, "success") or 0.0
    ready_kv = [n.kv_usage for n, _ in window.replicas if n.ready]
    latency = tokens.Latency(
        ttft_p99_ms=_p99_ms(window, "ttft"),
        ttft_slo_ms=ttft_slo_ms,
        tpot_p99_ms=_p99_ms(window, "tpot"),
        tpot_slo_ms=tpot_slo_ms,
        kv_used=max(ready_kv) if ready_kv else None,
    )
    sizes = tokens.Sizes(_sizes(window, "prompt_sizes"), _sizes(window, "output_sizes"))
    costs = tokens.priced(costs, pricing, pods, finished, ttft_slo_ms, sizes)
    return tokens.observation(current, tuple(samples), pods, window.edge, finished, latency, costs)


def first_mix_costs(profile: LlmProfile, mix: MixShift, seconds: float) -> tokens.TokenCosts:
    """The capacity a platform engineer enters from a benchmark of the traffic they had: the profile's
    tokens per second on the trace's first mix."""
    return tokens.TokenCosts(*token_capacity(profile, mix.token_mix(0, seconds)))


def observer(
    costs: tokens.TokenCosts,
    ttft_slo_ms: float,
    tpot_slo_ms: float | None = None,
    pricing: tokens.Pricing | None = None,
) -> Observe:
    """observe_tokens with the spec's numbers, in the shape simulate_llm takes."""

    def observe(window: Window, profile: LlmProfile, current: int) -> Observation:
        return observe_tokens(window, current, costs, ttft_slo_ms, tpot_slo_ms, pricing)

    return observe
