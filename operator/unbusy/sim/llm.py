"""The LLM simulation: replicas of serving/llm.py's engine under a trace, scaled by a Policy.

Unlike engine.py (fluid seconds of thousands of requests), each request is an event here: LLM
replicas answer tens of requests a second, and a request's cost is its own prompt and output,
drawn from a mix of the Azure LLM trace (sim/mixes/). The mix may move over the trace: `code->conv`
draws from code at the start and from conv at the end, the conv share growing linearly.

Arrivals: Poisson counts per second (engine.poisson) at uniform times within the second, routed
round robin over the ready replicas (none ready: refused at the edge). Each replica's engine is
advanced only as far as its next arrival, a scrape or the end needs.

What the scaling loop reads is what the real engines export, scraped every scrape_interval_s and
readable metrics_delay_s later (Scrape: the vLLM backend's counters and histograms, vLLM's
engine gauges, Triton's pending count, near 0 for a decoupled model that takes every request into
its engine at once, and the GPU reading), beside the edge's request and 503 counts. `observe`
turns those into the policy's Observation (default: the request-level ReplicaSample fields and
the edge's demand, with the profile's saturated requests/s for the mix the token counters show).

Scale-in: loading replicas go first, then the least busy; a removed replica takes no more
requests and holds its GPU until its engine is empty.

Fallback (config.fallback): a fixed pool of replicas of a smaller LLM (spec.fallback's variant); at
each evaluation traffic/shedding.py moves a share of the arrivals to it, as the operator moves route
weight, with the LLM's demand and capacity counted back from tokens into requests (Demand.requests,
Demand.in_requests: the fallback is sized in rpsPerReplica), as controller/autoscale.py does. Its
replicas count in the GPU-hours; the requests they answer count in the minutes as any other.
"""

from __future__ import annotations

import bisect
import csv
import functools
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from unbusy.api.autoscaling import Autoscaling
from unbusy.api.fallback import Fallback
from unbusy.scaling.demand import Demand
from unbusy.scaling.policy import Decision, Observation, PolicyState, ReplicaSample, decide
from unbusy.serving.llm import Engine, LlmProfile, Request, TokenMix, saturated_rps
from unbusy.sim.engine import Policy, poisson
from unbusy.sim.stats import SLO_SHARE, Histogram
from unbusy.sim.traces import Trace
from unbusy.traffic import shedding

MIXES = Path(__file__).parent / "mixes"
# vLLM's bucket boundaries (s), as the Triton vLLM backend declares them, and bench/llmcal exports them.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
MAX_MODEL_LEN = 131072  # a Llama 3.x context


def one_two_five(limit: int) -> tuple[int, ...]:
    """1, 2, 5, 10, 20, 50, ... up to `limit`: vLLM's build_1_2_5_buckets."""
    bounds, magnitude = [], 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude > limit:
                return tuple(bounds)
            bounds.append(step * magnitude)
        magnitude *= 10


# A request's prompt and generation tokens, observed when it ends: the vLLM backend's
# build_1_2_5_buckets(max_model_len) (src/utils/metrics.py).
TOKEN_BUCKETS = one_two_five(MAX_MODEL_LEN)
DRAIN_S = 3600.0  # after the trace, how long the engines may run to answer what they hold


# --- request sizes ------------------------------------------------------------------------------


@functools.cache
def mix_sizes(name_or_path: str) -> tuple[tuple[int, int], ...]:
    """(prompt, output) tokens of each request of a mix: sim/mixes/<name>.csv or a CSV with columns
    context_tokens,generated_tokens."""
    path = MIXES / f"{name_or_path}.csv"
    if not path.is_file():
        path = Path(name_or_path)
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in MIXES.glob("*.csv")))
        raise ValueError(f"mix {name_or_path!r}: neither one of {names} nor a CSV of context_tokens,generated_tokens")
    with path.open() as rows:
        return tuple((int(r["context_tokens"]), max(1, int(r["generated_tokens"]))) for r in csv.DictReader(rows))


