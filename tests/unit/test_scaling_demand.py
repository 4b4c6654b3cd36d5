"""Scaling on demand: edge demand over learned capacity, start-up headroom, burst mode, guards."""

from __future__ import annotations

import dataclasses

import pytest
from test_scaling_policy import FREE, replicas, run

from unbusy.scaling import capacity
from unbusy.scaling.demand import Demand
from unbusy.scaling.policy import Observation, PolicyState, ReplicaSample, growth

EDGE = {"queueDepthPerReplica": 0, "gpuUtilizationPercent": 0, "capacityUtilizationPercent": 80}


def fleet(n: int, demand_rps: float, hint: float = 1000.0, **values) -> Observation:
    obs = replicas(n, **values)
    return dataclasses.replace(obs, demand=Demand(demand_rps, 0.0, "nginx", True), capacity_hint=hint)


def test_replicas_are_demand_over_capacity_at_the_target_and_the_reason_reads_it():
    decision = run(fleet(2, 1850), targets=EDGE)
    assert decision.replicas == 3  # 1850 / (1000 x 0.8) = 2.3
    assert decision.reason.startswith("demand 1,850 rps (nginx, 503s included) / capacity 1,000 x 0.8 -> 3 replicas")


def test_demand_counts_what_the_gpu_never_shows():
    # A launch-bound model saturates at 45% GPU: a GPU target of 80% would never scale it.
    guards = {"queueDepthPerReplica": 0, "gpuUtilizationPercent": 80, "capacityUtilizationPercent": 80}
    assert run(fleet(2, 4000, gpu_utilization=45.0), targets=guards).replicas == 5


def test_a_served_only_demand_says_overload_is_not_seen():
    obs = dataclasses.replace(fleet(2, 1600), demand=Demand(1600, 0.0, "triton", False))
    assert "(triton: served only)" in run(obs, targets=EDGE).reason


def test_scale_in_waits_beyond_the_tolerance():
    assert run(fleet(4, 2900), targets=EDGE).replicas == 4  # wants 3.6: within 10%
    assert run(fleet(4, 1500), targets=EDGE).replicas == 2


def test_a_scale_up_goes_to_the_fewest_replicas_the_tolerance_then_keeps():
    decision = run(fleet(4, 4030), targets=EDGE)  # 5.04 replicas' worth: 5 hold it within 10%
    assert decision.replicas == 5
    assert decision.reason == (
        "demand 4,030 rps (nginx, 503s included) / capacity 1,000 x 0.8 -> 6 replicas (5.04 within 10% of 5): 4 -> 5"
    )
    assert run(fleet(5, 4030), targets=EDGE).replicas == 5  # which 5 then keep
    assert run(fleet(4, 4500), targets=EDGE).replicas == 6  # 5.6: past 10% of 5
    burst = run(fleet(2, 4030), targets=EDGE)  # 4,030 >= 2 x the ready 2,000: burst mode takes the ceil
    assert burst.replicas == 6 and "burst mode" in burst.reason


def test_sustained_growth_adds_start_up_headroom_a_step_does_not():
    ramp = tuple((15.0 * i, 1000 + 150.0 * i) for i in range(8))  # +10 rps/s
    step = tuple((15.0 * i, 1000.0 if i < 4 else 4000.0) for i in range(8))
    assert growth(ramp) == pytest.approx(10)
    assert growth(step) == 0
    assert growth(ramp[:4]) == pytest.approx(10)  # a young history: two samples a half
    assert growth(ramp[:3]) == 0 and growth(step[2:6]) == 0
    state = PolicyState(demands=ramp[:-1])
    decision = run(fleet(2, ramp[-1][1]), state=state, now=ramp[-1][0], targets=EDGE)
    # 2050 / 800 = 2.6 -> 3; + 10 rps/s x (60 s start-up + 2 x 15 s reading's age) / 800 -> 3.7 -> 4
    assert decision.replicas == 4 and "(+1 start-up headroom)" in decision.reason


def test_headroom_covers_the_readings_age_as_well_as_the_start_up():
    ramp = tuple((15.0 * i, 875 + 75.0 * i) for i in range(8))  # +5 rps/s, at 1,400 rps now
    decision = run(fleet(2, ramp[-1][1]), state=PolicyState(demands=ramp[:-1]), now=ramp[-1][0], targets=EDGE)
    # 1400 / 800 = 1.75: + 5 rps/s x 60 s / 800 = 2.13 would stay within 10% of 2; the reading is
    # two 15 s intervals old as well: + 5 x 90 / 800 = 2.31 orders the 3rd a start-up ahead
    assert decision.replicas == 3 and "-> 2 replicas (+1 start-up headroom)" in decision.reason


