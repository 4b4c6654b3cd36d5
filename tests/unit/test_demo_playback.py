"""The demo's pure parts: what the emulator's fleet tallies for the load generator, the summary and
table the demo prints, its plot, and which variants it plays (tests/e2e/test_demo.py runs it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from builders import ROOT, isvc

from unbusy.api import load
from unbusy.api.model import ModelConfig
from unbusy.demo import playback, plot
from unbusy.demo.playback import Roles, roles
from unbusy.demo.player import BATCH, SLOWER, demo_manifest
from unbusy.serving.model import DEFAULT_FALLBACK_PROFILE, DEFAULT_PROFILE, from_config, from_service, load_profile
from unbusy.sim.live import LiveFleet
from unbusy.sim.stats import Histogram

EXAMPLE = ROOT / "examples" / "fallback-step.yaml"
BATCHING = ModelConfig.model_validate({"maxBatchSize": 32, "dynamicBatching": {"maxQueueSize": 64}})


def test_every_request_is_answered_refused_or_still_queued():
    fleet = LiveFleet(from_config(BATCHING), seed=3)
    pods = {"main-0": ("main", True), "main-1": ("main", True)}
    for second in range(90):
        fleet.tick(5000 if 20 <= second < 50 else 600, pods)
    tally = fleet.take_tally()
    queued = sum(pod.replica.backlog for pod in fleet.pods.values())
    assert tally.rejected > 0  # 5,000/s is beyond two replicas
    assert tally.arrived == pytest.approx(sum(tally.answered.values()) + tally.rejected + queued)
    assert tally.latency.total == pytest.approx(sum(tally.answered.values()))
    assert fleet.take_tally().arrived == 0  # counting starts afresh


def test_a_variant_serves_as_its_own_model():
    """The fallback's replicas serve the smaller model's capacity, the others the main one's."""
    main, small = from_config(BATCHING), from_config(BATCHING, load_profile(DEFAULT_FALLBACK_PROFILE))
    assert small.capacity_rps > 2 * main.capacity_rps
    fleet = LiveFleet(main, seed=1, variant_models={"small": small})
    pods = {"main-0": ("main", True), "small-0": ("small", True)}
    rate = 2 * main.capacity_rps
    for _ in range(30):
        fleet.tick(rate, pods, {"main": 50, "small": 50})
    answered = fleet.take_tally().answered
    assert answered["main"] == pytest.approx(answered["small"], rel=0.05)  # both keep up with rate/2...
    fleet.tick(0, pods)
    for _ in range(30):
        fleet.tick(2 * rate, pods, {"main": 50, "small": 50})
    answered = fleet.take_tally().answered
    assert answered["main"] < 0.7 * answered["small"]  # ...but only small keeps up with twice that


def sample(second: int, phase: str, **values) -> playback.Sample:
    base = dict(offered=100, answered=100, fallback_answered=0, rejected=0, desired=1, ready=1, fallback_weight=0)
    return playback.Sample(second, phase, **(base | {"last_scaling": ""} | values))


PHASES = playback.load_step(100, 8, (2, 4, 3))
SAMPLES = [
    sample(0, "before"),
    sample(1, "before"),
    sample(2, "step", offered=800, answered=200, rejected=600),
    sample(3, "step", offered=800, answered=600, rejected=200, desired=3, ready=3, last_scaling="main 1 -> 3: q"),
    *(
        sample(
            second,
            "step",
            offered=800,
            answered=600,
            fallback_answered=200,
            ready=3,
            desired=3,
            fallback_weight=25,
            last_scaling="main 1 -> 3: q",
        )
        for second in (4, 5)
    ),
    sample(6, "after", ready=3, desired=3, fallback_weight=25, last_scaling="main 1 -> 3: q"),
    sample(7, "after", ready=3, desired=3, last_scaling="main 3 -> 1: d"),
    sample(8, "after", last_scaling="main 3 -> 1: d"),
]


def latencies() -> dict[str, Histogram]:
    histograms = {}
    for phase, ms in (("before", 10.0), ("step", 80.0), ("after", 12.0)):
        histograms[phase] = Histogram()
        histograms[phase].add(ms, 100)
    return histograms


def test_the_summary_adds_up_the_samples():
    summary = playback.summarize(SAMPLES, latencies(), PHASES, "main", "small", 3)
    assert (summary.requests, summary.answered, summary.fallback_answered, summary.rejected) == (3700, 2500, 400, 800)
    assert summary.queued == 0
    assert summary.rejected_by_phase == {"before": 0, "step": 800, "after": 0}
    assert summary.replicas == (1, 3, 1)
    assert (summary.weight_max, summary.weight_end, summary.shed_from, summary.restored_at) == (25, 0, 4, 7)
    assert [(d.second, d.text) for d in summary.decisions] == [(3, "main 1 -> 3: q"), (7, "main 3 -> 1: d")]
    assert summary.p99_ms["step"] == pytest.approx(80, rel=0.02) and summary.p99_ms["all"] == pytest.approx(
        80, rel=0.02
    )


def test_a_decision_from_before_the_playback_is_not_one_of_its_own():
    summary = playback.summarize(SAMPLES, latencies(), PHASES, "main", "small", 3, decided_before="main 1 -> 3: q")
    assert [d.text for d in summary.decisions] == ["main 3 -> 1: d"]


def test_weight_still_on_the_fallback_at_the_end_is_not_restored():
    summary = playback.summarize(SAMPLES[:7], latencies(), PHASES, "main", "small", 3)
    assert (summary.weight_end, summary.restored_at) == (25, None)


