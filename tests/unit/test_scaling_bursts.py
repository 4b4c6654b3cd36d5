"""Bursts, priced (scaling/bursts.py): what counts as a burst, how often bursts come, what a kept
replica saves of one, and the hold the policy keeps between them at the price of a refusal."""

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


def test_from_a_lull_of_no_demand_after_traffic_a_burst_is_what_the_fleet_does_not_absorb():
    # on-off traffic from 0: idle between bursts, no longer taking its first traffic; 2 replicas serve 2,000
    idle = [(0.0, LULL), (15.0, 0.0), (30.0, 0.0), (45.0, 2500.0), (60.0, BURST), (75.0, BURST), (90.0, 0.0)]
    burst = feed(idle, serving=2000.0).seen
    assert burst == (bursts.Burst(start=45.0, peak=BURST, base=0.0, end=90.0),)
    again = [*idle, (105.0, 0.0), (120.0, 0.0), (135.0, BURST), (150.0, BURST)]
    twice = feed(again, serving=2000.0)
    assert [b.start for b in twice.seen] == [45.0, 135.0]  # once each, however long the window holds a 0
    assert bursts.rate(twice, now=300.0) > 0  # so the hold prices them
    # stray requests in the lull (1 in 15 s) jump from 0 too, but under half of what the fleet serves
    strays = [(0.0, LULL), (15.0, 0.0), (30.0, 1 / 15), (45.0, 0.0), (60.0, 2 / 15), (75.0, 0.0), (90.0, BURST)]
    assert [b.start for b in feed(strays, serving=2000.0).seen] == [90.0]
    no_traffic = [(0.0, 0.0), (15.0, 0.0), (30.0, BURST)]
    assert feed(no_traffic, serving=2000.0).seen == ()  # no demand before the 0s: traffic starting


def test_a_burst_is_counted_once_with_its_peak_base_and_end():
    levels = [(0.0, LULL), (15.0, 2500.0), (30.0, BURST), (45.0, 4200.0), (60.0, 4100.0), (75.0, LULL)]
    seen = feed(levels)
    assert seen.seen == (bursts.Burst(start=15.0, peak=4200.0, base=LULL, end=75.0),)
    assert feed(levels[:-1]).seen[0].end is None  # still going: no end yet


def test_a_burst_shorter_than_the_window_is_read_from_the_refusals():
    # 4 s of 4,000 rps in a 15 s window over a 1,000 rps lull, 2 replicas serving 2,000: the edge
    # counts 1,800 rps on average, of which (4,000 - 2,000) x 4 / 15 = 533 refused
    reading, refused = LULL + (BURST - LULL) * 4 / 15, (BURST - 2000.0) * 4 / 15
    assert bursts.height(reading, LULL, refused, serving=2000.0) == pytest.approx(BURST)
    assert bursts.height(reading, LULL, 0.0, serving=2000.0) == reading  # nothing refused: the average
    assert bursts.height(reading, LULL, 0.04 * reading, serving=2000.0) == reading  # a full queue's noise
    assert bursts.height(reading, LULL, refused, serving=LULL) == reading  # no capacity over the lull to tell
    assert bursts.height(BURST, LULL, BURST - 2000.0, serving=2000.0) == pytest.approx(BURST)  # a whole window
    # replicas that served more than `serving` says (ready sooner than counted): never under the average
    assert bursts.height(BURST, LULL, 0.1 * BURST, serving=2000.0) == BURST
    # it reads 1.8x, under the 2x threshold; the refusals show a 4x burst, over by the next interval
    levels = [(t, LULL) for t in range(0, 61, 15)] + [(75.0, reading), (90.0, LULL)]
    seen = feed(levels, refused={75.0: refused}, serving=2000.0)
    assert [(b.start, round(b.peak), b.end) for b in seen.seen] == [(75.0, BURST, 90.0)]
    assert feed(levels, serving=2000.0).seen == ()  # without the edge's refusals it is not seen