def test_a_recovery_after_a_dip_is_no_growth():
    # a 4,000 rps burst with one reading of a 15 s lull in its window: both halves rise, back to its level
    dip = tuple((15.0 * i, d) for i, d in enumerate([2800.0, 4000.0, 4010.0, 4050.0, 1200.0, 4000.0, 4030.0, 4040.0]))
    assert growth(dip) == 0
    assert growth((*dip[:-1], (105.0, 4100.0))) > 0  # past the window's high: growth again
    decision = run(fleet(6, 4040), state=PolicyState(demands=dip[:-1]), now=105.0, targets=EDGE)
    assert decision.replicas == 6 and "headroom" not in decision.reason  # 5.05 within 10% of 6


def test_a_burst_after_a_blip_is_no_growth():
    # a 6x burst whose window holds a short earlier one: both halves rise and it is the window's high,
    # but it came in one interval (6x the reading before): a step, with no start-up headroom
    blip = tuple((15.0 * i, d) for i, d in enumerate([1000.0, 1000.0, 3000.0, 1000.0, 1000.0, 1000.0, 1000.0, 6000.0]))
    assert growth(blip) > 0  # what the halves alone say
    assert growth(blip, jump=2.0) == 0
    ramp = tuple((15.0 * i, 1000 + 150.0 * i) for i in range(8))
    assert growth(ramp, jump=2.0) == pytest.approx(10)  # a ramp that doubles over the window still grows
    decision = run(fleet(6, 6000), state=PolicyState(demands=blip[:-1]), now=105.0, targets=EDGE)
    assert decision.replicas == 7 and "headroom" not in decision.reason  # 6,000 / 800 = 7.5, within 10% of 7


def test_burst_mode_passes_the_step_limit_and_holds_scale_in():
    limited = {"stabilizationWindowSeconds": 0, "maxPodsPerStep": 1, "maxPercentPerStep": 10, "periodSeconds": 60}
    behavior = {"scaleUp": limited, "scaleDown": FREE}
    burst = run(fleet(2, 8000), targets=EDGE, behavior=behavior)
    assert burst.replicas == 10 and "burst mode" in burst.reason
    after = run(fleet(10, 1000), state=burst.state, now=30, targets=EDGE, behavior=behavior)
    assert after.replicas == 10  # still within the 60 s window: no scale-in
    later = run(fleet(10, 1000), state=after.state, now=120, targets=EDGE, behavior=behavior)
    assert later.replicas == 2


def test_queue_guard_still_scales_when_demand_is_missing():
    guarded = {"queueDepthPerReplica": 8, "gpuUtilizationPercent": 0, "capacityUtilizationPercent": 80}
    assert run(replicas(2, queue_depth=40.0), targets=guarded).replicas == 10


def test_capacity_is_learned_from_saturated_replicas_smoothed_and_bounded():
    busy = [ReplicaSample(ready=True, queue_depth=40, queue_depth_min=30, served_rate=1200.0)] * 2
    idle = [ReplicaSample(ready=True, queue_depth=2, queue_depth_min=0, served_rate=300.0)]
    # saturated only at the end of the window: its served rate is an underestimate
    late = [ReplicaSample(ready=True, queue_depth=64, queue_depth_min=0, served_rate=150.0)]
    assert capacity.readings([*busy, *idle, *late], saturated_pending=16).saturated == [1200.0, 1200.0]
    assert capacity.learn(None, 1000.0, capacity.Readings([1200.0])) == pytest.approx(1060)
    assert capacity.learn(1000.0, 1000.0, capacity.Readings([])) == 1000.0  # nothing saturated: keep the estimate
    assert capacity.learn(1900.0, 1000.0, capacity.Readings([9000.0])) == 2000.0  # at most twice the start
    assert capacity.learn(None, None, capacity.Readings([700.0])) == 700.0  # no start: the first reading


def test_the_loop_carries_the_learned_capacity():
    obs = fleet(2, 1000, served_rate=1500.0, queue_depth=40.0, queue_depth_min=40.0)
    first = run(obs, targets=EDGE)
    assert first.state.capacity == pytest.approx(1150) and first.metrics["capacity_rps"] == pytest.approx(1150)
    assert run(obs, state=first.state, now=15, targets=EDGE).state.capacity == pytest.approx(1255)


def test_a_ramp_from_no_traffic_is_growth_not_a_jump():
    # traffic ramping from 0 at +10 rps/s, read through a 60-s rate window every 15 s: 0, then 19, 75,
    # 169 rps (each a jump over the one before), then +150 a reading: traffic starting, as the bursts
    # read it, not a burst, so it is met a start-up ahead like any ramp
    readings = [0.0, 18.75, 75.0, 168.75, 300.0, 450.0, 600.0, 750.0]
    ramp = tuple((15.0 * i, d) for i, d in enumerate(readings))
    assert growth(ramp) > 0 and growth(ramp, jump=2.0) == growth(ramp)
    idle = PolicyState(demands=ramp[:-1], demand_since=-600.0)  # read as 0 for the last 10 min
    decision = run(fleet(2, 750), state=idle, now=105.0, targets=EDGE)
    # 750 / 800 -> 1 replica; + 3.75 rps/s (the first half's slope) x 90 s / 800 -> 2: the 2nd kept a start-up ahead
    assert decision.replicas == 2 and "(+1 start-up headroom)" in decision.reason