@dataclass(frozen=True)
class MixShift:
    """The request mix over a trace: `start`'s sizes, moving linearly to `end`'s (None: no move)."""

    start: str
    end: str | None = None

    @classmethod
    def parse(cls, text: str) -> MixShift:
        """`conv`, `code`, a CSV path, or `a->b` for a mix that moves from a to b over the trace."""
        start, _, end = (part.strip() for part in text.partition("->"))
        shift = cls(start, end or None)
        for name in (shift.start, shift.end):
            if name is not None:
                mix_sizes(name)  # fails early, naming the mix
        return shift

    def end_share(self, second: float, seconds: float) -> float:
        return 0.0 if self.end is None else min(1.0, max(0.0, second / max(1.0, seconds)))

    def draw(self, rng: random.Random, second: float, seconds: float) -> tuple[int, int]:
        end = self.end_share(second, seconds)
        name = self.end if end and rng.random() < end else self.start
        return rng.choice(mix_sizes(name))

    def token_mix(self, second: float, seconds: float) -> TokenMix:
        """The mix's moments at `second` (the two ends blended by their shares)."""
        end = self.end_share(second, seconds)
        ends = [(self.start, 1 - end)] + ([(self.end, end)] if self.end else [])
        sizes = [size for name, share in ends if share > 0 for size in _sample(name, share)]
        return TokenMix.from_sizes(sizes)

    def __str__(self) -> str:
        return self.start if self.end is None else f"{self.start}->{self.end}"


def _sample(name: str, share: float) -> tuple[tuple[int, int], ...]:
    sizes = mix_sizes(name)
    return sizes[: max(1, round(len(sizes) * share))]  # the files are in random order: a prefix is a sample


# --- what a replica exports ---------------------------------------------------------------------


@dataclass
class Buckets:
    """A Prometheus histogram: counts per upper bound (+Inf last), sum and count."""

    bounds: tuple[float, ...]
    counts: list[float] = field(default_factory=list)  # in each bucket alone (cumulative() as exported)
    total: float = 0.0
    count: float = 0.0

    def __post_init__(self) -> None:
        self.counts = self.counts or [0.0] * (len(self.bounds) + 1)

    def observe(self, value: float, times: float = 1) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += times
        self.total += value * times
        self.count += times

    def cumulative(self) -> list[float]:
        """The `_bucket{le=...}` series: observations at or below each bound."""
        return list(itertools.accumulate(self.counts))

    def copy(self) -> Buckets:
        return Buckets(self.bounds, list(self.counts), self.total, self.count)


@dataclass(frozen=True)
class Scrape:
    """One replica's series at one scrape, named as the engines export them (cumulative counters)."""

    at: float
    ready: bool
    prompt_tokens: float  # vllm:prompt_tokens_total (a request's prompt, once, at its first token)
    generation_tokens: float  # vllm:generation_tokens_total
    success: float  # vllm:request_success_total (and Triton's nv_inference_request_success)
    preemptions: float  # vllm:num_preemptions_total
    running: int  # vllm:num_requests_running
    waiting: int  # vllm:num_requests_waiting
    kv_usage: float  # vllm:gpu_cache_usage_perc (0-1)
    ttft: Buckets  # vllm:time_to_first_token_seconds
    tpot: Buckets  # vllm:time_per_output_token_seconds
    prompt_sizes: Buckets  # vllm:request_prompt_tokens
    output_sizes: Buckets  # vllm:request_generation_tokens
    arrived: float  # requests the replica received (Triton's nv_inference_request_success + failures)
    busy_s: float  # engine time spent in steps (what the GPU reading follows)
    gpu_utilization: float  # 0-1, as NVML/DCGM reads it now
    pending: float = 0.0  # nv_inference_pending_request_count: a decoupled model holds no Triton queue

    def series(self) -> dict[str, float]:
        """The flat series a Prometheus scrape of the replica shows."""
        flat = {
            "vllm:prompt_tokens_total": self.prompt_tokens,
            "vllm:generation_tokens_total": self.generation_tokens,
            "vllm:request_success_total": self.success,
            "vllm:num_preemptions_total": self.preemptions,
            "vllm:num_requests_running": self.running,
            "vllm:num_requests_waiting": self.waiting,
            "vllm:gpu_cache_usage_perc": self.kv_usage,
            "nv_inference_pending_request_count": self.pending,
            "nv_gpu_utilization": self.gpu_utilization,
        }
        for name, histogram in (
            ("vllm:time_to_first_token_seconds", self.ttft),
            ("vllm:time_per_output_token_seconds", self.tpot),
            ("vllm:request_prompt_tokens", self.prompt_sizes),
            ("vllm:request_generation_tokens", self.output_sizes),
        ):
            for bound, count in zip((*histogram.bounds, math.inf), histogram.cumulative(), strict=True):
                flat[f'{name}_bucket{{le="{"+Inf" if bound == math.inf else bound}"}}'] = count
            flat[f"{name}_sum"], flat[f"{name}_count"] = histogram.total, histogram.count
        return flat


