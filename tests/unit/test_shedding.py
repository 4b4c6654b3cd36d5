"""traffic/shedding.py: weight to the fallback where the ready replicas fall short, back with hysteresis."""

from __future__ import annotations

from dataclasses import replace

import pytest
from builders import isvc

from unbusy.api.autoscaling import Autoscaling
from unbusy.api.fallback import Fallback
from unbusy.api.status import InferenceServiceStatus
from unbusy.scaling.demand import Demand
from unbusy.serving.model import from_config, load_profile
from unbusy.sim.config import SimConfig, SimFallback
from unbusy.sim.engine import simulate
from unbusy.sim.traces import Trace
from unbusy.traffic.shedding import (
    Level,
    Load,
    Moved,
    canary_ingress_taken,
    offered,
    plan,
    recorded,
    routed,
    spread,
    to_status,
)

SPEC = Fallback(variant="small", rps_per_replica=2000, max_percent=50, restore_seconds=60)


def loads(ready: int, fallback_ready: int = 1, fallback_weight: int = 0) -> tuple[Load, ...]:
    return (
        Load("main", 100 - fallback_weight, ready, capacity_rps=1000),
        Load("small", fallback_weight, fallback_ready, capacity_rps=2000),
    )


def test_demand_the_ready_replicas_serve_moves_nothing():
    done = plan(loads(ready=4), SPEC, demand_rps=3000, previous=(), now=0)
    assert done.moved == () and done.weights == {"main": 100, "small": 0}
    assert done.reason == "ready replicas cover the demand"


def test_the_excess_over_ready_capacity_moves_in_whole_percent_rounded_up():
    # 2 ready x 1000 x 95% = 1900 served; 2500 offered: 600 rps = 24% moves.
    done = plan(loads(ready=2), SPEC, demand_rps=2500, previous=(), now=10)
    assert done.moved == (Moved("main", 24, 10),)
    assert done.weights == {"main": 76, "small": 24}
    assert done.reason == "24% of demand is beyond the ready replicas' capacity: 24% to small"


@pytest.mark.parametrize(
    ("demand", "fallback_ready", "expected", "limit"),
    [
        (10_000, 1, 18, "its spare capacity"),  # 1 x 2000 x 90% = 1800 rps = 18% of 10,000
        (3_000, 2, 50, "fallback.maxPercent 50%"),  # 1 ready serves 950: 69% asked, 120% spare
    ],
)
def test_the_move_is_capped_by_the_fallbacks_spare_capacity_and_max_percent(demand, fallback_ready, expected, limit):
    done = plan(loads(ready=1, fallback_ready=fallback_ready), SPEC, demand_rps=demand, previous=(), now=0)
    assert done.percent == expected and sum(done.weights.values()) == 100
    assert done.reason.endswith(f"(capped by {limit})")


def test_a_fallback_that_carries_weight_of_its_own_has_that_much_less_to_spare():
    # 1 x 2000 x 90% = 1800 rps = 36% of 5,000, of which its own weight 10 takes 10.
    done = plan(loads(ready=1, fallback_weight=10), SPEC, demand_rps=5000, previous=(), now=0)
    assert done.weights == {"main": 64, "small": 36}


def test_no_fallback_replica_ready_moves_nothing():
    assert plan(loads(ready=1, fallback_ready=0), SPEC, demand_rps=5000, previous=(), now=0).moved == ()


def test_weight_goes_back_only_after_the_demand_has_been_covered_for_restore_seconds():
    shed = plan(loads(ready=2), SPEC, demand_rps=2500, previous=(), now=0).moved
    covered = [plan(loads(ready=3), SPEC, demand_rps=2500, previous=shed, now=t) for t in (15, 59)]
    assert all(p.moved == shed for p in covered)
    assert covered[-1].reason == "ready replicas cover the demand: 24% stays on small for up to 60s"
    restored = plan(loads(ready=3), SPEC, demand_rps=2500, previous=shed, now=60)
    assert restored.moved == () and restored.weights == {"main": 100, "small": 0}


def test_more_need_moves_at_once_and_restarts_the_clock():
    first = plan(loads(ready=2), SPEC, demand_rps=2500, previous=(), now=0).moved
    more = plan(loads(ready=2), SPEC, demand_rps=3000, previous=first, now=30).moved
    assert more == (Moved("main", 36, 30),)  # 1100 of 3000 beyond 1900: 36.7%, and no more
    less = plan(loads(ready=2), SPEC, demand_rps=2500, previous=more, now=80)
    assert less.percent == 36  # 50 s since it was last needed: held
    assert plan(loads(ready=2), SPEC, demand_rps=2500, previous=more, now=90).moved == (Moved("main", 24, 90),)


