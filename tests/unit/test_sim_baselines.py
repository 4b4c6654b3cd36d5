"""The competing policies bench/scaling.py runs beside Unbusy's: HPA on CPU, KEDA on the queue, an oracle."""

from __future__ import annotations

import dataclasses

import pytest
from builders import isvc

from unbusy.scaling.policy import Decision, Observation, PolicyState, ReplicaSample
from unbusy.sim.baselines import (
    CPU_AT_CAPACITY_PERCENT,
    CPU_IDLE_PERCENT,
    HpaCpu,
    KedaQueue,
    Oracle,
    cpu_percent,
    hpa_autoscaling,
)
from unbusy.sim.config import from_spec
from unbusy.sim.engine import simulate
from unbusy.sim.traces import Trace

BOUNDS = (1, 50)
CAPACITY = 100.0


def ready(rate: float | None = None, queue: float | None = None) -> ReplicaSample:
    return ReplicaSample(ready=True, queue_depth=queue, gpu_utilization=100.0, request_rate=rate)


def loading() -> ReplicaSample:
    return ReplicaSample(ready=False, gpu_utilization=0.0)


def run(policy, samples, current=None, now=15.0, state=None) -> Decision:
    obs = Observation(current=len(samples) if current is None else current, samples=tuple(samples))
    autoscaling = getattr(policy, "autoscaling", None) or hpa_autoscaling(queue_depth=8)  # the oracle ignores it
    return policy(obs, autoscaling, BOUNDS, state or PolicyState(), now)


# --- the CPU model and the HPA defaults -----------------------------------------------------


def test_cpu_follows_served_throughput_and_saturates_with_the_gpu():
    assert cpu_percent(0, CAPACITY) == CPU_IDLE_PERCENT
    assert cpu_percent(50, CAPACITY) == pytest.approx(CPU_IDLE_PERCENT + CPU_AT_CAPACITY_PERCENT / 2)
    # A backlog adds no CPU work: ten times the capacity reads as the capacity.
    assert cpu_percent(1000, CAPACITY) == cpu_percent(CAPACITY, CAPACITY) == 90


def test_hpa_autoscaling_has_the_hpa_defaults_and_one_metric():
    cpu = hpa_autoscaling(utilisation=70)
    assert cpu.interval_seconds == 15 and cpu.tolerance == 0.1 and not cpu.forecast.enabled
    assert (cpu.targets.gpu_utilization_percent, cpu.targets.queue_depth_per_replica) == (70, 0)
    up, down = cpu.behavior.scale_up, cpu.behavior.scale_down
    assert (up.stabilization_window_seconds, up.max_pods_per_step, up.max_percent_per_step) == (0, 4, 100)
    assert (down.stabilization_window_seconds, down.max_percent_per_step, down.period_seconds) == (300, 100, 15)
    assert hpa_autoscaling(queue_depth=8).targets.queue_depth_per_replica == 8


# --- HPA on CPU -------------------------------------------------------------------------------


def test_hpa_cpu_grows_by_at_most_cpu_saturation_over_target_however_deep_the_queue():
    hpa = HpaCpu(CAPACITY)
    decision = run(hpa, [ready(rate=1000, queue=64)] * 4)
    assert decision.replicas == 6  # ceil(4 x 90 / 70), not the 10x the load asks for


def test_hpa_cpu_holds_within_tolerance_and_scales_down_after_the_stabilisation_window():
    hpa = HpaCpu(CAPACITY)
    at_target = (70 - CPU_IDLE_PERCENT) / CPU_AT_CAPACITY_PERCENT * CAPACITY
    assert run(hpa, [ready(rate=at_target)] * 4).replicas == 4
    busy = run(hpa, [ready(rate=at_target)] * 4, now=15)
    idle = [ready(rate=0)] * 4
    first = run(hpa, idle, now=30, state=busy.state)
    assert first.replicas == 4  # the 300 s window still holds the busy recommendation
    assert run(hpa, idle, now=400, state=first.state).replicas == 1  # ceil(4 x 10 / 70), 100% at once


def test_hpa_cpu_counts_loading_pods_as_idle_going_up():
    hpa = HpaCpu(CAPACITY)
    # Two ready at 90% ask for ceil(2 x 90 / 70) = 3: no more than the 4 there already are.
    assert run(hpa, [ready(rate=1000), ready(rate=1000), loading(), loading()]).replicas == 4


# --- KEDA on the queue ------------------------------------------------------------------------


def test_keda_asks_for_the_pending_sum_over_the_threshold():
    keda = KedaQueue(threshold=8)
    assert run(keda, [ready(queue=64)] * 2).replicas == 6  # ceil(128 / 8) = 16, step limit max(2 x 2, 2 + 4)
    keda = KedaQueue(threshold=8)
    # A loading replica reports no queue and does not dilute the sum.
    assert run(keda, [ready(queue=20), loading()]).replicas == 3


def test_keda_reads_the_metric_every_30_s_and_acts_on_it_at_every_sync():
    keda = KedaQueue(threshold=8)
    state = run(keda, [ready(queue=8)] * 2, now=15).state
    # 15 s later the poll is not due: the old sum (16) still stands, the burst is unseen.
    assert run(keda, [ready(queue=64)] * 2, now=30, state=state).replicas == 2
    assert run(keda, [ready(queue=64)] * 2, now=45, state=state).replicas == 6


# --- the oracle --------------------------------------------------------------------------------


def oracle(rps, startup_s=60.0) -> Oracle:
    return Oracle(Trace("t", tuple(rps)), weight=1.0, capacity_rps=CAPACITY, utilisation=0.8, lookahead_s=startup_s)


def test_oracle_orders_replicas_a_startup_ahead_of_the_load():
    trace = [80.0] * 100 + [800.0] * 100
    assert run(oracle(trace), [ready()], now=20).replicas == 1  # 800 rps arrives after 20 + 60 + 15 s
    assert run(oracle(trace), [ready()], now=30).replicas == 10  # ... and before 30 + 75: ceil(800 / 80)


def test_oracle_keeps_what_the_next_interval_needs_and_respects_the_bounds():
    falling = [800.0] * 20 + [80.0] * 200
    assert run(oracle(falling), [ready()] * 10, now=15).replicas == 10
    assert run(oracle(falling), [ready()] * 10, now=30).replicas == 1
    assert run(oracle([0.0] * 100), [ready()] * 3, now=15).replicas == BOUNDS[0]
    assert run(oracle([1e6] * 100), [ready()] * 3, now=15).replicas == BOUNDS[1]


# --- in the engine ----------------------------------------------------------------------------


def test_the_engine_runs_a_plugged_policy_on_the_same_arrivals():
    config = from_spec(isvc({"autoscaling": {"minReplicas": 1, "maxReplicas": 10}}), startup_s=30)
    trace = Trace("flat", (200.0,) * 300)

    def three(obs, policy, bounds, state, now):
        return Decision(3, "three", {}, True, state)

    fixed = simulate(config, trace, three)
    unbusy = simulate(config, trace)
    assert fixed.minutes[-1].replicas == 3
    assert [m.load_rps for m in fixed.minutes] == [m.load_rps for m in unbusy.minutes]
    assert dataclasses.replace(fixed, minutes=()) != dataclasses.replace(unbusy, minutes=())
