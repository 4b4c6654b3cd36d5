"""The scaling policy, rule by rule: each test names the rule it pins (see scaling/policy.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from builders import isvc

from unbusy.api.autoscaling import Autoscaling
from unbusy.render.context import replica_bounds
from unbusy.scaling.policy import Decision, Observation, PolicyState, ReplicaSample, decide, trend

# Steps and windows out of the way, so a test sees one rule at a time.
FREE = {"stabilizationWindowSeconds": 0, "maxPodsPerStep": 1000, "maxPercentPerStep": 1000}
QUEUE_ONLY = {"queueDepthPerReplica": 8, "gpuUtilizationPercent": 0}
GPU_ONLY = {"queueDepthPerReplica": 0, "gpuUtilizationPercent": 80}


def policy(**autoscaling: Any) -> tuple[Autoscaling, tuple[int, int]]:
    settings = {"minReplicas": 1, "maxReplicas": 50, "behavior": {"scaleUp": FREE, "scaleDown": FREE}} | autoscaling
    service = isvc({"autoscaling": settings})
    return service.spec.autoscaling, replica_bounds(service, service.spec.effective_variants()[0])


def replicas(n: int, ready: int | None = None, **values: float | None) -> Observation:
    """n replicas, the first `ready` of them ready, all with the same samples."""
    ready = n if ready is None else ready
    return Observation(current=n, samples=tuple(ReplicaSample(ready=i < ready, **values) for i in range(n)))


def run(obs: Observation, state: PolicyState | None = None, now: float = 0.0, **autoscaling: Any) -> Decision:
    spec, bounds = policy(**autoscaling)
    return decide(obs, spec, bounds, state or PolicyState(), now)


# --- 1. ceil(n x value / target), tolerance, largest wins --------------------------------------


def test_queue_depth_scales_to_total_over_target_and_says_why():
    decision = run(replicas(3, queue_depth=34), targets=QUEUE_ONLY)
    assert decision.replicas == 13  # ceil(3 * 34 / 8)
    assert decision.reason == "queue 34/replica > target 8/replica: 3 -> 13"
    assert decision.scaling_active
    assert decision.metrics["queue_total"] == 102 and decision.metrics["queue_per_replica"] == 34


def test_an_exact_ratio_does_not_round_up_on_float_error():
    assert run(replicas(3, queue_depth=16.000000000001), targets=QUEUE_ONLY).replicas == 6


@pytest.mark.parametrize(("queue", "expected"), [(8.8, 4), (7.2, 4), (9.2, 5), (6.4, 4), (1.0, 1)])
def test_no_change_within_the_tolerance_band(queue, expected):
    # 4 replicas, target 8, tolerance 0.1: 7.2..8.8 per replica keeps 4.
    assert run(replicas(4, queue_depth=queue), targets=QUEUE_ONLY).replicas == expected


def test_tolerance_comes_from_the_spec():
    assert run(replicas(4, queue_depth=10), targets=QUEUE_ONLY, tolerance=0.3).replicas == 4
    assert run(replicas(4, queue_depth=10), targets=QUEUE_ONLY, tolerance=0.2).replicas == 5


def test_loading_replicas_do_not_dilute_the_queue():
    # One ready replica holds all 40 pending requests, three still load their model (queue 0):
    # the demand is ceil(40 / 8) = 5 whatever the split.
    obs = Observation(
        current=4, samples=(ReplicaSample(True, queue_depth=40), *[ReplicaSample(False, queue_depth=0)] * 3)
    )
    assert run(obs, targets=QUEUE_ONLY).replicas == 5


def test_gpu_utilisation_is_averaged_over_ready_replicas_only():
    # Averaged over all four the loading ones (0%) would halve it and read as "scale down".
    obs = replicas(4, ready=2, gpu_utilization=0.0)
    obs = dataclasses.replace(
        obs, samples=tuple(dataclasses.replace(s, gpu_utilization=100.0 * s.ready) for s in obs.samples)
    )
    decision = run(obs, targets=GPU_ONLY)
    assert decision.metrics["gpu_utilization_percent"] == 100
    assert decision.replicas == 4  # asks for ceil(2 * 100/80) = 3 but an "up" metric never scales down


def test_gpu_up_uses_the_ready_count():
    decision = run(replicas(2, gpu_utilization=100), targets=GPU_ONLY)
    assert decision.replicas == 3
    assert decision.reason == "gpu 100% > target 80%: 2 -> 3"


def test_largest_demand_over_metrics_wins():
    decision = run(replicas(4, queue_depth=20, gpu_utilization=90))  # queue asks 10, gpu 5
    assert decision.replicas == 10 and decision.reason.startswith("queue")
    decision = run(replicas(4, queue_depth=1, gpu_utilization=100))  # queue asks 1, gpu 5
    assert decision.replicas == 5 and decision.reason.startswith("gpu")


def test_scales_down_when_all_metrics_say_so():
    assert run(replicas(8, queue_depth=1, gpu_utilization=10)).replicas == 1


# --- 2. missing metrics ----------------------------------------------------------------------


def test_a_missing_metric_blocks_scale_down():
    decision = run(replicas(8, queue_depth=1))  # gpu target set, no gpu samples
    assert decision.replicas == 8 and decision.scaling_active
    assert "not scaling down: no samples of gpu" in decision.reason


def test_a_missing_metric_does_not_block_scale_up():
    assert run(replicas(2, queue_depth=40)).replicas == 10


def test_prometheus_down_holds_the_last_good_count():
    obs = Observation(current=7, samples=None, error="connection refused")
    decision = run(obs, PolicyState(last_good=5))
    assert (decision.replicas, decision.scaling_active, decision.metrics) == (5, False, {})
    assert decision.reason == "metrics unavailable (connection refused): holding 5 replicas"
    assert decision.state == PolicyState(last_good=5)


def test_without_a_last_good_count_it_holds_the_current_one():
    assert run(Observation(current=7, samples=None)).replicas == 7


def test_on_metrics_missing_min_replicas_goes_to_the_minimum():
    decision = run(
        Observation(current=7, samples=None), PolicyState(last_good=5), minReplicas=2, onMetricsMissing="minReplicas"
    )
    assert decision.replicas == 2 and not decision.scaling_active and "going to minReplicas" in decision.reason


def test_no_samples_of_any_metric_is_missing_data():
    decision = run(replicas(3), PolicyState(last_good=4))
    assert (decision.replicas, decision.scaling_active) == (4, False)
    assert decision.reason == "no samples of queue, gpu: holding 4 replicas"


def test_held_count_stays_within_bounds():
    assert run(Observation(current=7, samples=None), PolicyState(last_good=90)).replicas == 50


def test_a_good_decision_becomes_the_last_good_count():
    assert run(replicas(3, queue_depth=34), targets=QUEUE_ONLY).state.last_good == 13


# --- 3. stabilisation windows ----------------------------------------------------------------


def step_through(observations: list[tuple[float, Observation]], **autoscaling: Any) -> list[int]:
    """Feed observations in time order, carrying state and the decided count, as the loop does."""
    spec, bounds = policy(**autoscaling)
    state, counts = PolicyState(), []
    for now, obs in observations:
        decision = decide(obs, spec, bounds, state, now)
        state = decision.state
        counts.append(decision.replicas)
    return counts


def test_scale_down_waits_for_the_highest_recommendation_of_its_window():
    down = {"stabilizationWindowSeconds": 300, "maxPodsPerStep": 1000, "maxPercentPerStep": 100}
    busy, idle = replicas(10, queue_depth=8), replicas(10, queue_depth=1)
    counts = step_through(
        [(0, busy), (100, idle), (290, idle), (301, idle)],
        targets=QUEUE_ONLY,
        behavior={"scaleUp": FREE, "scaleDown": down},
    )
    assert counts == [10, 10, 10, 2]  # the 10 at t=0 leaves the window after 300 s


def test_scale_down_stabilisation_is_named_in_the_reason():
    down = {"stabilizationWindowSeconds": 300, "maxPodsPerStep": 1000, "maxPercentPerStep": 100}
    spec, bounds = policy(targets=QUEUE_ONLY, behavior={"scaleUp": FREE, "scaleDown": down})
    state = PolicyState(recommendations=((0.0, 10),))
    decision = decide(replicas(10, queue_depth=1), spec, bounds, state, 60)
    assert decision.replicas == 10 and "scale-down stabilised over 300s" in decision.reason


def test_scale_up_waits_for_the_lowest_recommendation_of_its_window():
    up = {"stabilizationWindowSeconds": 60, "maxPodsPerStep": 1000, "maxPercentPerStep": 1000}
    calm, busy = replicas(2, queue_depth=8), replicas(2, queue_depth=40)
    counts = step_through(
        [(0, calm), (30, busy), (61, busy)], targets=QUEUE_ONLY, behavior={"scaleUp": up, "scaleDown": FREE}
    )
    assert counts == [2, 2, 10]


# --- 4. step limits --------------------------------------------------------------------------


def test_scale_up_takes_the_larger_of_pods_and_percent():
    up = {"stabilizationWindowSeconds": 0, "maxPodsPerStep": 4, "maxPercentPerStep": 100, "periodSeconds": 15}
    behavior = {"scaleUp": up, "scaleDown": FREE}
    assert run(replicas(2, queue_depth=100), targets=QUEUE_ONLY, behavior=behavior).replicas == 6  # +4 > +100%
    decision = run(replicas(10, queue_depth=100), targets=QUEUE_ONLY, behavior=behavior)
    assert decision.replicas == 20  # +100% > +4
    assert decision.reason.endswith("10 -> 20; step limit +4 or +100% per 15s")


def test_scale_down_takes_the_smaller_of_pods_and_percent_per_period():
    down = {"stabilizationWindowSeconds": 0, "maxPodsPerStep": 1, "maxPercentPerStep": 10, "periodSeconds": 60}
    spec, bounds = policy(targets=QUEUE_ONLY, behavior={"scaleUp": FREE, "scaleDown": down})
    state, current, counts = PolicyState(), 10, []
    for now in (0, 15, 30, 61, 75):
        decision = decide(replicas(current, queue_depth=0), spec, bounds, state, now)
        state, current = decision.state, decision.replicas
        counts.append(current)
    assert counts == [9, 9, 9, 8, 8]  # one replica per 60 s period


def test_step_period_counts_changes_made_in_it():
    up = {"stabilizationWindowSeconds": 0, "maxPodsPerStep": 4, "maxPercentPerStep": 10, "periodSeconds": 15}
    spec, bounds = policy(targets=QUEUE_ONLY, behavior={"scaleUp": up, "scaleDown": FREE})
    state = PolicyState(scale_events=((10.0, 4),))  # 2 -> 6 five seconds ago
    assert decide(replicas(6, queue_depth=100), spec, bounds, state, 15).replicas == 6
    assert decide(replicas(6, queue_depth=100), spec, bounds, state, 26).replicas == 10


# --- 5. bounds -------------------------------------------------------------------------------


def test_max_replicas_caps_and_is_named():
    decision = run(replicas(4, queue_depth=400), targets=QUEUE_ONLY, maxReplicas=12)
    assert decision.replicas == 12 and decision.reason.endswith("; bounds 1..12")


def test_min_replicas_floors():
    assert run(replicas(4, queue_depth=0), targets=QUEUE_ONLY, minReplicas=3).replicas == 3


def test_variant_bounds_override_the_spec():
    service = isvc(
        {
            "autoscaling": {"maxReplicas": 50, "targets": QUEUE_ONLY, "behavior": {"scaleUp": FREE, "scaleDown": FREE}},
            "variants": [{"name": "main", "weight": 100, "maxReplicas": 6}],
        }
    )
    bounds = replica_bounds(service, service.spec.variants[0])
    assert decide(replicas(4, queue_depth=400), service.spec.autoscaling, bounds, PolicyState(), 0).replicas == 6


# --- 6. forecast -----------------------------------------------------------------------------

FORECAST = {"enabled": True, "horizonSeconds": 120, "windowSeconds": 600}


def rising(rates: list[float], n: int, **values: float) -> list[tuple[float, Observation]]:
    """A fleet of n at target queue depth, whose request rate follows `rates`, 15 s apart."""
    return [(15.0 * i, replicas(n, request_rate=r / n, **values)) for i, r in enumerate(rates)]


def test_trend_is_least_squares_and_capped():
    assert trend(((0, 10), (10, 20), (20, 30)), 30) == pytest.approx(40)
    assert trend(((0, 0), (10, 0), (20, 30)), 1000) == pytest.approx(40)  # 4 x mean 10
    assert trend(((0, 30), (10, 20), (20, 10)), 100) is None  # a falling rate projects nothing
    assert trend(((0, 20), (10, 20), (20, 20)), 100) is None  # nor does a flat one
    assert trend(((0, 10), (10, 20)), 30) is None  # too few points


def test_forecast_scales_out_before_the_queue_builds():
    # Rate doubling every minute; the queue is still at target, so reactive alone holds 4.
    steps = rising([100, 125, 150, 175, 200], 4, queue_depth=8)
    assert step_through(steps, targets=QUEUE_ONLY)[-1] == 4
    counts = step_through(steps, targets=QUEUE_ONLY, forecast=FORECAST)
    # Fit: 200 at t=60 rising 100/min -> 400 at t=180; demand 4 x 400/200 = 8.
    assert counts[-1] == 8


def test_forecast_reason_and_metric():
    spec, bounds = policy(targets=QUEUE_ONLY, forecast=FORECAST)
    state = PolicyState(rates=((0.0, 100.0), (15.0, 125.0), (30.0, 150.0), (45.0, 175.0)))
    decision = decide(replicas(4, queue_depth=8, request_rate=50), spec, bounds, state, 60)
    assert decision.metrics["forecast_rate"] == pytest.approx(400)
    assert decision.reason == "rate 200/s -> 400/s in 120s (forecast): 4 -> 8"


def test_forecast_never_scales_down():
    # Falling rate, queue at target: the projection is lower, nothing changes.
    steps = rising([400, 300, 200, 100], 8, queue_depth=8)
    assert step_through(steps, targets=QUEUE_ONLY, forecast=FORECAST) == [8, 8, 8, 8]


def test_forecast_is_only_a_floor_under_the_reactive_count():
    spec, bounds = policy(targets=QUEUE_ONLY, forecast=FORECAST)
    state = PolicyState(rates=((0.0, 130.0), (15.0, 125.0), (30.0, 120.0)))
    # Reactive asks ceil(4 * 40 / 8) = 20; a falling rate adds no floor, and a queue still scales up.
    decision = decide(replicas(4, queue_depth=40, request_rate=28.75), spec, bounds, state, 45)
    assert decision.replicas == 20 and decision.reason.startswith("queue")


def test_forecast_off_by_default_and_history_kept_to_its_window():
    steps = rising([100 * (i + 1) for i in range(50)], 4, queue_depth=8)
    spec, bounds = policy(targets=QUEUE_ONLY)
    state = PolicyState()
    for now, obs in steps:
        decision = decide(obs, spec, bounds, state, now)
        state = decision.state
        assert decision.replicas == 4
    assert all(t > steps[-1][0] - 600 for t, _ in state.rates)


def test_queue_time_and_rate_are_reported():
    decision = run(replicas(2, queue_depth=8, request_rate=10, queue_time_ms=30), targets=QUEUE_ONLY)
    assert decision.metrics["request_rate"] == 20 and decision.metrics["queue_time_ms"] == 30


def test_decisions_are_frozen():
    decision = run(replicas(2, queue_depth=8), targets=QUEUE_ONLY)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.replicas = 3  # type: ignore[misc]
