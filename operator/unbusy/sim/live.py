"""A fleet of simulated Triton replicas advanced one tick at a time by the caller, for live use.

The metrics emulator of the end-to-end tests keeps one replica per Ready pod of a real
(kwok) Deployment and moves it on once per wall-clock second. Serving is the engine's own:
`Simulation.serve` (batching, service time, queue limit), its `Replica` and `poisson`, so
that the emulator and `unbusy simulate` cannot drift apart. Only the bookkeeping a scrape
needs is added here: cumulative counters per pod, as Triton's are.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from unbusy.serving.model import ServiceModel
from unbusy.sim import engine
from unbusy.sim.config import SimConfig
from unbusy.sim.stats import Histogram
from unbusy.sim.traces import Trace

TICK_S = engine.TICK_S


# Triton's latency summary (--metrics-config=summary_latencies=true) reads recent requests only.
SUMMARY_WINDOW_S = 10


class _Latencies:
    """Stands in for the engine's latency histogram with what Triton exports: the cumulative sum,
    and the quantiles of the last SUMMARY_WINDOW_S seconds (its summary). `extra_ms` is added to
    every request: a degraded replica (Fault)."""

    def __init__(self) -> None:
        self.ms = 0.0
        self.extra_ms = 0.0
        self._recent: deque[list[tuple[float, float]]] = deque([[]], maxlen=int(SUMMARY_WINDOW_S / TICK_S))

    def add(self, ms: float, weight: float) -> None:
        ms += self.extra_ms
        self.ms += ms * weight
        self._recent[-1].append((ms, weight))

    def next_tick(self) -> None:
        self._recent.append([])

    def this_tick(self) -> list[tuple[float, float]]:
        """(ms, requests) of the requests answered in the current tick."""
        return self._recent[-1]

    def quantile(self, q: float) -> float | None:
        """The latency (ms) that a share q of the recent requests stayed within; None without requests."""
        samples = sorted(sample for tick in self._recent for sample in tick)
        total = sum(weight for _, weight in samples)
        seen = 0.0
        for ms, weight in samples:
            seen += weight
            if seen >= q * total:
                return ms
        return None


@dataclass(frozen=True)
class Fault:
    """What makes a variant's replicas bad: slower by latency_ms, failing error_fraction of requests."""

    latency_ms: float = 0.0
    error_fraction: float = 0.0


@dataclass
class _Record:
    """What `Simulation.serve` writes its latencies into (the engine's per-minute record)."""

    latency: _Latencies = field(default_factory=_Latencies)
    within_slo: float = 0.0


@dataclass
class Pod:
    """One replica and its cumulative counters (they only grow, as Triton's do)."""

    variant: str
    replica: engine.Replica = field(default_factory=lambda: engine.Replica(ready_at=0.0))
    record: _Record = field(default_factory=_Record)
    rejected: float = 0.0
    failed: float = 0.0  # requests it served with an error (a Fault): Triton counts them as failures
    gpu_busy: float = 0.0  # GPU utilisation (0-1) a DCGM exporter would read over the last tick

    @property
    def served(self) -> float:
        """Requests answered, with or without an error."""
        return self.replica.served

    @property
    def pending(self) -> float:
        return self.replica.pending

    @property
    def executions(self) -> float:
        """Batches run (Triton's nv_inference_exec_count)."""
        return self.replica.executions

    @property
    def queue_us(self) -> float:
        return self.replica.waited_s * 1e6

    @property
    def request_us(self) -> float:
        return self.record.latency.ms * 1000


@dataclass
class Tally:
    """What happened to the requests over some ticks: as a load generator in front would count them."""

    arrived: float = 0.0
    rejected: float = 0.0  # refused: queue full, or no ready replica
    answered: dict[str, float] = field(default_factory=dict)  # variant -> requests its replicas answered
    latency: Histogram = field(default_factory=Histogram)  # of the answered requests, ms


