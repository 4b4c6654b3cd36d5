"""The simulator: traces, the serving model, and runs driven by the scaling policy."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
import yaml
from builders import isvc, manifest

from unbusy.api.model import GpuUtilizationCurve, Pauses, ServiceTime, Serving
from unbusy.serving.batcher import SHARES, Batcher, steady_state
from unbusy.serving.model import DEFAULT_PROFILE, ServiceModel, from_config, from_service, load_profile
from unbusy.sim import cli as sim_cli
from unbusy.sim import plot
from unbusy.sim.config import SimConfig, from_spec
from unbusy.sim.engine import Replica, Simulation, _Minute, simulate
from unbusy.sim.traces import SHAPES, Trace, builtin, parse_csv

FAST_DOWN = {"stabilizationWindowSeconds": 60, "maxPodsPerStep": 4, "maxPercentPerStep": 100, "periodSeconds": 15}
QUEUE_ONLY = {"queueDepthPerReplica": 8, "gpuUtilizationPercent": 0}


def config(scaling: bool = True, **autoscaling) -> SimConfig:
    settings = {"minReplicas": 2, "maxReplicas": 30, "targets": QUEUE_ONLY} | autoscaling
    return from_spec(isvc({"autoscaling": settings}), scaling=scaling, startup_s=60)


def serving(floor_ms: float = 0.0, base_ms: float = 5.0, per_item_ms: float = 1.5, **changes) -> Serving:
    """A serving profile with a chosen batch time, a linear GPU reading and no stalls."""
    return Serving(
        service_time=ServiceTime(floor_ms=floor_ms, base_ms=base_ms, per_item_ms=per_item_ms),
        gpu_utilization=GpuUtilizationCurve(ceiling=1, exponent=1),
        ready_seconds=10,
    ).model_copy(update=changes)


def step(base: float, before: int = 60, during: int = 540, after: int = 0) -> Trace:
    return Trace("step", (base,) * before + (10 * base,) * during + (base,) * after)


# --- traces ----------------------------------------------------------------------------------


def test_csv_is_interpolated_per_second_from_its_first_row():
    trace = parse_csv("seconds,rps\n10,0\n14,40\n16,40\n")
    assert trace.rps == (0, 10, 20, 30, 40, 40)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0,1\n0,2\n", "line 2: seconds must increase"),
        ("0,1\n5,-1\n", "line 2: rps must be a finite number >= 0"),
        ("0,1\n5,x\n", "line 2: expected two numbers `seconds,rps`, got '5,x'"),
        ("0,1,2\n", "line 1: expected two numbers"),
        ("seconds,rps\n0,1\n", "needs at least two rows"),
    ],
)
def test_bad_csv_names_the_line(text, message):
    with pytest.raises(ValueError, match=message):
        parse_csv(text, "trace.csv")


def test_builtin_shapes():
    assert max(builtin("step", 10).rps) == 100 and min(builtin("step", 10).rps) == 10
    assert max(builtin("diurnal", 10).rps) == pytest.approx(40) and builtin("diurnal", 10).rps[0] == 10
    assert max(builtin("flash", 10).rps) == 80 and builtin("flash", 10).rps[0] == 10
    with pytest.raises(
        ValueError,
        match="unknown trace shape 'ramp'; use one of step, diurnal, flash, sawtooth, onoff, diurnal2d, "
        "onoff-tall, onoff-quick, crowds, cron",
    ):
        builtin("ramp", 10)
    assert set(SHAPES) == {
        "step",
        "diurnal",
        "flash",
        "sawtooth",
        "onoff",
        "diurnal2d",
        "onoff-tall",
        "onoff-quick",
        "crowds",
        "cron",
    }
    # the same on-off process with other heights, lengths and seeds: bursts the hold was not tuned on
    for name, height, seconds in (("onoff", 40, 3600), ("onoff-tall", 60, 7200), ("onoff-quick", 30, 3600)):
        rates = builtin(name, 10).rps
        assert set(rates) == {10, height} and len(rates) == seconds
    # bursts on a schedule: flash's crowds six times, 15 min apart; a job every 5 min +-20 s
    crowds = builtin("crowds", 10).rps
    assert len(crowds) == 5700 and crowds[:3000] == builtin("flash", 10).rps and crowds[5100 + 60] == 80
    cron = builtin("cron", 10).rps
    starts = [t for t in range(1, len(cron)) if cron[t] > cron[t - 1]]
    assert len(starts) == 11 and all(abs(start - 300 * k) <= 20 for k, start in enumerate(starts, 1))
    assert set(cron) == {10, 40}


# --- the serving model -----------------------------------------------------------------------


def test_batches_grow_with_the_rate_up_to_the_saturated_batch():
    model = ServiceModel(saturated_batch=16, serving=serving())
    sizes = [model.batch_at(rate) for rate in (1, 100, 300, 500, 5000)]
    assert sizes == sorted(sizes) and sizes[0] == 1 and sizes[-1] == 16
    assert model.capacity_rps == pytest.approx(16 / 0.029)


def test_launch_bound_batches_take_the_floor_and_grow_with_the_rate_on_it():
    model = ServiceModel(saturated_batch=32, serving=serving(floor_ms=8, base_ms=2, per_item_ms=0.5))
    assert model.service_s(1) == model.service_s(12) == pytest.approx(0.008)
    assert model.service_s(32) == pytest.approx(0.018)
    assert model.batch_at(500) == pytest.approx(4.0)  # 500/s x 8 ms: on the floor
    # on the line: b = rate x base / (1 - rate x per_item)
    assert model.batch_at(1500) == pytest.approx(1500 * 0.002 / (1 - 1500 * 0.0005))


def test_stalls_take_their_share_of_capacity_and_the_gpu_reading_follows_served_load():
    still = ServiceModel(
        saturated_batch=16, serving=serving(gpu_utilization=GpuUtilizationCurve(ceiling=0.8, exponent=0.5))
    )
    stalling = dataclasses.replace(
        still, serving=still.serving.model_copy(update={"pauses": Pauses(per_second=2, ms=50)})
    )
    assert stalling.capacity_rps == pytest.approx(0.9 * still.capacity_rps)
    assert still.gpu_reading(still.capacity_rps / 4) == pytest.approx(0.4)
    assert still.gpu_reading(10 * still.capacity_rps) == pytest.approx(0.8)  # the ceiling, however far past


def test_stalls_in_executions_lengthen_full_batches_by_their_share():
    still = ServiceModel(saturated_batch=16, serving=serving())  # a full batch takes 5 + 1.5 x 16 = 29 ms
    stalling = dataclasses.replace(
        still, serving=still.serving.model_copy(update={"pauses": Pauses(per_execution=0.1, ms=30)})
    )
    assert stalling.capacity_rps == pytest.approx(16 / (0.029 + 0.1 * 0.030))
    assert stalling.batcher.stalls_per_execution == 0.1 and stalling.batcher.stall_s == pytest.approx(0.030)


def test_a_stalled_execution_ends_a_stall_later():
    # One request a second: nearly each is a batch of its own, held for the batching window and
    # served (the few that arrive within a batch time of another wait, up in the tail).
    alone = Batcher(32, 0.002, 64, floor_s=0.0, base_s=0.005, per_item_s=0.001, stalls_per_second=0, stall_s=0.03)
    every = dataclasses.replace(alone, stalls_per_execution=1.0)
    calm, stalled = steady_state(alone, 1.0, requests=200), steady_state(every, 1.0, requests=200)
    most = sum(share for share in SHARES[:7])  # the quantile bins up to 0.9
    assert most == pytest.approx(0.9)
    assert calm.latencies_s[:7] == pytest.approx([0.002 + 0.006] * 7)
    assert stalled.latencies_s[:7] == pytest.approx([0.002 + 0.006 + 0.03] * 7)


def test_a_backlogged_replica_stalls_in_its_share_of_executions():
    model = ServiceModel(
        saturated_batch=16,
        max_queue=0,
        serving=serving().model_copy(update={"pauses": Pauses(per_execution=0.1, ms=30)}),
    )
    sim = Simulation(dataclasses.replace(config(scaling=False), model=model), Trace("flat", (0.0,)))
    replica = Replica(ready_at=0.0, queue=[[0.0, 1.0, 10_000.0]])
    sim.serve(replica, 1.0, 0.0, _Minute())
    assert replica.served == pytest.approx(16 / (0.029 + 0.1 * 0.030))  # a second of full batches


def test_stalls_lengthen_the_tail_not_the_median():
    steady = dataclasses.replace(config(scaling=False), initial_replicas=1)
    stalling = dataclasses.replace(
        steady,
        model=dataclasses.replace(
            steady.model, serving=steady.model.serving.model_copy(update={"pauses": Pauses(per_second=1, ms=80)})
        ),
    )
    steady = dataclasses.replace(
        steady,
        model=dataclasses.replace(steady.model, serving=steady.model.serving.model_copy(update={"pauses": Pauses()})),
    )
    calm, stalled = simulate(steady, Trace("flat", (100.0,) * 120)), simulate(stalling, Trace("flat", (100.0,) * 120))
    assert stalled.p50_ms == pytest.approx(calm.p50_ms, rel=0.1)
    assert stalled.p99_ms > calm.p99_ms + 40


def test_the_default_profile_is_the_measured_resnet50_one():
    assert from_config(None).serving == load_profile(DEFAULT_PROFILE) == load_profile("h100-resnet50")
    assert "H100" in load_profile(DEFAULT_PROFILE).measured
    with pytest.raises(ValueError, match="neither a profile"):
        load_profile("no-such-profile")


def test_model_config_sets_batching_and_the_queue_limit():
    config = {"maxBatchSize": 16, "dynamicBatching": {"preferredBatchSizes": [4, 8], "maxQueueSize": 32}}
    model = from_service(isvc({"model": {"name": "m", "repository": "s3://b/m", "config": config}}))
    # Triton serves a backlog in its largest preferred batch, not in the maximum.
    assert (model.saturated_batch, model.max_queue) == (8, 32)
    assert from_config(None).saturated_batch == 8  # Triton's defaults where the spec has no config
    unbatched = {"maxBatchSize": 0, "dynamicBatching": None}
    model = from_service(isvc({"model": {"name": "m", "repository": "s3://b/m", "config": unbatched}}))
    assert (model.saturated_batch, model.max_queue) == (1, 0)


def test_settings_come_from_the_spec():
    spec = {
        "gpu": {"migProfile": "2g.20gb", "product": "H100-80GB"},
        "alerts": {"p99LatencySeconds": {"threshold": 0.25}},
        "monitoring": {"interval": "30s"},
        "variants": [{"name": "a", "weight": 75, "maxReplicas": 6}, {"name": "b", "weight": 25}],
        "autoscaling": {"mode": "none", "minReplicas": 1},
        "replicas": 8,
    }
    config = from_spec(isvc(spec))
    assert (config.slo_s, config.scrape_interval_s, config.weight) == (0.25, 30, 0.75)
    assert config.gpus_per_replica == pytest.approx(2 / 7)
    assert (config.policy, config.initial_replicas, config.bounds) == (None, 6, (1, 6))


# --- runs ------------------------------------------------------------------------------------


def test_light_load_is_answered_at_the_service_time():
    result = simulate(config(scaling=False), Trace("flat", (100.0,) * 300))
    assert result.rejected_pct == 0 and result.slo_minutes_pct == 100
    time = load_profile(DEFAULT_PROFILE).service_time
    # on the floor: the batch in progress (up to one batch time) plus its own
    assert 0.95 * time.floor_ms < result.p50_ms < 2 * time.floor_ms
    assert result.p50_ms < result.p99_ms < 2 * time.floor_ms + load_profile(DEFAULT_PROFILE).pauses.ms
    assert result.gpu_hours == pytest.approx(2 * 300 / 3600)


def test_a_10x_step_without_scaling_rejects_most_requests():
    cfg = config(scaling=False)
    result = simulate(cfg, step(0.5 * cfg.model.capacity_rps * 2))
    assert result.rejected_pct > 50 and result.scaling_events == 0
    assert not all(m.within_slo for m in result.minutes)


def test_with_the_policy_a_10x_step_recovers_after_start_up():
    cfg = config()
    result = simulate(cfg, step(0.5 * cfg.model.capacity_rps * 2))
    off = simulate(config(scaling=False), step(0.5 * cfg.model.capacity_rps * 2))
    assert result.rejected_pct < off.rejected_pct / 5
    # The step comes at minute 1; new replicas need a minute to load, and a scrape plus an
    # evaluation or two to be asked for. From minute 4 on nothing is rejected.
    assert [m.rejected for m in result.minutes[4:]] == [0] * (len(result.minutes) - 4)
    assert all(m.within_slo for m in result.minutes[4:])
    assert result.minutes[-1].ready >= 10 > result.minutes[0].replicas


def test_scales_in_after_the_load_drops():
    cfg = config(behavior={"scaleDown": FAST_DOWN})
    result = simulate(cfg, step(0.5 * cfg.model.capacity_rps * 2, during=300, after=600))
    peak = max(m.replicas for m in result.minutes)
    assert result.minutes[-1].replicas < peak / 2
    assert result.minutes[-1].rejected == 0


def test_the_loop_sees_metrics_only_after_a_scrape_and_the_delay():
    cfg = config()
    trace = step(0.5 * cfg.model.capacity_rps * 2, before=0, during=180)
    assert simulate(dataclasses.replace(cfg, metrics_delay_s=10), trace).minutes[0].replicas > 2
    # The first scrape (15 s) is readable from 115 s on; the loop evaluates at 105 s and 120 s.
    result = simulate(dataclasses.replace(cfg, metrics_delay_s=100), trace)
    assert [m.replicas for m in result.minutes[:2]] == [2, 2] and result.minutes[2].replicas > 2


def test_same_seed_same_run_other_seed_other_run():
    cfg, trace = config(), builtin("flash", 200)
    trace = Trace("flash", trace.rps[:900])
    first, again = simulate(cfg, trace), simulate(cfg, trace)
    assert first == again
    assert simulate(dataclasses.replace(cfg, seed=1), trace) != first


def test_figures_carry_the_keys_ci_gates_on():
    result = simulate(config(scaling=False), Trace("flat", (10.0,) * 60))
    assert set(result.figures()) == {"rejected_pct", "p50_ms", "p99_ms", "slo_minutes_pct", "gpu_hours", "fallback_pct"}


def test_a_slow_replica_with_a_short_queue_rejects_what_it_cannot_serve():
    # 8 per 512 ms: 15.6/s, with room in the queue for one batch (a queue shorter than the
    # batch caps the batch, as in Triton: test_a_queue_shorter_than_the_batch_caps_the_batch).
    model = ServiceModel(saturated_batch=8, max_queue=8, serving=serving(base_ms=500))
    cfg = dataclasses.replace(config(scaling=False), initial_replicas=1, model=model)
    result = simulate(cfg, Trace("x", (50.0,) * 60))
    assert result.rejected_pct == pytest.approx(100 * (1 - model.capacity_rps / 50), abs=3)
    assert not result.minutes[0].within_slo


def test_a_queue_shorter_than_the_batch_caps_the_batch():
    # Triton batches only what its queue holds: with room for one request, one at a time.
    model = ServiceModel(saturated_batch=8, max_queue=1, serving=serving(base_ms=500))
    cfg = dataclasses.replace(config(scaling=False), initial_replicas=1, model=model)
    result = simulate(cfg, Trace("x", (50.0,) * 60))
    one_at_a_time = 1 / model.service_s(1)
    assert result.rejected_pct == pytest.approx(100 * (1 - one_at_a_time / 50), abs=3)


# --- unbusy simulate -------------------------------------------------------------------------


class UsageError(Exception):
    """Stands in for unbusy.cli's: simulate raises the class it is given."""