def test_all_the_weight_comes_back_only_restore_seconds_after_the_last_tick_that_needed_any():
    # The need eases from 24% to 12% at 40 s, and the load drops away at 55 s: the weight does not
    # follow the 12% (seen at 40 s) straight to 0 when the 24% leaves the window at 60 s, but holds
    # 12% until 100 s, restoreSeconds after the last tick that needed it.
    shed = plan(loads(ready=2), SPEC, demand_rps=2500, previous=(), now=0).moved
    eased = plan(loads(ready=2), SPEC, demand_rps=2160, previous=shed, now=40)  # 260 of 2160 beyond 1900
    assert eased.moved == (Moved("main", 24, 0, Level(12, 40)),)
    history = eased.moved
    for t in (55, 60, 99, 100):
        history = plan(loads(ready=2), SPEC, demand_rps=500, previous=history, now=t).moved
        assert [m.percent for m in history] == {55: [24], 60: [12], 99: [12], 100: []}[t], t


def test_unknown_demand_holds_the_moves():
    shed = (Moved("main", 24, 0),)
    held = plan(loads(ready=2), SPEC, demand_rps=None, previous=shed, now=500)
    assert held.moved == shed and held.weights == {"main": 76, "small": 24}
    assert held.reason == "demand unknown: weights held"


def test_a_fallback_that_lost_its_replicas_gives_the_weight_back_at_once():
    shed = plan(loads(ready=1), SPEC, demand_rps=3000, previous=(), now=0).moved
    assert plan(loads(ready=1, fallback_ready=0), SPEC, demand_rps=3000, previous=shed, now=15).moved == ()


def test_in_the_simulator_a_step_sheds_to_the_fallback_instead_of_refusing_and_comes_back():
    model = from_config(None, load_profile("h100-resnet50"))
    small = from_config(None, load_profile("h100-resnet18"))
    base = SimConfig(
        model=model,
        policy=Autoscaling(min_replicas=2, max_replicas=20),
        bounds=(2, 20),
        initial_replicas=2,
        slo_s=1.0,
    )
    trace = Trace("step", (800.0,) * 120 + (3000.0,) * 300 + (800.0,) * 300)
    alone = simulate(base, trace)
    shed = simulate(replace(base, fallback=SimFallback(SPEC, small, replicas=1)), trace)
    assert shed.fallback_pct > 1
    # Over a third of the refusals avoided: 12.7% -> 7.8% with the profiles fitted from the long
    # ResNet-50 sweep and the ResNet-18 one (11.5% -> 5.8% with the earlier fits, whose ResNet-18
    # served 8% more past capacity than the real one did).
    assert shed.rejected_pct < 0.7 * alone.rejected_pct, (shed.rejected_pct, alone.rejected_pct)
    assert max(m.shed for m in shed.minutes[2:7]) > 0  # during the step
    assert [m.shed for m in shed.minutes[-3:]] == [0, 0, 0]  # and no longer once capacity caught up


def test_the_moves_round_trip_through_the_status_and_shift_the_routed_weights():
    spec = {
        "variants": [{"name": "main", "weight": 100}, {"name": "small", "weight": 0}],
        "fallback": {"variant": "small", "rpsPerReplica": 2000},
        "routing": {"host": "svc.example.com"},
    }
    service = isvc(spec)
    moves = (Moved("main", 24, 1_764_000_000.0, Level(12, 1_764_000_030.0)),)
    status = to_status(service, moves)
    assert status["fallback"] == "24% main->small"
    assert status["shedding"] == [
        {
            "variant": "main",
            "percent": 24,
            "neededAt": "2025-11-24T16:00:00Z",
            "latest": {"percent": 12, "neededAt": "2025-11-24T16:00:30Z"},
        }
    ]
    assert to_status(service, (Moved("main", 24, 1_764_000_000.0),))["shedding"][0].keys() == {
        "variant",
        "percent",
        "neededAt",
    }
    recorded_service = service.model_copy(update={"status": InferenceServiceStatus.model_validate(status)})
    assert recorded(recorded_service) == moves
    assert {v.name: v.weight for v in routed(recorded_service).spec.effective_variants()} == {"main": 76, "small": 24}
    assert not canary_ingress_taken(service)


def test_a_step_is_shed_from_the_latest_rate_while_the_windows_catches_up_and_not_on_its_noise():
    rising = Demand(1500.0, 300.0, "nginx", True, latest_rps=4000.0)  # 10 s into a step from 500 rps
    assert offered([rising]) == 4000.0
    steady = Demand(4000.0, 0.0, "nginx", True, latest_rps=4060.0)  # within 10%: the window's
    assert offered([steady]) == 4000.0
    assert offered([Demand(4000.0, 0.0, "promql", True)]) == 4000.0  # no latest read: the window's
    assert offered([steady, None]) is None
    spread_out = spread(
        {"main": rising, "small": Demand(0.0, 0.0, "nginx", True, latest_rps=0.0)}, {"main": 100, "small": 0}
    )
    assert spread_out["main"].latest_rps == 4000.0 and spread_out["small"].latest_rps == 0.0


def test_a_move_capped_by_the_fallbacks_spare_keeps_its_latest_need_under_the_cap():
    # 1 fallback replica spares 1800 rps: 15% of 12,000; 11 ready main replicas leave 12% unserved.
    held = (Moved("main", 30, 0, Level(20, 10)),)
    done = plan(loads(ready=11), SPEC, demand_rps=12_000, previous=held, now=20)
    assert done.moved == (Moved("main", 15, 0, Level(12, 20)),)