def test_replicas_that_became_ready_within_the_window_do_not_count_for_the_height():
    reading, refused = LULL + (BURST - LULL) * 4 / 15, (BURST - 2000.0) * 4 / 15
    before = bursts.Bursts(serving=((60.0, 2000.0),))  # 2 ready at the last evaluation, 6 now
    after = bursts.observe(before, ((60.0, LULL), (75.0, reading)), 75.0, 2.0, refused, serving=6000.0, span=45.0)
    assert after.seen[0].peak == pytest.approx(BURST)
    assert after.serving == ((60.0, 2000.0), (75.0, 6000.0))


def test_the_height_counts_the_least_ready_over_the_whole_span_of_the_reading():
    # a 4,000 rps job met by 2 replicas (2,000 rps), 5 ready by the evaluation before its end; the
    # reading at its end (15 s of rate window, up to 30 s old) holds its last 5 s, while only the 2
    # served: 2,000 rps on average, 667 of them refused
    window = ((255.0, LULL), (270.0, BURST), (285.0, BURST), (300.0, BURST), (315.0, 2000.0))
    served = ((270.0, 2000.0), (285.0, 2000.0), (300.0, 5000.0))
    tail = bursts.Bursts((bursts.Burst(270.0, BURST, LULL),), True, served)
    after = bursts.observe(tail, window, 315.0, 2.0, refused=2000.0 / 3, serving=5000.0, span=45.0)
    assert after.seen[0].peak == pytest.approx(BURST)
    assert [t for t, _ in after.serving] == [270.0, 285.0, 300.0, 315.0]
    # read as if the 5 had served the whole window (the last evaluation's alone), the job was twice as tall
    short = bursts.observe(tail, window, 315.0, 2.0, refused=2000.0 / 3, serving=5000.0, span=15.0)
    assert short.seen[0].peak == pytest.approx(2 * BURST)


PRICE = bursts.Price(refusal_gpu_seconds=0.02, exposure_seconds=90.0, lead_seconds=105.0)


def seen(*spans: tuple[float, float], peak: float = BURST) -> bursts.Bursts:
    """Bursts of `peak` over the lull, each (start, end)."""
    return bursts.Bursts(tuple(bursts.Burst(start, peak, LULL, end) for start, end in spans))


def test_how_often_bursts_come_is_read_from_their_gaps_the_one_going_on_included():
    three = seen((100.0, 160.0), (400.0, 460.0), (700.0, 760.0))
    assert bursts.rate(three, now=700.0) == pytest.approx(2 / 600)  # two gaps of 300 s
    assert bursts.rate(three, now=1300.0) == pytest.approx(2 / 1200)  # a long lull lowers it
    assert bursts.rate(seen((100.0, 160.0)), now=200.0) == 0.0  # one burst: no gap to tell by
    assert bursts.rate(bursts.Bursts(), now=200.0) == 0.0


def test_a_kept_replica_saves_its_slice_of_the_height_for_the_exposure_or_the_whole_burst():
    # 4,000 rps over bursts of 60 s and of 300 s: the 3rd replica at 1,000 serves 1,000 rps of
    # each, for 60 s of the short one and the 90 s exposure of the long one
    two = seen((0.0, 60.0), (400.0, 700.0))
    assert bursts.saved(two, 3, capacity=1000.0, exposure=90.0, now=800.0) == pytest.approx(1000 * (60 + 90) / 2)
    assert bursts.saved(two, 4, capacity=1200.0, exposure=90.0, now=800.0) == pytest.approx(400 * 75)  # the rest
    assert bursts.saved(two, 5, capacity=1000.0, exposure=90.0, now=800.0) == 0.0  # over the height
    going_on = seen((0.0, 60.0), (400.0, None))
    assert bursts.saved(going_on, 1, capacity=1000.0, exposure=90.0, now=430.0) == pytest.approx(1000 * 45)