def test_the_report_says_what_happened_in_words():
    text = playback.report(playback.summarize(SAMPLES, latencies(), PHASES, "main", "small", 3))
    assert "load step: 100 rps for 2 s -> 800 rps for 4 s -> 100 rps for 3 s" in text
    assert "requests            3,700" in text
    assert "answered            2,900 (78.4%): main 2,500, small (fallback) 400" in text
    assert "503s                800 (21.6%): before 0, step 800, after 0" in text
    assert "other failures      0 (another status, or no answer)" in text
    assert "main replicas       ready 1 -> 3 (maxReplicas 3) -> 1" in text
    assert "weight on small     0% -> 25% (from 2 s into 'step') -> 0% (from 1 s into 'after')" in text
    assert "1 s into 'step'        main 1 -> 3: q" in text


def test_the_table_has_a_row_per_span_of_a_phase():
    rows = playback.table(SAMPLES, 2, "main", "small").splitlines()
    assert rows[0].split() == [
        "time",
        "phase",
        "offered/s",
        "answered/s",
        "503/s",
        "main",
        "ready/desired",
        "small",
        "weight",
    ]
    assert [row.split()[:2] for row in rows[1:]] == [
        ["0s", "before"],
        ["2s", "step"],
        ["4s", "step"],
        ["6s", "after"],
        ["8s", "after"],
    ]
    assert rows[2].split()[2:] == ["800", "400", "400", "3/3", "0%"]
    assert playback.rows_every(145) == 10 and playback.rows_every(30) == 5


def test_the_plot_is_a_png(tmp_path: Path):
    path = tmp_path / "demo.png"
    plot.write_png(SAMPLES, PHASES, Roles("main", "small", 100, 1, 3), "a step", path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_demo_example_plays_main_and_sheds_to_small():
    [document] = yaml.safe_load_all(EXAMPLE.read_text())
    assert roles(load(document)) == Roles("main", "small", 100, 1, 3)


def test_a_service_without_a_fallback_cannot_be_played():
    with pytest.raises(ValueError, match="spec.fallback: the demo plays shedding to a fallback variant"):
        roles(isvc())


def test_the_report_weighs_the_steps_end_against_mains_ready_capacity_and_shows_what_was_learned():
    learned = [dataclasses.replace(s, learned_capacity=250.0 if s.second < 6 else 260.0) for s in SAMPLES]
    summary = playback.summarize(learned, latencies(), PHASES, "main", "small", 3, capacity_rps=210.0)
    # The step's last 2 s: main answers 600/s on 3 replicas of 210 (95.2%); 800 offered, 630 of capacity:
    # the excess is 21.2%, the fallback took 25%.
    shed = summary.shedding
    assert (shed.seconds, shed.ready, shed.answered_rps) == (2, 3, 600)
    assert shed.of_capacity_pct == pytest.approx(95.24, abs=0.01)
    assert (shed.fallback_pct, shed.excess_pct) == (25, pytest.approx(21.25))
    assert summary.learned_capacity == {"before": (250, 250), "step": (250, 250), "after": (260, 260)}
    text = playback.report(summary)
    assert "learned capacity    before 250, step 250, after 260 rps/replica (the profile's 210)" in text
    assert (
        "step's last 2 s    main answered 600/s: 95.2% of its 3 ready replicas' capacity; small 25.0% of the"
        " requests, the excess over that capacity 21.2%" in text
    )


def test_the_demo_plays_its_example_slowed_the_same_in_the_model_s_own_time():
    [document] = yaml.safe_load_all(EXAMPLE.read_text())
    example, slow = load(document), load(demo_manifest(document))
    calibrated, slowed = from_service(example), from_service(slow)
    # 1/SLOWER of the requests, in batches BATCH the size, each batch SLOWER x BATCH times longer;
    # the queue the same in requests (so the same in the model's own time).
    assert slowed.capacity_rps == pytest.approx(calibrated.capacity_rps / SLOWER)
    assert (slowed.saturated_batch, slowed.max_queue) == (calibrated.saturated_batch * BATCH, calibrated.max_queue)
    assert slowed.max_queue_delay_s == pytest.approx(calibrated.max_queue_delay_s * SLOWER * BATCH)
    for batch in (8, 16, 32):
        assert slowed.service_s(batch * BATCH) == pytest.approx(calibrated.service_s(batch) * SLOWER * BATCH)
    profile, pauses = load_profile(DEFAULT_PROFILE), slow.spec.model.serving.pauses
    assert pauses.per_execution == profile.pauses.per_execution
    assert pauses.ms == pytest.approx(profile.pauses.ms * SLOWER * BATCH)
    assert slow.spec.model.serving.ready_seconds == profile.ready_seconds  # wall-clock: the timeline stays
    # What the operator is told a replica serves, and what the fallback takes, scale alike.
    spec = example.spec
    assert slow.spec.autoscaling.capacity.rps_per_replica == spec.autoscaling.capacity.rps_per_replica / SLOWER
    assert slow.spec.fallback.rps_per_replica == spec.fallback.rps_per_replica / SLOWER
    assert slow.spec.model.serving.measured.startswith(f"slowed {SLOWER}x, batches {BATCH:g}x: ")
    assert slow.spec.routing == spec.routing and slow.spec.variants == spec.variants


def test_the_demo_plays_through_a_gateway_only():
    [document] = yaml.safe_load_all(EXAMPLE.read_text())
    document["spec"]["routing"] = {"provider": "nginx", "host": "step.example.com"}
    document["spec"]["autoscaling"]["demand"]["source"] = "nginx"
    with pytest.raises(ValueError, match="spec.routing.gateway: the demo plays its load through"):
        demo_manifest(document)
