"""Competing scaling policies for bench/scaling.py, each a drop-in for policy.decide (engine.Policy).

- HpaCpu: a Kubernetes HPA on CPU at 70% with the HPA's defaults (sync 15 s, tolerance 0.1,
  scale-up max(100%, 4 pods) per 15 s, scale-down stabilisation 300 s then 100% per 15 s).
- KedaQueue: a KEDA Prometheus scaler on Triton's pending requests as an External AverageValue
  metric (desired = ceil(total pending / threshold)), polled every 30 s, with the HPA KEDA
  creates (the same defaults). cooldownPeriod only applies to 1 <-> 0, so it plays no part.
- Oracle: knows the trace; orders the replicas the load `startup` seconds ahead needs.

HpaCpu and KedaQueue run the HPA's arithmetic through policy.decide (which implements the
HPA's rules) with an Autoscaling that has only their one metric, no forecast and the HPA's
default behaviour: what differs from Unbusy is the signal, the behaviour and the forecast,
not the arithmetic. The engine passes config.policy to the callable, so run them with
config.policy = their `autoscaling` (its interval is the HPA's 15 s sync).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from unbusy.api.autoscaling import Autoscaling
from unbusy.scaling.policy import Decision, Observation, PolicyState, decide
from unbusy.sim.traces import Trace

HPA_SYNC_S = 15
KEDA_POLLING_S = 30
HPA_CPU_TARGET = 70

# The HPA's default behaviour (autoscaling/v2). Scale-down's only policy is 100% per 15 s:
# maxPodsPerStep 1000 (the API's ceiling) never binds, so the percentage alone decides.
HPA_DEFAULT_BEHAVIOR = {
    "scaleUp": {"stabilizationWindowSeconds": 0, "maxPodsPerStep": 4, "maxPercentPerStep": 100, "periodSeconds": 15},
    "scaleDown": {
        "stabilizationWindowSeconds": 300,
        "maxPodsPerStep": 1000,
        "maxPercentPerStep": 100,
        "periodSeconds": 15,
    },
}

# Triton's CPU use, as a percentage of the container's CPU request, modelled from the requests it
# serves: an idle floor (HTTP/gRPC threads, health checks, metrics) plus a share proportional to
# served throughput (parsing, (de)serialising tensors, the batcher), the most at full capacity.
# The GPU does the model's work, so the CPU stays well below 100% even with the GPU at full duty,
# and a queue adds no CPU work: once the GPU is the bottleneck CPU saturates at
# CPU_IDLE + CPU_AT_CAPACITY = 90%, and the HPA can grow by at most 90/70 = 1.29x per sync,
# whatever the backlog. (In the simulator the GPU duty cycle is already ~100% from 28% of
# capacity up, because batches grow with load; so CPU follows throughput, not the duty cycle.)
CPU_IDLE_PERCENT = 10.0
CPU_AT_CAPACITY_PERCENT = 80.0


def cpu_percent(request_rate: float, capacity_rps: float) -> float:
    """Modelled CPU utilisation of one replica receiving `request_rate` requests per second."""
    served = min(max(request_rate, 0.0), capacity_rps)
    return CPU_IDLE_PERCENT + CPU_AT_CAPACITY_PERCENT * served / capacity_rps


def hpa_autoscaling(queue_depth: int = 0, utilisation: int = 0) -> Autoscaling:
    """An Autoscaling with the HPA's defaults and one target: queue (KEDA) or utilisation (CPU)."""
    return Autoscaling.model_validate(
        {
            "mode": "hpa",
            "targets": {
                "queueDepthPerReplica": queue_depth,
                "gpuUtilizationPercent": utilisation,
                "cpuUtilizationPercent": 0,
                "capacityUtilizationPercent": 0,  # an HPA knows no demand or capacity
            },
            "tolerance": 0.1,
            "behavior": HPA_DEFAULT_BEHAVIOR,
            "onMetricsMissing": "hold",
            "forecast": {"enabled": False},
            "intervalSeconds": HPA_SYNC_S,
        }
    )


class HpaCpu:
    """An HPA on CPU utilisation: the CPU model above stands in for each ready replica's utilisation.

    decide's GPU rule is the HPA's resource rule: averaged over ready pods; pods not yet ready
    count as 0% when scaling up (so a scale-up never undoes itself) and are left out going down.
    """

    def __init__(self, capacity_rps: float, target_percent: int = HPA_CPU_TARGET) -> None:
        self.capacity_rps = capacity_rps
        self.autoscaling = hpa_autoscaling(utilisation=target_percent)

    def __call__(
        self, obs: Observation, policy: Autoscaling, bounds: tuple[int, int], state: PolicyState, now: float
    ) -> Decision:
        samples = obs.samples
        if samples is not None:
            samples = tuple(
                replace(
                    s,
                    queue_depth=None,
                    gpu_utilization=None if s.request_rate is None else cpu_percent(s.request_rate, self.capacity_rps),
                )
                for s in samples
            )
        return decide(replace(obs, samples=samples), policy, bounds, state, now)


class KedaQueue:
    """KEDA's Prometheus scaler: the pending-request sum read every 30 s, acted on at each HPA sync."""

    def __init__(self, threshold: int, polling_s: float = KEDA_POLLING_S) -> None:
        self.polling_s = polling_s
        self.autoscaling = hpa_autoscaling(queue_depth=threshold)
        self._polled: tuple[float, Observation] | None = None

    def __call__(
        self, obs: Observation, policy: Autoscaling, bounds: tuple[int, int], state: PolicyState, now: float
    ) -> Decision:
        if self._polled is None or now - self._polled[0] >= self.polling_s:
            self._polled = (now, obs)
        # The metric is the last poll's; the replica count is the Deployment's now.
        seen = replace(obs, samples=self._polled[1].samples, error=self._polled[1].error)
        return decide(seen, policy, bounds, state, now)


@dataclass(frozen=True)
class Oracle:
    """Knows the trace: at `now`, the replicas the coming load needs, sized at `utilisation` of capacity.

    Replicas ordered now are ready a start-up later and the next decision comes `interval_s`
    later, so with `lookahead_s` = the start-up it holds the most that any second in
    [now, now + start-up + interval_s] needs: ready in time for every rise, and never removing
    a replica that a second before the next decision needs. Its GPU-hours are the floor for
    serving the trace without rejections (under the simulator's model, at that utilisation,
    with the same bounds and start-up).

    With `lookahead_s` 0 it knows only the load of the present, at once and exactly: the floor
    of what any policy that reacts (and does not predict) can reach with that start-up.
    """

    trace: Trace
    weight: float  # the simulated variant's share of the trace
    capacity_rps: float  # of one replica
    utilisation: float  # 0..1 of capacity to plan for
    lookahead_s: float
    interval_s: float = HPA_SYNC_S

    def needed(self, second: int) -> int:
        rps = self.trace.rps[min(max(second, 0), len(self.trace.rps) - 1)] * self.weight
        return math.ceil(rps / (self.capacity_rps * self.utilisation) - 1e-9)

    def __call__(
        self, obs: Observation, policy: Autoscaling, bounds: tuple[int, int], state: PolicyState, now: float
    ) -> Decision:
        start = int(now)
        end = min(int(now + self.lookahead_s + self.interval_s), len(self.trace.rps) - 1)
        want = max(self.needed(s) for s in range(start, max(start, end) + 1))
        low, high = bounds
        replicas = min(max(want, low), high)
        horizon = now + self.lookahead_s + self.interval_s
        reason = f"oracle: the load until {horizon:g}s needs {want}: {obs.current} -> {replicas}"
        return Decision(replicas, reason, {}, True, state)