def test_the_hold_keeps_the_replicas_whose_saved_refusals_are_worth_their_gpus_until_the_next_burst():
    # bursts 300 s apart, each 4,000 rps for 60 s: a replica saves 60,000 refusals of one, worth
    # 1,200 GPU-s at 0.02, over the 300 s it is kept between them: all 4 pay
    three = seen((100.0, 160.0), (400.0, 460.0), (700.0, 760.0))
    held = bursts.hold(three, 800.0, PRICE, capacity=1000.0)
    assert held == bursts.Hold(4, 4, BURST, 3, 350.0, 60_000.0, 1200.0, 350.0)
    # the 4th replica's slice is 400 rps at 1,200 a replica: 24,000 refusals, 480 GPU-s over 350 s
    assert bursts.hold(three, 800.0, PRICE, capacity=1200.0).replicas == 4
    cheap = bursts.Price(0.005, 90.0, 105.0)
    assert bursts.hold(three, 800.0, cheap, capacity=1000.0) is None  # 300 GPU-s a burst < 350 s between them
    # at 1,200 a replica the first three save 72,000 refusals, 360 GPU-s, the 4th 24,000: 120. Kept
    # through the lull each nets 10 GPU-s a burst; ordered back 105 s before the next is due (the gaps
    # are alike), 360 x 2/3 - 105 - 300 / 3 = 35, as a third of the next gaps come earlier than the two
    # seen (missed) and a third later (held for them, about a mean gap of 300 s)
    prewarm = bursts.hold(three, 800.0, cheap, capacity=1200.0)
    assert (prewarm.replicas, prewarm.planned, prewarm.order_at, prewarm.odds) == (0, 3, 895.0, pytest.approx(2 / 3))
    assert prewarm.cost_seconds == pytest.approx(105 + 300 / 3)
    assert bursts.hold(three, 900.0, cheap, capacity=1200.0).replicas == 3
    # a lull of 1,500 s: one burst per 950 s, and 1,200 GPU-s a burst no longer pays
    assert bursts.hold(three, 2600.0, PRICE, capacity=1000.0) is None
    # a replica of two GPUs costs twice as much a second
    assert bursts.hold(three, 800.0, bursts.Price(0.02, 90.0, 105.0, gpus_per_replica=4.0), capacity=1000.0) is None
    assert bursts.hold(three, 800.0, bursts.Price(0, 90.0, 105.0), capacity=1000.0) is None  # price 0: off


def test_the_next_burst_is_due_the_mean_gap_after_the_last_give_or_take_their_spread():
    assert bursts.due(seen((0.0, 60.0), (300.0, 360.0), (700.0, 760.0))) == bursts.Due(1050.0, 50.0, 2)
    assert bursts.due(seen((0.0, 60.0))) is None


REGULAR = seen(*((start, start + 120.0) for start in (0.0, 900.0, 1800.0, 2700.0, 3600.0)))


def test_regular_bursts_are_met_by_replicas_ordered_back_a_lead_before_the_next_is_due():
    # 4,000 rps for 2 min every 900 s: each replica saves 90,000 refusals a burst, 1,800 GPU-s at
    # 0.02; kept through the lull (930 s a burst by the rate) each nets 870, ordered back at
    # t-105 s 1,800 x 4/5 - 105 - 900 / 5 = 1,155, as 1 of the next 5 gaps comes earlier than the 4
    # seen and 1 later, held for a mean gap
    lull = bursts.hold(REGULAR, 3720.0, PRICE, capacity=1000.0)
    assert (lull.replicas, lull.planned, lull.due, lull.order_at) == (0, 4, bursts.Due(4500.0, 0.0, 4), 4395.0)
    assert (lull.cost_seconds, lull.odds) == (pytest.approx(105 + 900 / 5), pytest.approx(0.8))
    assert bursts.hold(REGULAR, 4395.0, PRICE, capacity=1000.0).replicas == 4
    # later than every gap seen: the hold through the lull prices what to keep (1,800 > 1,125 s a burst)
    late = bursts.hold(REGULAR, 4501.0, PRICE, capacity=1000.0)
    assert (late.replicas, late.due) == (4, None)


def test_a_hold_that_would_give_way_to_the_pre_warm_before_its_window_is_not_kept():
    # one gap: half the next come earlier, half later: ordered back, 1,800 / 2 - 105 - 900 / 2 = 345 a
    # replica. Kept through the lull, 1,800 - 960 (the lull so far) just after the second burst, but
    # 1,800 - 1,695 = 105 by the time the pre-warm would order: by then it would have given way to the
    # pre-warm, having met no burst due on schedule (flash at 0.02: 8 replicas 7 min for nothing)
    two = seen((0.0, 120.0), (900.0, 1020.0))
    planned = bursts.hold(two, 1020.0, PRICE, capacity=1000.0)
    assert (planned.replicas, planned.planned, planned.order_at) == (0, 4, 1695.0)
    # where it still pays at the pre-warm's order time it is kept: 1,800 x 3 = 5,400 - 1,695 > 1,350 - 555
    dear = bursts.hold(two, 1020.0, bursts.Price(0.06, 90.0, 105.0), capacity=1000.0)
    assert (dear.replicas, dear.due) == (4, None)
    # gaps of 100 to 600 s (+-275 s): a window of 105 + 550 s costs more than the hold's 405 s
    irregular = seen((0.0, 60.0), (100.0, 160.0), (700.0, 760.0), (900.0, 960.0), (1500.0, 1560.0))
    assert bursts.hold(irregular, 1620.0, PRICE, capacity=1000.0).due is None