def cli(*argv: str) -> str:
    root = argparse.ArgumentParser(prog="unbusy")
    sim_cli.add_parser(root.add_subparsers(dest="command"), UsageError)
    args = root.parse_args(["simulate", *argv])
    return args.run(args)


def manifest_file(tmp_path, **spec) -> str:
    path = tmp_path / "isvc.yaml"
    path.write_text(yaml.safe_dump(manifest(spec)))
    return str(path)


def test_simulate_prints_the_figures(tmp_path):
    trace = _csv(tmp_path, "seconds,rps\n0,100\n300,1000\n600,1000\n")
    out = cli("-f", manifest_file(tmp_path), "--trace", str(trace))
    assert out.startswith(f"resnet: trace {trace} (600 s), Unbusy's policy\n")
    for label in ("rejected", "p50 latency", "p99 latency", "minutes in SLO (p99 <= 1000 ms)", "GPU-hours"):
        assert f"  {label} " in out


def test_simulate_json_is_one_object_with_the_gate_keys(tmp_path):
    path, trace = manifest_file(tmp_path), str(_csv(tmp_path, "0,100\n60,100\n61,1000\n400,1000\n"))
    figures = json.loads(cli("-f", path, "--trace", trace, "--json", "--seed", "3"))
    assert set(figures) == {"rejected_pct", "p50_ms", "p99_ms", "slo_minutes_pct", "gpu_hours", "fallback_pct"}
    baseline = json.loads(cli("-f", path, "--trace", trace, "--json", "--seed", "3", "--no-scaling"))
    assert figures["rejected_pct"] < baseline["rejected_pct"]


