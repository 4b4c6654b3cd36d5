"""An LLM's demand and capacity in tokens: what the scaling policy counts for a model whose requests
cost from a few dozen to tens of thousands of tokens.

A replica of a continuous-batching engine (vLLM, TensorRT-LLM) spends its time on two kinds of
work: prefill (the prompt, compute-bound, thousands of tokens a second) and decode (one token per
running request per step, memory-bound, far fewer). Saturated, it serves P prompt or O output
tokens a second or a mix of them on the line prompt/P + output/O = 1, so a load of p prompt and o
output tokens a second needs p/P + o/O replicas. Counted in output tokens, that is o + p x O/P
"weighted tokens" a second against a capacity of O a replica: one number the policy can treat as it
treats requests (scaling/policy.py, Observation.unit), its bursts, headroom and floors included.

Requests per second say little here: the same GPU answers ~8 code requests a second and saturates
below 4 conversation requests a second (LLM-PROBE, shared/calibration), and the mix moves during
the day. What the user feels is time to first token and time per output token: those, and the
KV cache that fills up instead of a queue, are guards (policy.Guard) beside the demand rule.

Pure: no I/O, no clock. The operator (controller/) and the simulator (sim/) build their LLM
observations here from the same readings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from unbusy.scaling.demand import Demand
from unbusy.scaling.policy import Guard, Observation, ReplicaSample
from unbusy.serving.llm import LlmProfile, SizeHistogram, TokenMix, fraction_within, token_capacity

TOKENS = "tok/s"
# KV-cache use (0-1) over which a replica admits no more requests without preempting others:
# vLLM preempts at 100%, and the last tenth fills within a few requests of a long-prompt mix.
KV_LIMIT = 0.9
# A replica with requests waiting while the variant misses its TTFT SLO serves as fast as it can at
# that SLO: its served tokens then are its capacity (scaling/capacity.py). Waiting alone is no sign:
# a continuous-batching engine holds new prompts for the next step's token budget at any load, and
# the gauge, read at one instant, often finds one there (the learner halved a conv profile's capacity
# at 40% load on that alone).
SATURATED_WAITING = 1.0
# An engine queues what it cannot serve, without bound (vLLM refuses nothing): requests waiting now
# are demand too, to be served within this long (one rate window) on top of what keeps arriving.
BACKLOG_DRAIN_S = 60.0


@dataclass(frozen=True)
class TokenCosts:
    """A saturated replica's prompt and output tokens per second (spec.model.llm.capacity, or the
    engine's profile at the mix seen now: priced)."""

    prompt_per_second: float
    output_per_second: float
    # What a saturated replica counts as, in weighted tokens/s: the spec's output tokens/s, so that a
    # capacity priced anew at each mix keeps one unit (the learned capacity and the status read it).
    unit_per_second: float | None = None
    # The share of the utilisation target at which the TTFT SLO still holds at this mix (priced; 1: it
    # holds at the target): the demand is counted at 1/share, so the fleet runs cooler where it must.
    slo_share: float = 1.0

    def weighted(self, prompt_rate: float, output_rate: float) -> float:
        """Weighted tokens per second: output tokens, plus prompt tokens at what each costs in output tokens."""
        return self.capacity * (prompt_rate / self.prompt_per_second + output_rate / self.output_per_second)

    @property
    def capacity(self) -> float:
        """Weighted tokens per second one replica serves."""
        return self.unit_per_second or self.output_per_second


@dataclass(frozen=True)
class Pricing:
    """An engine's measured step-time model (spec.model.llm.profile, serving/llm.py), with which the
    mix seen now is priced: its tokens a saturated replica serves, and the load at which the TTFT SLO
    holds. Without it, one prompt/output line (the spec's capacity) prices every mix."""

    profile: LlmProfile
    target: float  # the utilisation the policy plans for (capacityUtilizationPercent / 100)


@dataclass(frozen=True)
class Sizes:
    """How the requests finished over the window spread in prompt and output tokens: the engine's
    size histograms (vllm:request_prompt_tokens, vllm:request_generation_tokens; TensorRT-LLM's
    nv_llm_input/output_token_len); None where it exports none, or nothing was observed."""

    prompts: SizeHistogram | None = None
    outputs: SizeHistogram | None = None


def priced(costs: TokenCosts, pricing: Pricing | None, pods: list[PodTokens], finished_rps: float | None,
           ttft_slo_ms: float | None, sizes: Sizes = Sizes()) -> TokenCosts:  # fmt: skip
    """The costs of the mix the pods served over the window (its mean prompt and output tokens a
    request, spread as `sizes` show, else as exponentials), at the spec's unit; `costs` where there
    is no profile or nothing finished."""
    counted = [p for p in pods if p.prompt_rate is not None and p.output_rate is not None]
    if pricing is None or not finished_rps or not counted:
        return costs
    output = sum(p.output_rate for p in counted) / finished_rps
    if output <= 0:
        return costs
    mix = TokenMix.from_means(sum(p.prompt_rate for p in counted) / finished_rps, output, sizes.prompts, sizes.outputs)
    prompt_capacity, output_capacity = token_capacity(pricing.profile, mix)
    within = fraction_within(pricing.profile, mix, ttft_slo_ms / 1000) if ttft_slo_ms else pricing.target
    share = min(1.0, max(within, 0.05) / pricing.target)
    return TokenCosts(prompt_capacity, output_capacity, costs.capacity, share)


