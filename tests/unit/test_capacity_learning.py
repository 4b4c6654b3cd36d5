"""Capacity learning that shedding and stalls cannot talk down (issue 23).

The demo's loop in the simulator: examples/fallback-step.yaml on the calibrated ResNet-50 profile
with its ResNet-18 fallback, read as the operator reads Prometheus (1 s scrapes, 60 s rate
windows), kwok's pods Ready within 2 s, and the demo's load: 500 requests/s (half a replica),
8x that for 120 s, 500 again.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from unbusy.api import load
from unbusy.scaling import capacity
from unbusy.scaling.policy import ReplicaSample, decide
from unbusy.serving.model import DEFAULT_FALLBACK_PROFILE, load_profile
from unbusy.sim.config import from_spec
from unbusy.sim.engine import Simulation
from unbusy.sim.traces import Trace

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fallback-step.yaml"
WARM, STEP, AFTER = 120, 120, 120  # the demo waits for a steady fleet before its 30 s at the base rate
BASE, PEAK = 500.0, 4000.0


def demo_run():
    """The demo in the simulator: every decision (time, replicas, learned capacity) and the run's minutes."""
    config = from_spec(
        load(yaml.safe_load(EXAMPLE.read_text())),  # no model.serving: the default profile, h100-resnet50
        fallback_serving=load_profile(DEFAULT_FALLBACK_PROFILE),
        startup_s=2.0,
        scrape_interval_s=1,
        rate_window_s=60,
        metrics_delay_s=1,
    )
    decisions = []

    def recorded(obs, policy, bounds, state, now):
        decision = decide(obs, policy, bounds, state, now)
        decisions.append((now, decision.replicas, decision.state.capacity, decision.reason))
        return decision

    trace = Trace("demo", (BASE,) * WARM + (PEAK,) * STEP + (BASE,) * AFTER)
    result = Simulation(config, trace, recorded).run()
    return config, decisions, result


def test_the_demo_keeps_its_capacity_sheds_only_the_excess_and_scales_in_to_one():
    config, decisions, result = demo_run()
    profile = config.model.capacity_rps  # 1,004 requests/s
    # No scale-out while the load sits at half a replica's: the filling rate window is no growth.
    assert all(replicas == 1 for t, replicas, _, _ in decisions if t < WARM), [d for d in decisions if d[0] < WARM]
    # The learned capacity stays within 10% of the profile's before, during and after the step.
    learned = [c for _, _, c, _ in decisions if c is not None]
    assert all(abs(c / profile - 1) <= 0.10 for c in learned), (min(learned), max(learned))
    # The step's second minute (60-120 s in): 3 ready replicas answer >= 95% of their capacity,
    # and the fallback takes the excess over it, 5 points more at most.
    minute = result.minutes[(WARM + 60) // 60]
    assert minute.ready - config.fallback.replicas == pytest.approx(3)
    answered = minute.load_rps * 60 - minute.shed - minute.rejected
    assert answered / 60 >= 0.95 * 3 * profile, answered / 60
    excess = 100 * (minute.load_rps - 3 * profile) / minute.load_rps
    assert 100 * minute.shed / (minute.load_rps * 60) <= excess + 5
    # Back at 500 requests/s, one replica.
    assert decisions[-1][1] == 1, decisions[-1]


def sample(**values) -> ReplicaSample:
    return ReplicaSample(ready=True, **({"ready_seconds": 300.0} | values))


def test_a_queue_kept_up_by_stalls_with_small_batches_and_no_refusals_is_not_saturation():
    stalled = sample(queue_depth_min=20, served_rate=667.0, batch_mean=9.0, refused_rate=0.0)
    full = sample(queue_depth_min=40, served_rate=1004.0, batch_mean=32.0, refused_rate=0.0)
    refusing = sample(queue_depth_min=50, served_rate=990.0, batch_mean=24.0, refused_rate=300.0)
    seen = capacity.readings([stalled, full, refusing], saturated_pending=16, full_batch=32, window_seconds=60)
    assert seen.saturated == [1004.0, 990.0]


def test_no_reading_from_a_replica_younger_than_the_window_nor_while_weight_moved():
    young = sample(queue_depth_min=50, served_rate=34.0, batch_mean=32.0, refused_rate=30.0, ready_seconds=8.0)
    assert capacity.readings([young], 16, 32, window_seconds=60) == capacity.Readings([])
    saturated = sample(queue_depth_min=50, served_rate=700.0, batch_mean=32.0, refused_rate=30.0)
    assert capacity.readings([saturated], 16, 32, 60, weight_moved=True) == capacity.Readings([])


def test_an_unsaturated_replica_that_served_more_raises_the_estimate_at_once():
    serving = sample(queue_depth_min=2, served_rate=700.0, batch_mean=8.0, refused_rate=0.0)
    seen = capacity.readings([serving], 16, 32, 60)
    assert seen == capacity.Readings([], 700.0)
    assert capacity.learn(500.0, 1000.0, seen) == 700.0
    assert capacity.learn(900.0, 1000.0, seen) == 900.0  # a lower bound never lowers it