@dataclass(frozen=True)
class Window:
    """What the scaling loop reads at one evaluation: each replica's newest and previous scrape
    (rates are their differences), and the edge's requests and 503s over the last interval."""

    now: float
    replicas: tuple[tuple[Scrape, Scrape | None], ...]  # (newest, the one before), per replica scraped
    edge: Demand | None
    interval_s: float


def rate(newest: Scrape, before: Scrape | None, name: str) -> float | None:
    """The per-second increase of counter `name` (a Scrape field) between two scrapes."""
    if before is None or newest.at <= before.at:
        return None
    return (getattr(newest, name) - getattr(before, name)) / (newest.at - before.at)


def histogram_quantile(q: float, newest: Buckets, before: Buckets | None = None) -> float | None:
    """Prometheus's histogram_quantile over what was observed between two scrapes of a histogram:
    linear within the bucket the rank falls in (from 0 for the first), the highest finite bound
    when it falls in +Inf; None without observations."""
    earlier = before.counts if before else [0.0] * len(newest.counts)
    counts = [n - b for n, b in zip(newest.counts, earlier, strict=True)]
    total = sum(counts)
    if total <= 0:
        return None
    rank, seen = q * total, 0.0
    for i, count in enumerate(counts):
        if seen + count >= rank and count > 0:
            if i == len(newest.bounds):
                return newest.bounds[-1]
            low = newest.bounds[i - 1] if i else 0.0
            return low + (newest.bounds[i] - low) * (rank - seen) / count
        seen += count
    return newest.bounds[-1]


def default_observe(window: Window, profile: LlmProfile, current: int, queue: str = "pending") -> Observation:
    """The request-level Observation policy.decide reads today, from the LLM replicas' series:
    what an operator not yet counting tokens would see. The saturated requests/s comes from the
    profile at the mix the token counters show (prompt and output tokens per request answered).
    `queue` is the series read as each replica's queue depth: Triton's pending count, or the
    engine's `waiting` (vllm:num_requests_waiting, what KEDA's vLLM recipe scales on)."""
    samples, prompts, outputs, answered = [], 0.0, 0.0, 0.0
    for newest, before in window.replicas:
        served = rate(newest, before, "success")
        if served:
            prompts += rate(newest, before, "prompt_tokens") or 0.0
            outputs += rate(newest, before, "generation_tokens") or 0.0
            answered += served
        samples.append(
            ReplicaSample(
                ready=newest.ready,
                queue_depth=getattr(newest, queue),
                gpu_utilization=100 * newest.gpu_utilization,
                request_rate=rate(newest, before, "arrived"),
                served_rate=served,
                queue_depth_min=getattr(newest, queue),
            )
        )
    hint = None
    if answered > 0:
        hint = saturated_rps(profile, TokenMix.from_means(prompts / answered, max(1.0, outputs / answered)))
    return Observation(current=current, samples=tuple(samples), demand=window.edge, capacity_hint=hint)


def observe_engine_waiting(window: Window, profile: LlmProfile, current: int) -> Observation:
    """default_observe with the engine's waiting requests as the queue depth (a KEDA baseline)."""
    return default_observe(window, profile, current, queue="waiting")


Observe = Callable[[Window, LlmProfile, int], Observation]


# --- the simulation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LlmFallback:
    """spec.fallback's variant: a fixed pool of replicas of a smaller LLM that takes shed traffic."""

    spec: Fallback
    profile: LlmProfile
    replicas: int


