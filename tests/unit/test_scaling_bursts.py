"""Recurring bursts (scaling/bursts.py): what counts as a burst, when bursts make a run, and the
hold the policy keeps between them."""

from __future__ import annotations

from test_scaling_demand import EDGE, fleet
from test_scaling_policy import FREE, run

from unbusy.scaling import bursts
from unbusy.scaling.policy import PolicyState

LULL, BURST = 1000.0, 4000.0


def feed(levels: list[tuple[float, float]], window: float = 120.0) -> bursts.Bursts:
    """Bursts after each (time, demand) in turn, with the policy's sliding demand window."""
    seen, history = bursts.Bursts(), ()
    for now, demand in levels:
        history = tuple((t, d) for t, d in (*history, (now, demand)) if t > now - window)
        seen = bursts.observe(seen, history, now, threshold=2.0)
    return seen


def test_a_jump_to_twice_the_recent_least_is_a_burst_a_ramp_is_not():
    assert bursts.jumped(((0.0, LULL), (15.0, 1500.0), (30.0, 2100.0)), 30.0, 2.0)
    assert not bursts.jumped(((0.0, LULL), (15.0, 1500.0), (30.0, 1900.0)), 30.0, 2.0)
    assert not bursts.jumped(((30.0, BURST),), 30.0, 2.0)  # nothing before it to compare with


def test_a_burst_is_counted_once_with_its_peak():
    levels = [(0.0, LULL), (15.0, 2500.0), (30.0, BURST), (45.0, 4200.0), (60.0, 4100.0), (75.0, LULL)]
    seen = feed(levels)
    assert seen.seen == ((15.0, 4200.0),)


def test_bursts_within_the_recurrence_hold_the_largest_while_the_next_would_still_recur():
    # bursts seen at 15, 315 and 510: gaps 300 and 195
    levels = [(t, LULL) for t in range(-60, 601, 15)]
    for start in (0, 300, 495):
        levels = [(t, BURST if start < t <= start + 60 else d) for t, d in levels]
    seen = feed(levels)
    assert [t for t, _ in seen.seen] == [15, 315, 510]
    held = bursts.hold(seen, now=600.0, recurrence=600)
    assert held == bursts.Hold(peak_rps=BURST, until=1110.0, bursts=3)  # the last burst + the recurrence
    assert bursts.replicas(held, capacity=1000.0) == 4  # at full capacity, not the target
    assert bursts.hold(seen, now=1111.0, recurrence=600) is None  # no burst came back: let go
    assert bursts.hold(seen, now=600.0, recurrence=250) == bursts.Hold(BURST, 760.0, 2)  # the last two only
    assert bursts.hold(seen, now=600.0, recurrence=150) is None  # no two bursts close enough
    assert bursts.hold(bursts.Bursts(seen.seen[:1]), now=100.0, recurrence=600) is None  # a lone burst


def test_the_policy_holds_between_recurring_bursts_and_says_so():
    spec = {"targets": EDGE, "behavior": {"scaleUp": FREE, "scaleDown": FREE}}
    state, current = PolicyState(), 2
    timeline = [(t, BURST if (t % 300) in (15, 30, 45) else LULL) for t in range(0, 691, 15)]
    for now, demand in timeline:
        decision = run(fleet(current, demand), state=state, now=float(now), **spec)
        state, current = decision.state, decision.replicas
    # bursts 300 s apart: in the lull after the third the fleet keeps 4 replicas (5 at the target), not 2
    assert current == 4
    assert decision.reason.startswith("3 bursts within 600s of each other: holding 4 replicas for their peak 4,000 rps")
    off = run(fleet(5, LULL), state=state, now=705.0, **spec, capacity={"burstRecurrenceSeconds": 0})
    assert off.replicas == 2


def test_demand_within_the_tolerance_moves_nothing_either_way():
    assert run(fleet(5, 4100), targets=EDGE).replicas == 5  # wants 5.1: within 10%
    assert run(fleet(5, 4500), targets=EDGE).replicas == 6  # 5.6: past it
