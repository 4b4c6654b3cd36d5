"""The seasonal floor (scaling/seasonal.py): the demand of the same time a period ago, read ahead
by the lead, as replicas at the capacity target; in the policy, the spec and the simulator."""

from __future__ import annotations

import dataclasses

import pytest
from builders import isvc
from test_scaling_demand import EDGE, fleet
from test_scaling_policy import FREE, run

from unbusy.api import SpecError
from unbusy.api.autoscaling import Seasonal
from unbusy.scaling import seasonal
from unbusy.sim.traces import builtin

DAY = Seasonal(enabled=True, period_seconds=3600, lead_seconds=300)


def test_the_floor_is_the_most_demand_of_the_lead_a_period_ago():
    history = [(float(t), 1000.0 + (4000 if 1200 <= t < 1500 else 0)) for t in range(0, 3600, 15)]
    assert seasonal.past_peak(history, now=3600 + 890, spec=DAY) == 1000  # [890, 1190]: before the peak
    assert seasonal.past_peak(history, now=3600 + 1000, spec=DAY) == 5000  # [1000, 1300]: it comes
    assert seasonal.past_peak(history, now=3000, spec=DAY) is None  # no history a period back
    assert seasonal.replicas(5000, DAY, capacity=1000, target=0.8) == 7  # 6.25
    assert seasonal.replicas(5000, DAY.model_copy(update={"percent": 50}), capacity=1000, target=0.8) == 4


def test_the_policy_holds_the_floor_and_says_it_set_the_replicas():
    spec = {"targets": EDGE, "behavior": {"scaleUp": FREE, "scaleDown": FREE}}
    on = spec | {"seasonal": {"enabled": True, "periodSeconds": 86400, "leadSeconds": 900}}
    obs = dataclasses.replace(fleet(2, 1000), seasonal_rps=5000.0)
    floored = run(obs, **on)
    assert floored.replicas == 7 and floored.floor == "seasonal"
    assert floored.reason.startswith(
        "seasonal floor: 5,000 rps 1d ago (the most of the next 15m) x 100% / capacity 1,000 x 0.8 -> 7 replicas"
    )
    assert run(obs, **spec).replicas == 2  # off: the past is not read
    busier = run(dataclasses.replace(obs, demand=fleet(2, 8000).demand), **on)
    assert busier.replicas == 10 and busier.floor is None  # today's demand above the floor decides
    # the scale-down window smooths today's demand, not the floor: a floor that falls is followed
    windowed = on | {"behavior": {"scaleUp": FREE, "scaleDown": FREE | {"stabilizationWindowSeconds": 300}}}
    held = run(obs, **windowed)
    fallen = run(dataclasses.replace(fleet(7, 1000), seasonal_rps=1000.0), state=held.state, now=60.0, **windowed)
    assert fallen.replicas == 2 and fallen.floor is None


def test_the_lead_must_be_shorter_than_the_period():
    message = r"spec\.autoscaling\.seasonal\.leadSeconds: must be shorter than periodSeconds"
    with pytest.raises(SpecError, match=message):
        isvc({"autoscaling": {"seasonal": {"enabled": True, "periodSeconds": 3600, "leadSeconds": 3600}}})


def test_diurnal2d_repeats_its_day_ten_percent_busier():
    rates = builtin("diurnal2d", 100.0).rps
    assert len(rates) == 7200
    assert rates[3600 + 1800] == pytest.approx(1.1 * rates[1800]) and max(rates[:3600]) == pytest.approx(600)
    assert rates[960] - rates[899] == pytest.approx(400, rel=0.01)  # the morning rush: 1x -> 5x in a minute