@dataclass(frozen=True)
class LlmSimConfig:
    profile: LlmProfile
    mix: MixShift
    policy: Autoscaling | None  # None: replicas stay at initial_replicas
    bounds: tuple[int, int]
    initial_replicas: int
    ttft_slo_s: float  # the TTFT p99 a minute must meet
    tpot_slo_s: float | None = None
    weight: float = 1.0  # the simulated variant's share of the trace
    gpus_per_replica: float = 1.0
    startup_s: float = 60.0
    scrape_interval_s: int = 15
    metrics_delay_s: int = 10
    rate_window_s: int = 60  # the scaling queries' rate window, as the operator's (controller/autoscale.py)
    seed: int = 0
    fallback: LlmFallback | None = None  # None: no shedding, requests beyond the ready replicas queue in them


@dataclass
class LlmReplica:
    engine: Engine
    ready_at: float
    draining: bool = False
    arrived: float = 0.0
    ttft: Buckets = field(default_factory=lambda: Buckets(TTFT_BUCKETS))
    tpot: Buckets = field(default_factory=lambda: Buckets(TPOT_BUCKETS))
    prompt_sizes: Buckets = field(default_factory=lambda: Buckets(TOKEN_BUCKETS))
    output_sizes: Buckets = field(default_factory=lambda: Buckets(TOKEN_BUCKETS))
    success: float = 0.0
    last_busy_s: float = 0.0

    def ready(self, now: float) -> bool:
        return self.ready_at <= now and not self.draining

    @property
    def empty(self) -> bool:
        engine = self.engine
        return not (engine.waiting or engine.prefilling or engine.decoding)


@dataclass(frozen=True)
class LlmMinute:
    minute: int
    load_rps: float  # requests offered per second
    replicas: float  # mean replicas holding a GPU
    ready: float
    ttft_p99_ms: float | None  # of the requests that arrived in the minute and were answered
    tpot_p99_ms: float | None
    refused: float  # requests refused (no ready replica, or the engine's waiting limit)
    shed: float  # requests sent to the fallback variant
    prompt_tokens: float  # of the answered requests that arrived in the minute
    output_tokens: float
    within_slo: bool  # SLO_SHARE of its requests had their first token within the TTFT SLO (a refusal misses)


@dataclass(frozen=True)
class LlmSimResult:
    refused_pct: float
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    tpot_p99_ms: float | None
    slo_minutes_pct: float
    gpu_hours: float  # the fallback's included
    prompt_tokens: float  # served (of answered requests)
    output_tokens: float
    scaling_events: int
    preemptions: float
    minutes: tuple[LlmMinute, ...]
    fallback_pct: float = 0.0  # of the requests, sent to the fallback variant

    def figures(self) -> dict[str, float | None]:
        def rounded(value: float | None, digits: int) -> float | None:
            return None if value is None else round(value, digits)

        return {
            "refused_pct": round(self.refused_pct, 3),
            "fallback_pct": round(self.fallback_pct, 3),
            "ttft_p50_ms": rounded(self.ttft_p50_ms, 1),
            "ttft_p99_ms": rounded(self.ttft_p99_ms, 1),
            "tpot_p99_ms": rounded(self.tpot_p99_ms, 2),
            "slo_minutes_pct": round(self.slo_minutes_pct, 2),
            "gpu_hours": round(self.gpu_hours, 4),
            "prompt_tokens": round(self.prompt_tokens),
            "output_tokens": round(self.output_tokens),
            "preemptions": round(self.preemptions),
        }


@dataclass
class _Minute:
    arrived: float = 0.0
    refused: float = 0.0
    shed: float = 0.0
    within: float = 0.0
    replica_s: float = 0.0
    ready_s: float = 0.0
    prompt_tokens: float = 0.0
    output_tokens: float = 0.0
    ttft: Histogram = field(default_factory=Histogram)
    tpot: Histogram = field(default_factory=Histogram)