def test_simulate_says_when_matplotlib_is_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(plot, "available", lambda: False)
    png = tmp_path / "out.png"
    cli("-f", manifest_file(tmp_path), "--trace", str(_csv(tmp_path, "0,10\n60,10\n")), "--png", str(png))
    assert "--png needs matplotlib" in capsys.readouterr().err and not png.exists()


def _csv(tmp_path, text: str):
    path = tmp_path / "trace.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("trace", "message"),
    [
        (
            "ramp",
            "--trace ramp: neither a built-in shape "
            "\\(step, diurnal, flash, sawtooth, onoff, diurnal2d, onoff-tall, onoff-quick, crowds, cron\\) "
            "nor a CSV file",
        ),
        ("/x.csv", "neither"),
    ],
)
def test_simulate_bad_trace_is_a_usage_error(tmp_path, trace, message):
    with pytest.raises(UsageError, match=message):
        cli("-f", manifest_file(tmp_path), "--trace", trace)


@pytest.mark.parametrize(
    ("text", "message"),
    [("kind: ConfigMap\n", "no InferenceService in it"), ("a: [", "not valid YAML"), (None, "No such file")],
)
def test_simulate_needs_an_inference_service(tmp_path, text, message):
    path = tmp_path / "isvc.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(UsageError, match=message):
        cli("-f", str(path))