def test_a_pre_warm_is_priced_alike_all_through_the_lull():
    # one gap of 900 s; a replica saves 90,000 refusals of a burst, 1,350 GPU-s at 0.015. At 1,700 s, 5 s
    # before the window opens, half the next bursts are still to be met: 1,350 / 2 - 105 - 900 / 2 = 120
    # GPU-s a replica. A late burst waits a mean gap of those seen; 1 / rate (1,700 s by now) would count
    # the lull so far as if still to be paid, and the plan would lapse as its burst comes near (flash at
    # 0.015 held the second crowd's replicas 360 s, then let go of them 390 s before the third)
    two = seen((0.0, 120.0), (900.0, 1020.0))
    cheaper = bursts.Price(0.015, 90.0, 105.0)
    for now in (1020.0, 1200.0, 1400.0):  # the hold would not last to the window: 1,350 - 1,695 < 120
        planned = bursts.hold(two, now, cheaper, capacity=1000.0)
        assert (planned.replicas, planned.planned, planned.order_at) == (0, 4, 1695.0)
    late = bursts.hold(two, 1700.0, cheaper, capacity=1000.0)
    assert (late.replicas, late.cost_seconds) == (4, pytest.approx(105 + 900 / 2))


def test_a_burst_alone_holds_nothing_whatever_the_price():
    step = seen((300.0, 1200.0), peak=10 * LULL)
    assert bursts.hold(step, 1300.0, bursts.Price(100.0, 90.0, 105.0), capacity=1000.0) is None


def test_tokens_are_priced_per_request():
    # demand in tokens/s, 500 tokens a request: the same bursts save 500 times fewer requests
    three = seen((100.0, 160.0), (400.0, 460.0), (700.0, 760.0))
    assert bursts.hold(three, 800.0, bursts.Price(10.0, 90.0, 105.0), capacity=1000.0, per_request=500.0).replicas == 4
    assert bursts.hold(three, 800.0, PRICE, capacity=1000.0, per_request=500.0) is None


def test_the_policy_holds_between_recurring_bursts_says_why_and_lets_go_when_they_stop():
    spec = {"targets": EDGE, "behavior": {"scaleUp": FREE, "scaleDown": FREE}}
    state, current, decisions = PolicyState(), 2, {}
    # 4,000 rps for 45 s every 300 s over a 1,000 rps lull, three times, then a long lull
    timeline = [(t, BURST if (t % 300) in (15, 30, 45) and t < 900 else LULL) for t in range(0, 2401, 15)]
    for now, demand in timeline:
        decision = run(fleet(current, demand), state=state, now=float(now), **spec)
        state, current, decisions[now] = decision.state, decision.replicas, decision
    assert decisions[285].replicas == 2  # one burst says nothing of how often they come
    # after the third: 4 replicas (5 at the target in the burst), each saving 45,000 refusals of a
    # 45 s burst, 900 GPU-s at 0.02, more than the 345 s it is kept between bursts (690 s / 2 gaps)
    held = decisions[705]
    assert held.replicas == 4 and held.floor == "bursts"
    assert held.reason == (
        "3 bursts up to 4,000 rps, one per 345s: replica 4 kept saves 45,000 refusals a burst (its first 90s), "
        "900 GPU-s at 0.02 a refusal, more than the 345 GPU-s it costs between bursts: holding 4 replicas: 4 -> 4"
    )
    assert held.metrics["burst_hold_replicas"] == 4
    # as the lull goes on the rate falls: 900 GPU-s a burst pays while the bursts come every 900 s or
    # less, two gaps in 1,800 s from the first
    assert decisions[1800].replicas == 4 and decisions[1830].replicas == 2 and decisions[1830].floor is None
    off = run(fleet(5, LULL), state=decisions[705].state, now=720.0, **spec, capacity={"refusalPriceGpuSeconds": 0})
    assert off.replicas == 2


