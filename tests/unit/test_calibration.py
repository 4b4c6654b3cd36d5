"""The simulator against what a real Triton did on an H100 (bench/data, measured by bench/calibrate).

Each model's profile is fitted on half of its measured offered rates (and the closed loop);
the other half is replayed through the simulator and compared with the measurement. The
bounds are the issue's (served rate within 15%, rejected % within 15% or 2 points, GPU
utilisation within 0.08) except p99, which stalls of the serving process and Poisson bursts
set: the measured low-load p99 of ResNet-50 moves between 21 and 28 ms from one rate to the
next, so each held-out p99 must be within 30% and five of the seven within 15% (README,
"How close the simulator comes"). The 15% everywhere was tried against the median of three
runs of each rate in one server lifetime (bench/data/h100-x3-*) and does not hold: the three
p99s of one rate spread by up to 55% of their median (ResNet-50 at 0.2x: 33.3, 36.9, 18.5 ms),
more than the bound, so the profiles stay fitted from the single sweeps.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import yaml

from unbusy.sim import calibration
from unbusy.sim.model import PROFILES, from_config, load_profile

DATA = Path(__file__).resolve().parents[2] / "bench" / "data"
# The two shapes. ResNet-18 (the fallback variant's model) is profiled but not held to
# the bounds: its server stalled for 30-50 ms at some rates and not at the next (503s at 0.7x,
# none at 0.8x), which no steady model replays.
MODELS = ("resnet50", "bert-base")
PROFILED = (*MODELS, "resnet18")


@functools.cache
def fitted(model: str):
    sweep = calibration.read_sweep(DATA / f"h100-{model}-rates.csv")
    return sweep, calibration.rounded(calibration.fit(sweep))


@functools.cache
def checked(model: str):
    return calibration.check(*fitted(model))


@pytest.mark.parametrize("model", PROFILED)
def test_the_named_profile_is_what_calibrate_fits_from_the_committed_data(model):
    _, serving = fitted(model)
    committed = yaml.safe_load((PROFILES / f"h100-{model}.yaml").read_text())["serving"]
    assert committed == serving.model_dump(by_alias=True)
    assert load_profile(f"h100-{model}") == serving


@pytest.mark.parametrize("model", MODELS)
def test_fit_and_check_use_different_rates(model):
    sweep, _ = fitted(model)
    fit = {r.offered_rps for r in sweep.fit_half}
    check = {r.offered_rps for r in sweep.check_half}
    assert not fit & check and len(check) >= 7 and len(fit) >= 7
    assert min(check) < 0.3 * sweep.closed[1].served_rps and max(check) > 1.5 * sweep.closed[1].served_rps


@pytest.mark.parametrize("model", MODELS)
def test_held_out_rates_replay_within_bounds(model):
    p99_errors = []
    for row, replayed in checked(model):
        where = f"{model} at {row.offered_rps:.0f} rps"
        assert replayed.served_rps == pytest.approx(row.served_rps, rel=0.15), where
        assert abs(replayed.rejected_pct - row.rejected_pct) <= max(2.0, 0.15 * row.rejected_pct), where
        assert abs(replayed.gpu_util - row.gpu_util) <= 0.08, where
        p99_errors.append(abs(replayed.p99_ms / row.p99_ms - 1))
        assert p99_errors[-1] <= 0.30, f"{where}: p99 {replayed.p99_ms:.1f} ms simulated, {row.p99_ms:.1f} measured"
    assert sum(e <= 0.15 for e in p99_errors) >= 5, f"{model}: p99 within 15% at too few rates: {p99_errors}"


@pytest.mark.parametrize("model", MODELS)
def test_saturated_replica_serves_what_the_real_one_did_and_reads_its_gpu_ceiling(model):
    sweep, serving = fitted(model)
    replica = from_config(sweep.config, serving)
    overloaded = [r for r in sweep.open if r.rejected_pct > 20]
    measured = sum(r.served_rps for r in overloaded) / len(overloaded)
    assert calibration.replay(replica, 2 * measured).served_rps == pytest.approx(measured, rel=0.05)
    ceiling = sum(r.gpu_util for r in overloaded) / len(overloaded)
    assert replica.gpu_reading(10 * measured) == pytest.approx(ceiling, abs=0.05)


def test_service_time_fit_recovers_a_known_curve():
    truth = calibration.ServiceTime(floor_ms=4.0, base_ms=1.0, per_item_ms=0.25)
    points = [(b, max(truth.floor_ms, truth.base_ms + truth.per_item_ms * b)) for b in (1, 2, 4, 8, 16, 24, 32)]
    fitted_time = calibration.fit_service_time(points)
    assert fitted_time.floor_ms == pytest.approx(4.0)
    assert (fitted_time.base_ms, fitted_time.per_item_ms) == pytest.approx((1.0, 0.25))


def test_gpu_curve_fit_recovers_a_known_curve():
    points = [(f / 10, 0.8 * (f / 10) ** 0.6) for f in range(1, 11)] + [(1.5, 0.8), (2.0, 0.8)]
    curve = calibration.fit_gpu_curve(points)
    assert (curve.ceiling, curve.exponent) == pytest.approx((0.8, 0.6), abs=0.01)


def test_a_csv_without_the_harness_header_is_refused(tmp_path):
    path = tmp_path / "rates.csv"
    path.write_text("mode,served_rps\nopen,1\n")
    with pytest.raises(ValueError, match="no '# config.pbtxt:' line"):
        calibration.read_sweep(path)


@pytest.mark.parametrize("model", MODELS)
def test_a_sweep_run_three_times_in_one_server_reads_as_one_step_per_rate(model):
    # bench/data/h100-x3-*: the 14 fractions of capacity, ascending, descending, then shuffled.
    sweep = calibration.read_sweep(DATA / f"h100-x3-{model}-rates.csv")
    assert [r.concurrency for r in sweep.closed] == [8, 32, 64, 96]
    assert len(sweep.open) == 14 and {r.repeats for r in sweep.open} == {3}
    for step in sweep.open:
        assert {s.offered_rps for s in step.segments} == {step.offered_rps}
        for figure in ("served_rps", "rejected_pct", "p99_ms", "gpu_util", "avg_batch"):
            assert getattr(step, figure) == sorted(getattr(s, figure) for s in step.segments)[1]
        assert step.p99_range_ms == (min(s.p99_ms for s in step.segments), max(s.p99_ms for s in step.segments))


def test_repeats_of_a_rate_combine_into_their_median_and_keep_their_spread(tmp_path):
    columns = (
        "mode,concurrency,offered_rps,served_rps,rejected_pct,p50_ms,p99_ms,gpu_util,avg_batch,"
        "executions_per_s,compute_infer_us"
    )
    rows = [
        "closed,8,,500,0,10,20,0.5,6,90,8000",
        "closed,32,,900,0,30,40,0.8,18,50,18000",
        "open,,100,99,0,12,30,0.2,1.5,70,8000",
        "open,,200,198,0,13,20,0.3,2.0,95,8500",
        "open,,100,101,0,12,22,,1.3,75,8100",
        "open,,200,202,0,14,40,0.4,2.2,97,8700",
        "open,,200,200,1,13,25,0.35,2.1,96,8600",
    ]
    path = tmp_path / "rates.csv"
    path.write_text("# config.pbtxt: max_batch_size: 32\n" + columns + "\n" + "\n".join(rows) + "\n")
    sweep = calibration.read_sweep(path)
    assert [r.concurrency for r in sweep.closed] == [8, 32] and [r.repeats for r in sweep.closed] == [1, 1]
    low, high = sweep.open
    assert (low.offered_rps, low.repeats, low.served_rps, low.p99_ms, low.gpu_util) == (100, 2, 100, 26, 0.2)
    assert low.p99_range_ms == (22, 30)
    assert (high.repeats, high.served_rps, high.rejected_pct, high.p99_ms, high.compute_ms) == (3, 200, 0, 25, 8.6)
    assert high.p99_range_ms == (20, 40)