def test_simulate_names_the_field_of_a_bad_spec(tmp_path):
    path = manifest_file(tmp_path, gpu={"migProfile": "9g.99gb", "product": "H100-80GB"})
    with pytest.raises(UsageError, match="spec.gpu.migProfile"):
        cli("-f", path)


def test_simulate_writes_a_png(tmp_path):  # matplotlib: the `plot` extra, part of the test extras
    png = tmp_path / "out.png"
    cli("-f", manifest_file(tmp_path), "--trace", str(_csv(tmp_path, "0,10\n120,10\n")), "--png", str(png))
    assert png.read_bytes().startswith(b"\x89PNG")


def test_the_first_episode_counts_the_first_minutes_in_a_row_with_refusals():
    from unbusy.sim.stats import Minute, SimResult

    def minute(i: int, rejected: float) -> Minute:
        return Minute(i, load_rps=100.0, replicas=1, ready=1, p99_ms=None, rejected=rejected, shed=0, within_slo=True)

    minutes = tuple(minute(i, r) for i, r in enumerate([0, 60, 120, 0, 600, 0]))
    result = SimResult(1.0, None, None, 100.0, 1.0, 0, minutes)
    assert result.first_episode_pct() == pytest.approx(100 * 180 / 36000)  # not the later 600
    assert dataclasses.replace(result, minutes=minutes[:1]).first_episode_pct() == 0.0
    # of its minutes, the one refusing 120 of 6,000 (2%) is outside the SLO whatever answered the rest
    assert result.first_episode() == minutes[1:3] and result.first_episode_misses() == 1