def regular_bursts(spec: dict, until: int) -> dict:
    """The policy's decisions every 15 s under 4,000 rps for 45 s every 600 s over a 1,000 rps lull."""
    state, current, decisions = PolicyState(), 2, {}
    for now in range(0, until + 1, 15):
        demand = BURST if now % 600 in (15, 30, 45) else LULL
        decision = run(fleet(current, demand), state=state, now=float(now), **spec)
        state, current, decisions[now] = decision.state, decision.replicas, decision
    return decisions


def test_the_policy_lets_regular_bursts_replicas_go_in_the_lull_and_orders_them_back_before_the_next():
    spec = {"targets": EDGE, "behavior": {"scaleUp": FREE, "scaleDown": FREE}}
    decisions = regular_bursts(spec, until=2460)
    # after the second burst, kept through the lull a replica (900 GPU-s a burst it saves) would pay
    # 900 - 675 by the rate so far, but not by the pre-warm's order time (1,095 s from the first burst):
    # ordering it back, 900 / 2 - 105 - 600 / 2 (one gap), is all it is worth
    assert decisions[690].replicas == 2 and "next burst due in ~525s (1 gaps, +-0s)" in decisions[690].reason
    # after the third, less: 900 x 2/3 - 105 - 600 / 3 = 295 > 900 - 622; the burst's replicas go
    lull = decisions[1275]
    assert lull.replicas == 2 and lull.floor is None
    assert lull.reason.endswith("-> 2; next burst due in ~540s (2 gaps, +-0s): scale to 4 at t-105s")
    warm = decisions[1710]
    assert warm.replicas == 4 and warm.floor == "bursts"
    assert warm.reason == (
        "3 bursts up to 4,000 rps, next burst due in ~105s (2 gaps, +-0s): scale to 4 at t-105s: replica 4 "
        "ordered saves 45,000 refusals a burst (its first 90s), 900 GPU-s at 0.02 a refusal in the 67% of bursts "
        "no earlier than the gaps seen, more than the 305 GPU-s of its window and a late one's wait: "
        "pre-warming 4 replicas: 2 -> 4"
    )
    assert decisions[1800].replicas == 4  # ready when the burst comes at 1,815
    # with more gaps alike, none is held through the lull at all
    assert [decisions[t].replicas for t in (1860, 2295, 2310)] == [2, 2, 4]


def test_while_a_pre_warm_waits_for_its_window_the_scale_down_window_keeps_no_burst_replicas():
    down = {"stabilizationWindowSeconds": 120, "maxPodsPerStep": 1000, "maxPercentPerStep": 100}
    spec = {"targets": EDGE, "behavior": {"scaleUp": FREE, "scaleDown": down}}
    decisions = regular_bursts(spec, until=1950)
    assert decisions[1845].replicas == 5  # the fourth burst, met by the 4 pre-warmed and one more
    after = decisions[1860]  # the window holds 5 (its highest) for 120 s; the pre-warm has priced the lull
    assert after.replicas == 2 and "stabilised" not in after.reason and "scale to 4 at t-105s" in after.reason


def test_the_deprecated_recurrence_is_accepted_its_zero_still_turns_the_hold_off():
    spec = {"targets": EDGE, "behavior": {"scaleUp": FREE, "scaleDown": FREE}}
    three = PolicyState(bursts=seen((100.0, 160.0), (400.0, 460.0), (700.0, 760.0)))
    assert run(fleet(2, LULL), state=three, now=800.0, **spec).replicas == 4
    kept = run(fleet(2, LULL), state=three, now=800.0, **spec, capacity={"burstRecurrenceSeconds": 600})
    assert kept.replicas == 4  # ignored
    off = run(fleet(2, LULL), state=three, now=800.0, **spec, capacity={"burstRecurrenceSeconds": 0})
    assert off.replicas == 2


