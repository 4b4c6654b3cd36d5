"""Start-up learned from pods' creation to Ready (issue 23 part 2): scaling/startup.py, its use by the
policy's headroom, and what kube/observe.py and the status read of it."""

from __future__ import annotations

import dataclasses

import pytest
from test_scaling_demand import EDGE, fleet
from test_scaling_policy import run

from unbusy.controller.autoscale import _learned
from unbusy.kube.observe import _pod
from unbusy.scaling import startup
from unbusy.scaling.policy import PolicyState
from unbusy.scaling.startup import PodStart, Startup

T0 = 1_764_000_000.0


def started(name: str, seconds: float, at: float = T0) -> PodStart:
    return PodStart(name, at, at + seconds)


def test_each_pod_counts_once_when_first_seen_ready_and_the_median_of_the_latest_is_kept():
    first = startup.learn(Startup(), [started("a", 17), PodStart("b", T0, None)])  # b still loading
    assert first.seconds == 17 and first.counted == {"a"}
    again = startup.learn(first, [started("a", 17), started("b", 21)])
    assert again.recent == (17, 21) and again.seconds == 19
    # A pod whose readiness flapped an hour after its start reads 3,600 s: the median keeps it out.
    later = startup.learn(again, [started("c", 18), started("d", 3600), started("e", 20)])
    assert later.seconds == 20
    full = startup.learn(later, [started(f"n{i}", 30) for i in range(4)])
    assert len(full.recent) == startup.KEPT and full.seconds == 30
    assert full.counted == {f"n{i}" for i in range(4)}  # the pods gone are forgotten


def test_an_explicit_start_up_is_authoritative_the_learned_is_used_without_one_and_60_before_any():
    learned = startup.learn(Startup(), [started("a", 12)])
    assert startup.seconds(90, learned) == 90 and startup.used(90, learned) == "spec"
    assert startup.seconds(None, learned) == 12 and startup.used(None, learned) == "learned"
    assert startup.seconds(None, Startup()) == 60 and startup.used(None, Startup()) == "default 60s"


def ramp_decision(startup_seconds: int | None, starts: tuple[PodStart, ...]):
    ramp = tuple((15.0 * i, 1000 + 150.0 * i) for i in range(8))  # +10 rps/s, 2,050 rps now
    obs = dataclasses.replace(fleet(2, ramp[-1][1]), starts=starts)
    capacity = {"startupSeconds": startup_seconds} if startup_seconds is not None else {}
    return run(obs, state=PolicyState(demands=ramp[:-1]), now=ramp[-1][0], targets=EDGE, capacity=capacity)


def test_the_headroom_grows_the_demand_over_the_learned_start_up_where_the_spec_gives_none():
    quick = (started("a", 10), started("b", 12))  # creation to Ready: 11 s
    # 2050 / 800 = 2.6; + 10 rps/s x (60 s + 2 x 15 s) / 800 = 3.7 -> 4 before any pod has started,
    # + 10 x (11 + 30) / 800 = 3.1 -> 3 (within 10%) once they are seen start in 11 s.
    before, learned = ramp_decision(None, ()), ramp_decision(None, quick)
    assert before.metrics["startup_seconds"] == 60 and before.replicas == 4
    assert learned.metrics["startup_seconds"] == 11 and learned.state.startup.recent == (10, 12)
    assert learned.replicas == 3
    # The spec's value is used as it is.
    spec = ramp_decision(60, quick)
    assert spec.metrics["startup_seconds"] == 60 and spec.replicas == 4


def test_pods_start_up_is_learned_while_prometheus_is_away():
    obs = dataclasses.replace(fleet(2, 1000), samples=None, error="down", starts=(started("a", 14),))
    decision = run(obs, targets=EDGE)
    assert not decision.scaling_active and decision.state.startup.seconds == 14


def test_a_pods_creation_and_ready_times_are_read_from_the_pod():
    pod = {
        "metadata": {"name": "m-1", "creationTimestamp": "2025-11-24T16:00:00Z"},
        "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2025-11-24T16:00:17Z"}]},
    }
    read = _pod(pod)
    assert read.ready_since - read.created == pytest.approx(17)
    pod["status"]["conditions"][0]["status"] = "False"
    assert _pod(pod).ready_since is None  # not Ready: the transition was away from it


def test_the_status_shows_what_was_learned_rounded_so_a_small_move_writes_nothing():
    decision = ramp_decision(None, (started("a", 10), started("b", 12)))
    decision = dataclasses.replace(decision, state=dataclasses.replace(decision.state, capacity=1004.3))
    entry = _learned("main", decision, "rps", None).to_wire()
    assert entry == {
        "variant": "main",
        "capacity": 1000.0,
        "capacityUnit": "rps",
        "startupSeconds": 11,
        "startupUsed": "learned",
    }
    assert _learned("main", decision, "rps", 90).startup_used == "spec"