class LiveFleet:
    """Replicas that follow the pods they are told about; requests arrive at `rps`, Poisson.
    A variant in `variant_models` serves as that model (a fallback's smaller one), the others as `model`."""

    def __init__(
        self,
        model: ServiceModel,
        seed: int = 0,
        history_s: int = 600,
        variant_models: Mapping[str, ServiceModel] | None = None,
    ) -> None:
        config = SimConfig(model=model, policy=None, bounds=(0, 0), initial_replicas=0, slo_s=math.inf, seed=seed)
        self._sim = engine.Simulation(config, Trace("live", ()))
        self.variant_models = dict(variant_models or {})
        self.pods: dict[str, Pod] = {}
        self.now = 0.0
        self.history: deque[tuple[float, float]] = deque(maxlen=history_s)  # (arrived, rejected) per tick
        self.faults: dict[str, Fault] = {}  # variant -> what makes its replicas bad
        self.tally = Tally()  # since the last take_tally()

    def model_of(self, variant: str) -> ServiceModel:
        """How the variant's replicas serve."""
        return self.variant_models.get(variant, self._sim.model)

    @staticmethod
    def routed(
        arrivals: float, ready: list[Pod], weights: Mapping[str, int] | None
    ) -> tuple[list[tuple[Pod, float]], float]:
        """Each ready pod's arrivals, and those no ready pod can take: split over the ready pods,
        or by variant weight (as the routes split traffic) and then over each variant's ready pods."""
        if weights is None:
            return [(pod, arrivals / len(ready)) for pod in ready] if ready else [], 0.0 if ready else arrivals
        total = sum(weights.values()) or 1
        shares, unrouted = [], 0.0
        for variant, weight in weights.items():
            mine = [pod for pod in ready if pod.variant == variant]
            part = arrivals * weight / total
            shares += [(pod, part / len(mine)) for pod in mine]
            unrouted += 0.0 if mine else part
        return shares, unrouted

    def tick(self, rps: float, pods: Mapping[str, tuple[str, bool]], weights: Mapping[str, int] | None = None) -> None:
        """One second: `pods` maps each live pod to (variant, ready); arrivals split over the ready
        ones, or by `weights` (variant -> weight) where given."""
        self.pods = {name: self.pods.get(name) or Pod(variant) for name, (variant, _) in pods.items()}
        ready = [self.pods[name] for name, (_, ok) in sorted(pods.items()) if ok]
        arrivals = engine.poisson(self._sim.rng, rps * TICK_S)
        shares, rejected = self.routed(float(arrivals), ready, weights)
        tally = self.tally
        for pod, share in shares:
            fault = self.faults.get(pod.variant, Fault())
            model = self.model_of(pod.variant)
            served = pod.replica.served
            pod.record.latency.next_tick()
            pod.record.latency.extra_ms = fault.latency_ms
            refused = self._sim.serve(pod.replica, self.now, share, pod.record, model)
            pod.rejected += refused
            pod.failed += (pod.replica.served - served) * fault.error_fraction
            pod.gpu_busy = model.gpu_reading((pod.replica.served - served) / TICK_S)
            rejected += refused
            # Counted as they leave the queue with their latency: the engine's `served` of a tick can
            # include requests it refused in a stall that tick.
            for ms, count in pod.record.latency.this_tick():
                tally.latency.add(ms, count)
                tally.answered[pod.variant] = tally.answered.get(pod.variant, 0.0) + count
        tally.arrived += arrivals
        tally.rejected += rejected
        self.history.append((float(arrivals), rejected))
        self.now += TICK_S

    def take_tally(self) -> Tally:
        """What happened since the last call; counting starts afresh."""
        tally, self.tally = self.tally, Tally()
        return tally

    def rejected_fraction(self, window_s: int = 30) -> float:
        """Requests refused over the last `window_s` seconds, as a fraction of those that arrived."""
        recent = list(self.history)[-window_s:]
        arrived = sum(a for a, _ in recent)
        return sum(r for _, r in recent) / arrived if arrived else 0.0