class LlmSimulation:
    def __init__(
        self, config: LlmSimConfig, trace: Trace, policy: Policy = decide, observe: Observe = default_observe
    ) -> None:
        self.config, self.trace, self.policy, self.observe = config, trace, policy, observe
        self.rng = random.Random(config.seed)
        self.sizes = random.Random(config.seed + 1)  # request sizes: their own stream, as the arrivals
        self.replicas = [self._replica(0.0) for _ in range(config.initial_replicas)]
        self.state = PolicyState()
        self.scrapes: list[tuple[float, dict[int, Scrape], Demand]] = []
        self.offered = self.refused_at_edge = 0.0
        self.minutes = [_Minute() for _ in range(math.ceil(trace.seconds / 60))]
        self.scaling_events = 0
        self.turn = 0
        self.finished_replicas: list[LlmReplica] = []
        fallback = config.fallback
        self.fallback = [LlmReplica(Engine(fallback.profile), 0.0) for _ in range(fallback.replicas if fallback else 0)]
        self.shedding = random.Random(config.seed + 2)  # which arrivals go to the fallback: a stream of its own
        self.moved: tuple[shedding.Moved, ...] = ()
        self.shed_percent = 0  # of the arrivals, to the fallback
        self.fallback_turn = 0

    def _replica(self, ready_at: float) -> LlmReplica:
        return LlmReplica(Engine(self.config.profile, now=ready_at), ready_at)

    def _minute(self, at: float) -> _Minute:
        return self.minutes[min(len(self.minutes) - 1, int(at // 60))]

    # --- requests ---------------------------------------------------------------------------

    def _settle(self, replica: LlmReplica) -> None:
        """The requests a replica's engine finished (or refused): into its histograms and the minutes."""
        slo = self.config.ttft_slo_s
        for request in replica.engine.take_done():
            minute = self._minute(request.arrival_s)
            if request.refused:
                minute.refused += 1
                continue
            ttft, tpot = request.ttft_s, request.tpot_s
            replica.success += 1
            replica.ttft.observe(ttft)
            replica.prompt_sizes.observe(request.prompt)
            replica.output_sizes.observe(request.output)
            minute.ttft.add(ttft * 1000, 1)
            if tpot is not None:  # vLLM observes each output token after the first: the request's mean, as often
                replica.tpot.observe(tpot, request.output - 1)
                minute.tpot.add(tpot * 1000, 1)
            if ttft <= slo and (self.config.tpot_slo_s is None or tpot is None or tpot <= self.config.tpot_slo_s):
                minute.within += 1
            minute.prompt_tokens += request.prompt
            minute.output_tokens += request.output

    def _arrive(self, at: float) -> None:
        prompt, output = self.config.mix.draw(self.sizes, at, self.trace.seconds)
        minute = self._minute(at)
        minute.arrived += 1
        self.offered += 1
        if self.fallback and self.shedding.random() * 100 < self.shed_percent:
            minute.shed += 1
            replica = self.fallback[self.fallback_turn % len(self.fallback)]
            self.fallback_turn += 1
            replica.engine.advance_to(at)
            replica.arrived += 1
            replica.engine.submit(Request(at, prompt, output))  # what its engine refuses, _settle counts
            return
        ready = [r for r in self.replicas if r.ready(at)]
        if not ready:
            minute.refused += 1
            self.refused_at_edge += 1
            return
        replica = ready[self.turn % len(ready)]
        self.turn += 1
        replica.engine.advance_to(at)
        replica.arrived += 1
        if not replica.engine.submit(Request(at, prompt, output)):
            self.refused_at_edge += 1  # the engine's 503 shows at the edge too

    # --- metrics and scaling ----------------------------------------------------------------

    def _scrape(self, now: float) -> None:
        interval = self.config.scrape_interval_s
        scraped = {}
        for replica in self.replicas:
            if replica.ready_at > now:
                continue  # not loaded: its series do not exist yet
            engine = replica.engine
            engine.advance_to(now)
            self._settle(replica)
            busy = min(1.0, (engine.busy_s - replica.last_busy_s) / interval)
            replica.last_busy_s = engine.busy_s
            scraped[id(replica)] = Scrape(
                at=now,
                ready=replica.ready(now),
                prompt_tokens=engine.prompt_tokens,
                generation_tokens=engine.output_tokens,
                success=replica.success,
                preemptions=engine.preemptions,
                running=engine.running,
                waiting=len(engine.waiting),
                kv_usage=engine.kv_fraction,
                ttft=replica.ttft.copy(),
                tpot=replica.tpot.copy(),
                prompt_sizes=replica.prompt_sizes.copy(),
                output_sizes=replica.output_sizes.copy(),
                arrived=replica.arrived,
                busy_s=engine.busy_s,
                gpu_utilization=busy * self.config.profile.gpu_busy_reading,
            )
        for replica in self.fallback:  # another variant: answered requests count, its series are not this one's
            replica.engine.advance_to(now)
            self._settle(replica)
        edge = Demand(self.offered / interval, self.refused_at_edge / interval, "edge", measurable=True)
        self.offered = self.refused_at_edge = 0.0
        self.scrapes.append((now, scraped, edge))

    def _window(self, now: float) -> Window:
        cutoff = now - self.config.metrics_delay_s
        visible = [(at, scraped, edge) for at, scraped, edge in self.scrapes if at <= cutoff]
        if not visible:
            return Window(now, (), None, self.config.scrape_interval_s)
        # Rates over the operator's window (rate(...[60s])): the newest scrape against the one that
        # window before it, the edge's counts summed over the scrapes between.
        at, newest, _ = visible[-1]
        inside = [v for v in visible if v[0] > at - self.config.rate_window_s] or visible[-1:]
        earlier = [v for v in visible if v[0] <= at - self.config.rate_window_s]
        before = earlier[-1][1] if earlier else (visible[-2][1] if len(visible) > 1 else {})
        replicas = tuple((scrape, before.get(key)) for key, scrape in newest.items())
        edges = [edge for _, _, edge in inside]
        edge = Demand(
            sum(e.rps for e in edges) / len(edges), sum(e.rejected_rps for e in edges) / len(edges), "edge", True
        )
        return Window(now, replicas, edge, self.config.scrape_interval_s)

    def _scale(self, now: float) -> None:
        config = self.config
        live = [r for r in self.replicas if not r.draining]
        observation = self.observe(self._window(now), config.profile, len(live))
        observation = replace(observation, shed_percent=self.shed_percent)
        decision = self.policy(observation, config.policy, config.bounds, self.state, now)
        self.state = decision.state
        if config.fallback and observation.samples:
            self._shed(decision, observation, now)
        if decision.replicas == len(live):
            return
        self.scaling_events += 1
        if decision.replicas > len(live):
            self.replicas += [self._replica(now + config.startup_s) for _ in range(decision.replicas - len(live))]
            return
        doomed = sorted(live, key=lambda r: (r.ready_at <= now, r.engine.running + len(r.engine.waiting)))
        for replica in doomed[: len(live) - decision.replicas]:
            replica.draining = True
        self.replicas = [r for r in self.replicas if not (r.draining and r.ready_at > now)]

    def _shed(self, decision: Decision, observation: Observation, now: float) -> None:
        """Move arrivals to the fallback as the operator moves route weight (traffic/shedding.py), in
        requests: the capacity and demand the policy counted in tokens, divided by what a request costs."""
        config, demand = self.config, observation.demand
        fallback, capacity = config.fallback, decision.metrics.get("capacity_rps")
        if capacity:
            per_replica = demand.in_requests(capacity) if demand is not None else capacity
        else:  # a policy that says none (a baseline): what a replica serves of the mix now
            per_replica = saturated_rps(config.profile, config.mix.token_mix(now, self.trace.seconds))
        ready = sum(1 for s in observation.samples if s.ready)
        loads = (
            shedding.Load("primary", 100, ready, per_replica),
            shedding.Load(fallback.spec.variant, 0, len(self.fallback), fallback.spec.rps_per_replica),
        )
        offered = shedding.offered([demand.requests() if demand else None])
        plan = shedding.plan(loads, fallback.spec, offered, self.moved, now)
        self.moved, self.shed_percent = plan.moved, plan.percent

    def _retire(self, now: float) -> None:
        """Draining replicas whose engines ran dry give their GPU back."""
        for replica in self.replicas:
            if replica.draining:
                replica.engine.advance_to(now)
        gone = [r for r in self.replicas if r.draining and r.empty]
        for replica in gone:
            self._settle(replica)
        self.finished_replicas += gone
        self.replicas = [r for r in self.replicas if not (r.draining and r.empty)]

    # --- the run ----------------------------------------------------------------------------

    def run(self) -> LlmSimResult:
        config = self.config
        interval = config.policy.interval_seconds if config.policy else 0
        for second, rps in enumerate(self.trace.rps):
            now = float(second)
            if interval and second > 0 and second % interval == 0:
                self._scale(now)
            count = poisson(self.rng, rps * config.weight)
            for at in sorted(now + self.rng.random() for _ in range(count)):
                self._arrive(at)
            minute = self._minute(now)
            minute.replica_s += len(self.replicas) + len(self.fallback)
            minute.ready_s += sum(1 for r in self.replicas if r.ready(now)) + len(self.fallback)
            if (second + 1) % config.scrape_interval_s == 0:
                self._scrape(now + 1)
                self._retire(now + 1)
        for replica in [*self.replicas, *self.fallback]:
            replica.engine.advance_to(self.trace.seconds + DRAIN_S)
            self._settle(replica)
        return self._result()

    def _result(self) -> LlmSimResult:
        ttft, tpot = Histogram(), Histogram()
        for m in self.minutes:
            ttft.merge(m.ttft)
            tpot.merge(m.tpot)
        minutes = tuple(
            LlmMinute(
                minute=i,
                load_rps=m.arrived / 60,
                replicas=m.replica_s / 60,
                ready=m.ready_s / 60,
                ttft_p99_ms=m.ttft.quantile(0.99),
                tpot_p99_ms=m.tpot.quantile(0.99),
                refused=m.refused,
                shed=m.shed,
                prompt_tokens=m.prompt_tokens,
                output_tokens=m.output_tokens,
                within_slo=m.within >= SLO_SHARE * m.arrived - 1e-9,
            )
            for i, m in enumerate(self.minutes)
        )
        arrived = sum(m.arrived for m in self.minutes)
        engines = [r.engine for r in (*self.replicas, *self.finished_replicas, *self.fallback)]
        replica_s = sum(m.replica_s for m in self.minutes)
        return LlmSimResult(
            refused_pct=100 * sum(m.refused for m in self.minutes) / arrived if arrived else 0.0,
            ttft_p50_ms=ttft.quantile(0.5),
            ttft_p99_ms=ttft.quantile(0.99),
            tpot_p99_ms=tpot.quantile(0.99),
            slo_minutes_pct=100 * sum(m.within_slo for m in minutes) / len(minutes) if minutes else 100.0,
            gpu_hours=replica_s * self.config.gpus_per_replica / 3600,
            prompt_tokens=sum(m.prompt_tokens for m in self.minutes),
            output_tokens=sum(m.output_tokens for m in self.minutes),
            scaling_events=self.scaling_events,
            preemptions=sum(e.preemptions for e in engines),
            minutes=minutes,
            fallback_pct=100 * sum(m.shed for m in self.minutes) / arrived if arrived else 0.0,
        )


def simulate_llm(
    config: LlmSimConfig, trace: Trace, policy: Policy = decide, observe: Observe = default_observe
) -> LlmSimResult:
    """Run `trace` (requests/s per second) with request sizes from config.mix through the replicas
    of config.profile; deterministic for a given config.seed, and the arrivals and their sizes do
    not depend on the policy, so runs with different policies see the very same requests."""
    return LlmSimulation(config, trace, policy, observe).run()


def replicas_needed(config: LlmSimConfig, trace: Trace) -> Trace:
    """The trace in saturated replicas rather than requests/s (each second's rate over what a
    replica serves of that second's mix): baselines.Oracle with capacity_rps 1 and weight 1 plans
    an LLM fleet from it."""
    cache: dict[int, float] = {}

    def capacity(second: int) -> float:
        step = second // 60  # the mix moves slowly: one capacity a minute
        if step not in cache:
            cache[step] = saturated_rps(config.profile, config.mix.token_mix(step * 60, trace.seconds))
        return cache[step]

    rates = tuple(r * config.weight / capacity(s) for s, r in enumerate(trace.rps))
    return Trace(f"{trace.name} in replicas", rates)
