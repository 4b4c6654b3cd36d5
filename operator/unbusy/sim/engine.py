"""The simulation: Triton replicas in fixed 1 s ticks, scaled by the operator's own policy.

Why fixed ticks and not one event per request: at thousands of requests per second an event
per request costs seconds of Python per simulated minute. Within a tick each replica is a
fluid FIFO server instead: it serves at the rate its batch size allows (ServiceModel), and
the waiting time of every request follows from its position in the queue and its arrival
time, so latencies keep millisecond detail while a tick costs a few operations per replica.
One second is short against everything the scaling loop reacts to (15 s scrapes and
evaluations, a minute of start-up) and long enough to keep an hour of load well under a second.

Randomness: Poisson arrivals per tick from a seeded generator; the same seed gives the same run.
Stalls of the serving process are fluid too: each tick loses its expected share of time to them.
Routing: arrivals split evenly over ready replicas (round robin); none ready: all rejected.
Scale-in: loading replicas go first, then those with the shortest queue; a removed replica
stops receiving traffic at once and holds its GPU until its queue is empty.
Fallback (config.fallback): a fixed pool of replicas of another model; at each evaluation
traffic/shedding.py moves a share of the arrivals to it, as the operator moves route weight.
Its replicas count in the GPU-hours.
Metrics: each scrape's rates are read over config.rate_window_s (the operator's queries: 60 s;
by default the scrape's own interval), a replica younger than the window over the whole window,
as Prometheus's rate() reads a young counter low; the edge's latest rate is the last scrape's.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from unbusy.api.autoscaling import Autoscaling
from unbusy.scaling import seasonal
from unbusy.scaling.demand import Demand
from unbusy.scaling.policy import Decision, Observation, PolicyState, ReplicaSample, decide
from unbusy.scaling.startup import PodStart
from unbusy.serving.batcher import SHARES
from unbusy.serving.model import ServiceModel
from unbusy.sim.config import SimConfig
from unbusy.sim.stats import SLO_SHARE, Histogram, Minute, SimResult
from unbusy.sim.traces import Trace
from unbusy.traffic import shedding

TICK_S = 1.0
# Points at which a block of requests served together is measured: their latencies spread
# linearly between the first and the last, and four points capture that spread well enough.
_POINTS = 4
# Points at which a request's place within its batch is measured.
_ALIGNMENTS = 4

# What drives the replica count: policy.decide, or anything with its signature (bench/ plugs in
# baselines). It is called every config.policy.interval_seconds with config.policy and bounds.
Policy = Callable[[Observation, Autoscaling, tuple[int, int], PolicyState, float], Decision]


@dataclass(frozen=True)
class Scraped:
    """One replica's counts between two scrapes (and its pending gauge's least value then)."""

    at: float
    arrived: float
    served: float
    waited_s: float
    refused: float
    executions: float
    least_pending: float


@dataclass
class Replica:
    ready_at: float
    created_at: float | None = None  # None: running before the run began
    name: str = ""
    queue: list[list[float]] = field(default_factory=list)  # FIFO of [first arrival, last arrival, count]
    draining: bool = False
    pending: float = 0.0  # Triton's pending-request gauge
    least_pending: float = math.inf  # the gauge's least value since the last scrape
    # since the last scrape
    busy_s: float = 0.0
    arrived: float = 0.0
    served: float = 0.0
    waited_s: float = 0.0
    refused: float = 0.0  # Triton's REJECTED failures: the queue was full
    executions: float = 0.0  # batches run (nv_inference_exec_count)
    # One Scraped per scrape over the rate window, newest last: what Prometheus's rate() reads.
    scraped: deque = field(default_factory=deque)

    def ready(self, now: float) -> bool:
        return self.ready_at <= now and not self.draining

    @property
    def backlog(self) -> float:
        return sum(cohort[2] for cohort in self.queue)

    def tally(
        self, arrivals: float, served: float, busy_s: float, pending: float, refused: float, executions: float
    ) -> None:
        """One tick's counts and gauge reading, for the next scrape."""
        self.busy_s += busy_s
        self.arrived += arrivals
        self.served += served
        self.pending = pending
        self.least_pending = min(self.least_pending, pending)
        self.refused += refused
        self.executions += executions


@dataclass
class _Minute:
    arrived: float = 0.0
    rejected: float = 0.0
    shed: float = 0.0
    within_slo: float = 0.0
    replica_s: float = 0.0
    ready_s: float = 0.0
    ticks: int = 0
    latency: Histogram = field(default_factory=Histogram)


def poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 50:  # the normal approximation is close here, and Knuth's loop would take `mean` steps
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


