"""Recurring bursts (scaling/bursts.py): what counts as a burst, when bursts make a run, and the
hold the policy keeps between them."""

from __future__ import annotations

import pytest
from test_scaling_demand import EDGE, fleet
from test_scaling_policy import FREE, run

from unbusy.scaling import bursts
from unbusy.scaling.policy import PolicyState

LULL, BURST = 1000.0, 4000.0


def feed(levels: list[tuple[float, float]], window: float = 120.0, refused=None, serving=0.0) -> bursts.Bursts:
    """Bursts after each (time, demand) in turn, with the policy's sliding demand window.

    `refused`: the rps refused at the edge at each time (a dict), `serving`: the ready replicas' rps."""
    seen, history = bursts.Bursts(), ()
    for now, demand in levels:
        history = tuple((t, d) for t, d in (*history, (now, demand)) if t > now - window)
        seen = bursts.observe(seen, history, now, 2.0, (refused or {}).get(now, 0.0), serving)
    return seen


def test_a_jump_to_twice_the_recent_least_is_a_burst_a_ramp_is_not():
    assert [b.start for b in feed([(0.0, LULL), (15.0, 1500.0), (30.0, 2100.0)]).seen] == [30.0]
    assert feed([(0.0, LULL), (15.0, 1500.0), (30.0, 1900.0)]).seen == ()
    assert feed([(30.0, BURST)]).seen == ()  # nothing before it to compare with
    assert feed([(0.0, 0.0), (15.0, LULL), (30.0, BURST)]).seen == ()  # from no demand: traffic starting


def test_a_burst_is_counted_once_with_its_peak_base_and_end():
    levels = [(0.0, LULL), (15.0, 2500.0), (30.0, BURST), (45.0, 4200.0), (60.0, 4100.0), (75.0, LULL)]
    seen = feed(levels)
    assert seen.seen == (bursts.Burst(start=15.0, peak=4200.0, base=LULL, end=75.0),)
    assert seen.seen[0].short(startup=60)  # back to the lull 60 s after it began
    assert not seen.seen[0].short(startup=45)
    assert not feed(levels[:-1]).seen[0].short(startup=600)  # still going: no end yet


def test_a_burst_shorter_than_the_window_is_read_from_the_refusals():
    # 4 s of 4,000 rps in a 15 s window over a 1,000 rps lull, 2 replicas serving 2,000: the edge
    # counts 1,800 rps on average, of which (4,000 - 2,000) x 4 / 15 = 533 refused
    reading, refused = LULL + (BURST - LULL) * 4 / 15, (BURST - 2000.0) * 4 / 15
    assert bursts.height(reading, LULL, refused, serving=2000.0) == pytest.approx(BURST)
    assert bursts.height(reading, LULL, 0.0, serving=2000.0) == reading  # nothing refused: the average
    assert bursts.height(reading, LULL, 0.04 * reading, serving=2000.0) == reading  # a full queue's noise
    assert bursts.height(reading, LULL, refused, serving=LULL) == reading  # no capacity over the lull to tell
    assert bursts.height(BURST, LULL, BURST - 2000.0, serving=2000.0) == pytest.approx(BURST)  # a whole window
    # it reads 1.8x, under the 2x threshold; the refusals show a 4x burst, over by the next interval
    levels = [(t, LULL) for t in range(0, 61, 15)] + [(75.0, reading), (90.0, LULL)]
    seen = feed(levels, refused={75.0: refused}, serving=2000.0)
    assert [(b.start, round(b.peak), b.end) for b in seen.seen] == [(75.0, BURST, 90.0)]
    assert feed(levels, serving=2000.0).seen == ()  # without the edge's refusals it is not seen


def test_replicas_that_became_ready_within_the_window_do_not_count_for_the_height():
    reading, refused = LULL + (BURST - LULL) * 4 / 15, (BURST - 2000.0) * 4 / 15
    before = bursts.Bursts(serving=2000.0)  # 2 ready at the last evaluation, 6 now
    after = bursts.observe(before, ((60.0, LULL), (75.0, reading)), 75.0, 2.0, refused, serving=6000.0)
    assert after.seen[0].peak == pytest.approx(BURST)
    assert after.serving == 6000.0