@dataclass(frozen=True)
class PodTokens:
    """One pod's token counters over the rate window, as the engine exports them."""

    prompt_rate: float | None  # prompt tokens prefilled per second (vllm:prompt_tokens_total)
    output_rate: float | None  # tokens generated per second (vllm:generation_tokens_total)
    # Requests waiting outside the engine's batch: the least over the rate window where the engine has
    # the gauge, the window's mean where it is inferred (llm_signals); None: not read.
    waiting: float | None = None


@dataclass(frozen=True)
class Latency:
    """The variant's latency and memory readings, and their limits."""

    ttft_p99_ms: float | None = None
    ttft_slo_ms: float | None = None
    tpot_p99_ms: float | None = None
    tpot_slo_ms: float | None = None
    kv_used: float | None = None  # the fullest ready replica's KV cache, 0-1


def sample(base: ReplicaSample, pod: PodTokens, costs: TokenCosts) -> ReplicaSample:
    """A replica's sample counted in weighted tokens: its served rate is what it prefilled and
    generated, and it reads as saturated (queue_depth_min) when requests waited all window."""
    if pod.prompt_rate is None or pod.output_rate is None:
        return replace(base, served_rate=None, request_rate=None, queue_depth_min=None, batch_mean=None)
    served = costs.weighted(pod.prompt_rate, pod.output_rate)
    # Triton's batches say nothing of an engine that batches by iteration: requests waiting do.
    return replace(base, served_rate=served, request_rate=served, queue_depth_min=pod.waiting, batch_mean=None)


def per_request(costs: TokenCosts, prompt_rate: float, output_rate: float, finished_rps: float) -> float | None:
    """Weighted tokens a request costs, from what the engine served over the window."""
    if finished_rps <= 0:
        return None
    return costs.weighted(prompt_rate, output_rate) / finished_rps / costs.slo_share


def demand(edge: Demand | None, pods: list[PodTokens], finished_rps: float | None, costs: TokenCosts) -> Demand | None:
    """Weighted tokens per second offered to the variant.

    With the edge's request counts (503s included) the demand is those requests times the tokens a
    request costs now (the engine's token counters over its finished requests), so it sees the
    mix move and the requests the edge refused; without them, the tokens the engine served
    (measurable False: a saturated engine's backlog is not seen). Either way the requests waiting
    in the engines are added, to be served within BACKLOG_DRAIN_S: an engine that fell behind
    queues, where Triton's fixed-cost models refuse."""
    counted = [p for p in pods if p.prompt_rate is not None and p.output_rate is not None]
    if not counted:
        return None
    prompt = sum(p.prompt_rate for p in counted)
    output = sum(p.output_rate for p in counted)
    cost = per_request(costs, prompt, output, finished_rps or 0.0)
    waiting = sum(p.waiting or 0.0 for p in counted)
    backlog = waiting * cost / BACKLOG_DRAIN_S if cost is not None else 0.0
    queued = f" + {waiting:,.0f} waiting" if backlog else ""
    if costs.slo_share < 1:
        queued += f", at {costs.slo_share:.0%} of the target for the TTFT SLO"
    if edge is not None and edge.measurable and cost is not None:
        source = f"{edge.source} {edge.rps:,.3g} rps{queued} x {cost:,.0f} tok/req"
        latest = None if edge.latest_rps is None else edge.latest_rps * cost + backlog
        return Demand(edge.rps * cost + backlog, edge.rejected_rps * cost, source, True, latest, cost)
    source = "engine token counters" + (f"{queued} x {cost:,.0f} tok/req" if backlog else "")
    return Demand(costs.weighted(prompt, output) / costs.slo_share + backlog, 0.0, source, False, per_request=cost)


def guards(latency: Latency) -> tuple[Guard, ...]:
    """TTFT and TPOT p99 against their SLOs, and the KV cache against KV_LIMIT, where read."""
    found = []
    if latency.ttft_p99_ms is not None and latency.ttft_slo_ms:
        found.append(Guard("ttft p99", latency.ttft_p99_ms, latency.ttft_slo_ms, "ms"))
    if latency.tpot_p99_ms is not None and latency.tpot_slo_ms:
        found.append(Guard("tpot p99", latency.tpot_p99_ms, latency.tpot_slo_ms, "ms"))
    if latency.kv_used is not None:
        found.append(Guard("kv cache", 100 * latency.kv_used, 100 * KV_LIMIT, "%"))
    return tuple(found)


def observation(
    current: int,
    samples: tuple[ReplicaSample, ...],
    pods: list[PodTokens],
    edge: Demand | None,
    finished_rps: float | None,
    latency: Latency,
    costs: TokenCosts,
    seasonal: float | None = None,
) -> Observation:
    """The policy's view of an LLM variant: `samples` (one per pod, in the order of `pods`) and the
    demand counted in weighted tokens, the latency and KV guards beside them. Its replicas read as
    saturated (their served tokens teach the capacity) only while the TTFT SLO is missed."""
    missing = latency.ttft_p99_ms is not None and latency.ttft_slo_ms and latency.ttft_p99_ms > latency.ttft_slo_ms
    ready = sum(1 for s in samples if s.ready)
    if missing and sum(p.waiting or 0.0 for p in pods) < ready:
        # The window's p99 remembers requests that waited; with fewer waiting than one a replica (the
        # step's next prompts) the fleet has caught up: a guard on it would order for the past.
        latency, missing = replace(latency, ttft_p99_ms=None), False
    marked = pods if missing else [replace(p, waiting=None) for p in pods]
    return Observation(
        current,
        tuple(sample(s, p, costs) for s, p in zip(samples, marked, strict=True)),
        demand=demand(edge, pods, finished_rps, costs),
        capacity_hint=costs.capacity,
        saturated_pending=SATURATED_WAITING,
        seasonal_rps=seasonal,
        unit=TOKENS,
        guards=guards(latency),
    )