class Simulation:
    def __init__(self, config: SimConfig, trace: Trace, policy: Policy = decide) -> None:
        self.config, self.trace, self.policy = config, trace, policy
        self.model = config.model
        self.rng = random.Random(config.seed)
        self.replicas = [Replica(ready_at=0.0, name=f"initial-{i}") for i in range(config.initial_replicas)]
        self.created = 0  # replicas the policy added
        self.state = PolicyState()
        self.scrapes: list[tuple[float, tuple[ReplicaSample, ...], Demand]] = []
        self.offered = self.refused = 0.0  # at the edge since the last scrape, as ingress-nginx counts
        self.edge: deque[tuple[float, float, float]] = deque()  # (scraped at, offered, refused) over the rate window
        self.minutes: list[_Minute] = []
        self.arrived = self.rejected = self.replica_s = 0.0
        self.scaling_events = 0
        fallback = config.fallback
        self.fallback = [Replica(ready_at=0.0) for _ in range(fallback.replicas if fallback else 0)]
        self.moved: tuple[shedding.Moved, ...] = ()
        self.shed_percent = 0  # of the arrivals, to the fallback
        self.shed = 0.0

    # --- serving -------------------------------------------------------------------------

    def _record(self, latency_s: float, weight: float, minute: _Minute) -> None:
        minute.latency.add(latency_s * 1000, weight)
        if latency_s <= self.config.slo_s:
            minute.within_slo += weight

    def serve(
        self, replica: Replica, now: float, arrivals: float, minute: _Minute, model: ServiceModel | None = None
    ) -> float:
        """One tick of one replica (of config.model unless `model` says); returns the requests it rejected."""
        model = model or self.model
        backlog = replica.backlog
        rate = arrivals / TICK_S
        # Nothing carried over: the batcher's steady state at this rate, which a bounded queue
        # reaches within a fraction of a second even past capacity. An unbounded queue past
        # capacity only grows: that is the fluid queue below.
        if backlog < 1 and rate > 0 and (model.max_queue or rate < model.capacity_rps):
            return self._serve_steady(replica, model, rate, minute)
        pauses = model.serving.pauses
        pause_s = pauses.ms / 1000
        timed = pauses.per_second * TICK_S  # expected stalls in the tick, at random times
        # With a queue to drain, or more arrivals than capacity, batches run full, back to back,
        # a share of them ending a stall later.
        batch = model.saturated_batch
        service = model.service_s(batch)
        throughput = batch / service
        running = max(0.0, TICK_S - timed * pause_s)
        served_total = min(backlog + arrivals, running * batch / (service + pauses.per_execution * pause_s))
        stalls = timed + pauses.per_execution * served_total / batch
        paused = min(TICK_S, stalls * pause_s)
        limit = model.max_queue or math.inf
        # What is still queued at the tick's end beyond the limit was refused; so was what piled
        # up during a stall beyond it, even if the replica caught up by the tick's end.
        overflow = max(backlog + arrivals - served_total - limit, stalls * (backlog + rate * pause_s - limit), 0.0)
        rejected = min(arrivals, overflow)
        if arrivals - rejected > 0:
            replica.queue.append([now, now + TICK_S, arrivals - rejected])
        waits = self._waits(service, paused, pause_s)
        position, left = 0.0, served_total
        while left > 1e-9 and replica.queue:
            first, last, count = replica.queue[0]
            taken = min(count, left)
            for point in range(_POINTS):
                item = (point + 0.5) / _POINTS * taken
                arrival = first + (last - first) * item / count
                queued = max(0.0, now + (position + item) / throughput - arrival)
                for wait, share in waits:
                    self._record(max(0.0, queued + wait) + service, taken / _POINTS * share, minute)
                replica.waited_s += queued * taken / _POINTS
            position, left = position + taken, left - taken
            if taken >= count - 1e-9:
                replica.queue.pop(0)
            else:
                replica.queue[0] = [first + (last - first) * taken / count, last, count - taken]
        busy = served_total / batch * service
        pending = replica.backlog + batch * busy / TICK_S
        replica.tally(arrivals, served_total, busy, pending, rejected, served_total / batch)
        return rejected

    def _serve_steady(self, replica: Replica, model: ServiceModel, rate: float, minute: _Minute) -> float:
        """A tick with nothing queued: latencies and 503s are the batcher's at this rate."""
        state = model.steady(rate)
        arrivals = rate * TICK_S
        # Past capacity what is served stays put and the rest is refused; below, the refused share.
        overloaded = rate > model.capacity_rps
        served = min(arrivals, state.served_rps * TICK_S) if overloaded else arrivals * (1 - state.rejected)
        rejected = arrivals - served
        for latency, share in zip(state.latencies_s, SHARES, strict=True):
            self._record(latency, served * share, minute)
        batch = model.batch_at(rate)
        replica.waited_s += state.mean_wait_s * served
        # Pending as Triton reads it: requests waiting for a batch (Little's law), which sits
        # near the queue limit past capacity (50-56 of 64 measured).
        pending = served / TICK_S * state.mean_wait_s
        replica.tally(arrivals, served, served / batch * model.service_s(batch), pending, rejected, served / batch)
        return rejected

    @staticmethod
    def _waits(service: float, paused: float, pause_s: float) -> list[tuple[float, float]]:
        """(wait beyond a request's place in the queue, share of requests).

        The requests ahead of one in its own batch run with it, not before it: it waits its
        place in the queue less a uniform fraction of a batch's time. Those that arrive during
        a stall also wait out the rest of it.
        """
        aligned = [(-service * (k + 0.5) / _ALIGNMENTS, 1 / _ALIGNMENTS) for k in range(_ALIGNMENTS)]
        stalled = paused / TICK_S
        if stalled <= 0:
            return aligned
        return [(w, share * (1 - stalled)) for w, share in aligned] + [
            (w + pause_s * k, share * stalled / 2) for w, share in aligned for k in (0.25, 0.75)
        ]

    # --- metrics and scaling -------------------------------------------------------------

    def _scrape(self, now: float) -> None:
        """What Prometheus reads at `now`: per replica, its counters' rates and its pending gauge's
        least value over the rate window; at the edge, the offered and refused rates. A replica
        younger than the window reads its counts over the whole window, as rate() does."""
        config = self.config
        window = config.rate_window_s or config.scrape_interval_s
        samples = []
        for r in self.replicas:
            loaded = r.ready_at <= now  # Triton exports the model's series once it is loaded
            r.scraped.append(Scraped(now, r.arrived, r.served, r.waited_s, r.refused, r.executions, r.least_pending))
            while r.scraped[0].at <= now - window:
                r.scraped.popleft()
            seen = list(r.scraped) if loaded else []
            served, waited = sum(c.served for c in seen), sum(c.waited_s for c in seen)
            executions = sum(c.executions for c in seen)
            least = min((c.least_pending for c in seen), default=math.inf)
            samples.append(
                ReplicaSample(
                    ready=r.ready(now),
                    queue_depth=r.pending if loaded else None,
                    gpu_utilization=100 * self.model.gpu_reading(served / window) if loaded else None,
                    request_rate=sum(c.arrived for c in seen) / window if loaded else None,
                    queue_time_ms=1000 * waited / served if served > 0 else None,
                    served_rate=served / window if loaded else None,
                    queue_depth_min=least if loaded and least < math.inf else None,
                    refused_rate=sum(c.refused for c in seen) / window if loaded else None,
                    batch_mean=served / executions if executions > 0 else None,
                    ready_seconds=now - r.ready_at if loaded else None,
                )
            )
            r.busy_s = r.arrived = r.served = r.waited_s = r.refused = r.executions = 0.0
            r.least_pending = math.inf
        self.edge.append((now, self.offered, self.refused))
        while self.edge[0][0] <= now - window:
            self.edge.popleft()
        offered, refused = sum(o for _, o, _ in self.edge), sum(x for _, _, x in self.edge)
        latest = self.offered / config.scrape_interval_s  # irate: the last two scrapes
        demand = Demand(offered / window, refused / window, "edge", True, latest)
        self.offered = self.refused = 0.0
        self.scrapes.append((now, tuple(samples), demand))

    def _visible(self, now: float) -> tuple[tuple[ReplicaSample, ...], Demand | None]:
        """The newest scrape the scaling loop can read at `now`."""
        cutoff = now - self.config.metrics_delay_s
        return next(((samples, demand) for at, samples, demand in reversed(self.scrapes) if at <= cutoff), ((), None))

    def _scale(self, now: float) -> None:
        config = self.config
        live = [r for r in self.replicas if not r.draining]
        samples, demand = self._visible(now)
        floor = config.policy.seasonal
        observation = Observation(
            current=len(live),
            samples=samples,
            demand=demand,
            capacity_hint=self.model.capacity_rps,
            saturated_pending=max(1.0, self.model.max_queue / 4),
            full_batch=self.model.saturated_batch,
            window_seconds=config.rate_window_s or config.scrape_interval_s,
            demand_fill_seconds=max(0, (config.rate_window_s or 0) - config.scrape_interval_s),
            shed_percent=self.shed_percent,
            gpus_per_replica=config.gpus_per_replica,
            starts=tuple(
                PodStart(r.name, r.created_at, r.ready_at if r.ready_at <= now else None)
                for r in live
                if r.created_at is not None
            ),
            # What Prometheus's `offset` reads: the scrapes of a period ago.
            seasonal_rps=seasonal.past_peak(((at, d.rps) for at, _, d in self.scrapes), now, floor)
            if floor.enabled
            else None,
        )
        decision = self.policy(observation, config.policy, config.bounds, self.state, now)
        self.state = decision.state
        if config.fallback and samples:
            self._shed(decision, demand, sum(1 for s in samples if s.ready), now)
        if decision.replicas == len(live):
            return
        self.scaling_events += 1
        if decision.replicas > len(live):
            added = decision.replicas - len(live)
            self.created += added
            self.replicas += [
                Replica(ready_at=now + config.startup_s, created_at=now, name=f"replica-{self.created - i}")
                for i in range(added)
            ]
            return
        doomed = sorted(live, key=lambda r: (r.ready_at <= now, r.backlog))[: len(live) - decision.replicas]
        for replica in doomed:
            replica.draining = True
        self.replicas = [r for r in self.replicas if not (r.draining and r.ready_at > now)]

    def _shed(self, decision: Decision, demand: Demand | None, ready: int, now: float) -> None:
        """Move arrivals to the fallback as the operator moves route weight (traffic/shedding.py)."""
        fallback = self.config.fallback
        capacity = decision.metrics.get("capacity_rps") or self.model.capacity_rps
        loads = (
            shedding.Load("primary", 100, ready, capacity),
            shedding.Load(fallback.spec.variant, 0, len(self.fallback), fallback.spec.rps_per_replica),
        )
        plan = shedding.plan(loads, fallback.spec, shedding.offered([demand]), self.moved, now)
        self.moved, self.shed_percent = plan.moved, plan.percent

    def _serve_fallback(self, now: float, arrivals: float, minute: _Minute) -> float:
        """The fallback's share of a tick's arrivals, split evenly over its replicas; returns the rejected."""
        model = self.config.fallback.model
        share = arrivals / len(self.fallback)
        return sum(self.serve(replica, now, share, minute, model) for replica in self.fallback)

    # --- the run -------------------------------------------------------------------------

    def run(self) -> SimResult:
        config = self.config
        interval = config.policy.interval_seconds if config.policy else 0
        for second, rps in enumerate(self.trace.rps):
            now = float(second)
            if second % 60 == 0:
                self.minutes.append(_Minute())
            minute = self.minutes[-1]
            if interval and second > 0 and second % interval == 0:
                self._scale(now)
            arrivals = poisson(self.rng, rps * config.weight * TICK_S)
            shed = arrivals * self.shed_percent / 100
            targets = [r for r in self.replicas if r.ready(now)]
            rejected = 0.0 if targets else float(arrivals - shed)
            for replica in self.replicas:
                if replica.ready_at <= now:
                    share = (arrivals - shed) / len(targets) if replica in targets else 0.0
                    rejected += self.serve(replica, now, share, minute)
            if shed:
                rejected += self._serve_fallback(now, shed, minute)
            self.shed += shed
            self.replicas = [r for r in self.replicas if not (r.draining and r.backlog < 1e-9)]
            if (second + 1) % config.scrape_interval_s == 0:
                self._scrape(now + TICK_S)
            self.arrived += arrivals
            self.rejected += rejected
            self.offered += arrivals
            self.refused += rejected
            held = len(self.replicas) + len(self.fallback)
            self.replica_s += held * TICK_S
            minute.arrived += arrivals
            minute.rejected += rejected
            minute.shed += shed
            minute.replica_s += held * TICK_S
            minute.ready_s += sum(TICK_S for r in self.replicas if r.ready(now)) + len(self.fallback) * TICK_S
            minute.ticks += 1
        return self._result()

    def _result(self) -> SimResult:
        latency = Histogram()
        for m in self.minutes:
            latency.merge(m.latency)
        minutes = tuple(
            Minute(
                minute=i,
                load_rps=m.arrived / m.ticks,
                replicas=m.replica_s / m.ticks,
                ready=m.ready_s / m.ticks,
                p99_ms=m.latency.quantile(0.99),
                rejected=m.rejected,
                shed=m.shed,
                within_slo=m.within_slo >= SLO_SHARE * m.arrived - 1e-9,
            )
            for i, m in enumerate(self.minutes)
        )
        return SimResult(
            rejected_pct=100 * self.rejected / self.arrived if self.arrived else 0.0,
            p50_ms=latency.quantile(0.5),
            p99_ms=latency.quantile(0.99),
            slo_minutes_pct=100 * sum(m.within_slo for m in minutes) / len(minutes) if minutes else 100.0,
            gpu_hours=self.replica_s * self.config.gpus_per_replica / 3600,
            scaling_events=self.scaling_events,
            minutes=minutes,
            fallback_pct=100 * self.shed / self.arrived if self.arrived else 0.0,
        )


def simulate(config: SimConfig, trace: Trace, policy: Policy = decide) -> SimResult:
    """Run `trace` through the replicas of `config`; deterministic for a given config.seed.

    `policy` replaces Unbusy's decide (same signature); the arrivals depend only on the seed,
    so runs with different policies see the very same requests.
    """
    return Simulation(config, trace, policy).run()
