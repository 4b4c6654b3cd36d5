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

from unbusy.sim import engine
from unbusy.sim.config import SimConfig
from unbusy.sim.model import ServiceModel
from unbusy.sim.traces import Trace

TICK_S = engine.TICK_S


class _LatencySum:
    """Stands in for the engine's latency histogram: Triton exports a sum, not a distribution."""

    def __init__(self) -> None:
        self.ms = 0.0

    def add(self, ms: float, weight: float) -> None:
        self.ms += ms * weight


@dataclass
class _Record:
    """What `Simulation.serve` writes its latencies into (the engine's per-minute record)."""

    latency: _LatencySum = field(default_factory=_LatencySum)
    within_slo: float = 0.0


@dataclass
class Pod:
    """One replica and its cumulative counters (they only grow, as Triton's do)."""

    variant: str
    replica: engine.Replica = field(default_factory=lambda: engine.Replica(ready_at=0.0))
    record: _Record = field(default_factory=_Record)
    rejected: float = 0.0
    gpu_busy: float = 0.0  # GPU utilisation (0-1) a DCGM exporter would read over the last tick

    @property
    def served(self) -> float:
        return self.replica.served

    @property
    def pending(self) -> float:
        return self.replica.pending

    @property
    def queue_us(self) -> float:
        return self.replica.waited_s * 1e6

    @property
    def request_us(self) -> float:
        return self.record.latency.ms * 1000


class LiveFleet:
    """Replicas that follow the pods they are told about; requests arrive at `rps`, Poisson."""

    def __init__(self, model: ServiceModel, seed: int = 0, history_s: int = 600) -> None:
        config = SimConfig(model=model, policy=None, bounds=(0, 0), initial_replicas=0, slo_s=math.inf, seed=seed)
        self._sim = engine.Simulation(config, Trace("live", ()))
        self.pods: dict[str, Pod] = {}
        self.now = 0.0
        self.history: deque[tuple[float, float]] = deque(maxlen=history_s)  # (arrived, rejected) per tick

    def tick(self, rps: float, pods: Mapping[str, tuple[str, bool]]) -> None:
        """One second: `pods` maps each live pod to (variant, ready); arrivals split over the ready ones."""
        self.pods = {name: self.pods.get(name) or Pod(variant) for name, (variant, _) in pods.items()}
        ready = [self.pods[name] for name, (_, ok) in sorted(pods.items()) if ok]
        arrivals = engine.poisson(self._sim.rng, rps * TICK_S)
        rejected = 0.0 if ready else float(arrivals)
        for pod in ready:
            served = pod.replica.served
            refused = self._sim.serve(pod.replica, self.now, arrivals / len(ready), pod.record)
            pod.rejected += refused
            pod.gpu_busy = self._sim.model.gpu_reading((pod.replica.served - served) / TICK_S)
            rejected += refused
        self.history.append((float(arrivals), rejected))
        self.now += TICK_S

    def rejected_fraction(self, window_s: int = 30) -> float:
        """Requests refused over the last `window_s` seconds, as a fraction of those that arrived."""
        recent = list(self.history)[-window_s:]
        arrived = sum(a for a, _ in recent)
        return sum(r for _, r in recent) / arrived if arrived else 0.0