def test_bursts_within_the_recurrence_hold_the_largest_while_the_next_would_still_recur():
    # bursts seen at 15, 315 and 510: gaps 300 and 195
    levels = [(t, LULL) for t in range(-60, 601, 15)]
    for start in (0, 300, 495):
        levels = [(t, BURST if start < t <= start + 60 else d) for t, d in levels]
    seen = feed(levels)
    assert [b.start for b in seen.seen] == [15, 315, 510]
    held = bursts.hold(seen, now=600.0, recurrence=600)
    assert held == bursts.Hold(peak_rps=BURST, until=1110.0, bursts=3)  # the last burst + the recurrence
    assert bursts.replicas(held, capacity=1000.0) == 4  # at full capacity, not the target
    assert bursts.hold(seen, now=1111.0, recurrence=600) is None  # no burst came back: let go
    assert bursts.hold(seen, now=600.0, recurrence=250) == bursts.Hold(BURST, 760.0, 2)  # the last two only
    assert bursts.hold(seen, now=600.0, recurrence=150) is None  # no two bursts close enough
    assert bursts.hold(bursts.Bursts(seen.seen[:1]), now=100.0, recurrence=600) is None  # a lone burst


def test_a_short_burst_holds_alone_a_long_one_does_not():
    short = bursts.Bursts((bursts.Burst(100.0, BURST, LULL, end=130.0),))
    assert bursts.hold(short, now=200.0, recurrence=600, startup=60) == bursts.Hold(BURST, 700.0, 1)
    assert bursts.hold(short, now=701.0, recurrence=600, startup=60) is None  # none came back within 600 s
    assert bursts.hold(short, now=200.0, recurrence=600, startup=20) is None  # longer than a 20 s start-up
    crowd = bursts.Bursts((bursts.Burst(100.0, BURST, LULL, end=220.0),))  # 2 min: reacting serves most of it
    assert bursts.hold(crowd, now=300.0, recurrence=600, startup=60) is None
    step = bursts.Bursts((bursts.Burst(100.0, BURST, LULL),))  # not over
    assert bursts.hold(step, now=300.0, recurrence=600, startup=60) is None


def test_the_policy_holds_after_a_short_burst_and_lets_a_long_one_go():
    spec = {"targets": EDGE, "behavior": {"scaleUp": FREE, "scaleDown": FREE}}

    def replay(timeline):
        state, current = PolicyState(), 2
        for now, demand in timeline:
            decision = run(fleet(current, demand), state=state, now=float(now), **spec)
            state, current = decision.state, decision.replicas
        return decision

    # one reading at 4,000 rps between lulls: over before a replica could start
    short = replay([(t, BURST if t == 60 else LULL) for t in range(0, 301, 15)])
    assert short.replicas == 4
    assert short.floor == "bursts"
    assert short.reason.startswith("a burst over within the 60s start-up: holding 4 replicas for its peak 4,000 rps")
    assert short.reason.endswith("for 360s more: 4 -> 4")
    # the same burst lasting 5 minutes: the fleet follows it up and back down
    long = replay([(t, BURST if 60 <= t < 360 else LULL) for t in range(0, 601, 15)])
    assert long.replicas == 2
    assert long.floor is None


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


def test_the_window_smooths_the_demand_not_the_hold_which_is_let_go_at_once():
    down = {"stabilizationWindowSeconds": 120, "maxPodsPerStep": 1000, "maxPercentPerStep": 100}
    spec = {"targets": EDGE, "behavior": {"scaleUp": FREE, "scaleDown": down}}
    state, current, seen = PolicyState(), 2, {}
    for now in range(0, 781, 15):  # one reading at 4,000 rps (at 60 s): a short burst, held until 660 s
        decision = run(fleet(current, BURST if now == 60 else LULL), state=state, now=float(now), **spec)
        state, current, seen[now] = decision.state, decision.replicas, decision
    assert seen[60].replicas == 5  # 4,000 / 800
    assert seen[165].replicas == 5 and "scale-down stabilised over 120s" in seen[165].reason  # the burst's demand
    assert seen[180].replicas == 4 and seen[180].floor == "bursts"  # then the hold: 4,000 at full capacity
    assert seen[660].replicas == 4
    assert seen[675].replicas == 2 and "stabilised" not in seen[675].reason  # over: not waited out again
    assert seen[675].reason.endswith("-> 2 replicas: 4 -> 2")