def test_demand_within_the_tolerance_moves_nothing_either_way():
    assert run(fleet(5, 4100), targets=EDGE).replicas == 5  # wants 5.1: within 10%
    assert run(fleet(5, 4500), targets=EDGE).replicas == 6  # 5.6: past it


def test_the_window_smooths_the_demand_not_the_hold_which_caps_it_and_is_let_go_at_once():
    down = {"stabilizationWindowSeconds": 120, "maxPodsPerStep": 1000, "maxPercentPerStep": 100}
    spec = {
        "targets": EDGE,
        "behavior": {"scaleUp": FREE, "scaleDown": down},
        "capacity": {"refusalPriceGpuSeconds": 0.1},
    }
    state, current, seen = PolicyState(), 2, {}
    for now in range(0, 1621, 15):  # one reading at 4,000 rps at 60 s and at 360 s: bursts of 15 s
        decision = run(fleet(current, BURST if now in (60, 360) else LULL), state=state, now=float(now), **spec)
        state, current, seen[now] = decision.state, decision.replicas, decision
    assert seen[60].replicas == 5  # 4,000 / 800
    # the burst is over at the next reading: one burst alone holds nothing, and once burst mode is over
    # (60 s) the window does not keep its replicas (noise is what it smooths, and a burst's end is not noise)
    assert seen[105].replicas == 5 and "burst mode" in seen[105].reason
    assert seen[120].replicas == 2 and "stabilised" not in seen[120].reason
    assert seen[360].replicas == 5
    # a replica saves 15,000 refusals a burst, 1,500 GPU-s at 0.1, more than the 375 s it waits for the
    # next: the hold keeps 4 (4,000 at full capacity), and the window does not keep the burst's 5 beyond it
    assert seen[435].replicas == 4 and seen[435].floor == "bursts" and "stabilised" not in seen[435].reason
    assert seen[1560].replicas == 4  # one gap of 1,500 s: still worth 1,500 GPU-s
    assert seen[1575].replicas == 2 and "stabilised" not in seen[1575].reason  # over: not waited out again
    assert seen[1575].reason.endswith("-> 2 replicas: 4 -> 2")


def test_after_a_burst_the_window_keeps_none_of_its_replicas_but_still_smooths_the_lull():
    down = {"stabilizationWindowSeconds": 120, "maxPodsPerStep": 1000, "maxPercentPerStep": 100}
    spec = {"targets": EDGE, "behavior": {"scaleUp": FREE, "scaleDown": down}}
    levels = {60: BURST, 75: BURST, 90: BURST, 300: 1900.0}  # a 45 s burst, then a lull with one high reading
    state, current, seen = PolicyState(), 2, {}
    for now in range(0, 601, 15):
        decision = run(fleet(current, levels.get(now, LULL)), state=state, now=float(now), **spec)
        state, current, seen[now] = decision.state, decision.replicas, decision
    assert seen[105].replicas == 5 and "burst mode" in seen[105].reason  # until 60 s after it began
    assert seen[120].replicas == 2 and "stabilised" not in seen[120].reason  # over: its 5 go at once
    assert seen[300].replicas == 3  # 1,900 / 800: a reading under twice the lull's is no burst
    assert seen[405].replicas == 3 and "scale-down stabilised over 120s" in seen[405].reason
    assert seen[420].replicas == 2
    assert seen[600].state.demand_since == 0.0  # when demand was first read: the burst does not move it
    # where bursts have no price (0: the hold is off, or no demand rule, as the HPA baselines) the window
    # keeps the burst's replicas as the HPA's does
    free = {**spec, "capacity": {"refusalPriceGpuSeconds": 0}}
    state, current = PolicyState(), 2
    for now in range(0, 121, 15):
        unpriced = run(fleet(current, levels.get(now, LULL)), state=state, now=float(now), **free)
        state, current = unpriced.state, unpriced.replicas
    assert unpriced.replicas == 5 and "scale-down stabilised over 120s" in unpriced.reason
    # while the burst goes on (demand over twice the lull's) the window keeps its highest, as before
    high = run(fleet(5, 2500.0), state=seen[90].state, now=105.0, **spec)
    assert high.state.bursts.seen[-1].end is None
    assert run(fleet(5, 2500.0), state=high.state, now=120.0, **spec).replicas == 5
