"""sim/llm_calibration.py and `unbusy calibrate` on LLM sweeps: the fit recovers a known engine from
what bench/llmcal would measure of it, and the validation replays held-out segments."""

from __future__ import annotations

import functools
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from test_llm_serving import PROFILE

from unbusy.cli import main
from unbusy.serving.llm import TokenMix, llm_profile_names, load_llm_profile, saturated_rps
from unbusy.sim.llm import mix_sizes
from unbusy.sim.llm_calibration import (
    PROFILE_MIX,
    LlmSweep,
    StepBin,
    check_llm,
    fit_llm,
    fit_step_time,
    is_llm_sweep,
    read_llm_sweep,
    read_steps,
    rounded,
    simulated_sweep,
    split_mixes,
    split_rates,
    split_step_rates,
    validation,
    write_llm_sweep,
    write_steps,
)

ROOT = Path(__file__).resolve().parents[2]
FRACTIONS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0)


@functools.cache
def sweep() -> LlmSweep:
    """What bench/llmcal would record of PROFILE (with a waiting limit, so overload refuses)."""
    mixes = {"conv": mix_sizes("conv"), "code": mix_sizes("code")}
    return simulated_sweep(replace(PROFILE, max_waiting=64), mixes, FRACTIONS, 120)


def test_the_fit_recovers_the_engine_it_was_measured_on():
    fitted = fit_llm(sweep(), sweep().segments)
    assert fitted.step.base_ms == pytest.approx(PROFILE.step.base_ms, rel=0.05)
    assert fitted.step.per_prompt_token_ms == pytest.approx(PROFILE.step.per_prompt_token_ms, rel=0.05)
    assert (fitted.kv_cache_tokens, fitted.max_batched_tokens, fitted.max_waiting) == (200_000, 8192, 64)
    # Per sequence and per KV token move together with the running count: only their sum is seen, in
    # the capacity of each mix.
    for mix in ("conv", "code"):
        token_mix = TokenMix.from_sizes(list(mix_sizes(mix)))
        assert saturated_rps(fitted, token_mix) == pytest.approx(saturated_rps(PROFILE, token_mix), rel=0.03)


def test_held_out_rates_replay_within_the_bounds():
    """Fit on half the rates of each mix, replay the other half: the issue's bounds (served tokens/s 10%,
    refused share 2 points, TTFT p99 25% where nothing was refused: past that the p99 is the queue's)."""
    data = sweep()
    fit, held = split_rates(data)
    checks = check_llm(fit_llm(data, fit), held)
    assert len(checks) == len(held) == 8
    for check in checks:
        assert abs(check.served_error) <= 0.10, check.line()
        assert abs(check.refused_points) <= 2, check.line()
        if check.measured.refused_pct == 0:
            assert abs(check.ttft_error) <= 0.25, check.line()


def test_a_fit_on_conv_predicts_the_capacity_for_code():
    """Across mixes the capacity carries over from conv (decode 17% of its time) to code; not from code
    (its 27-token outputs leave decode 2% of the time, too little to see its cost: its replay of conv
    past capacity serves 11-19% too much, said in the report rather than tested)."""
    data = sweep()
    fitted = fit_llm(data, split_mixes(data, "conv")[0])
    code = TokenMix.from_sizes(list(mix_sizes("code")))
    assert saturated_rps(fitted, code) == pytest.approx(saturated_rps(PROFILE, code), rel=0.05)


def test_the_csvs_round_trip_and_the_settings_are_read_from_an_engine_line(tmp_path):
    write_llm_sweep(sweep(), tmp_path / "x-llm-")
    read = read_llm_sweep(tmp_path / "x-llm-seconds.csv")
    assert [s.name for s in read.segments] == [s.name for s in sweep().segments]
    assert [len(s.requests) for s in read.segments] == [len(s.requests) for s in sweep().segments]
    assert read.settings()["kv_cache_tokens"] == 200_000
    engine = "transformers ContinuousBatchingManager; num_blocks 1562, max_batch_tokens 4096, kv_tokens 399872"
    line = LlmSweep("h", {"engine": engine, "segments": "then at most 4 s to drain"}, ())
    assert line.settings() == {"kv_cache_tokens": 399872, "max_batched_tokens": 4096}
    assert line.drain_s == 4
    with pytest.raises(ValueError, match="kv_cache_tokens"):
        LlmSweep("h", {"engine": "max_batch_tokens 4096"}, ()).settings()


def test_unbusy_calibrate_prints_the_validation_and_an_llm_profile_that_simulate_runs(tmp_path, capsys):
    write_llm_sweep(sweep(), tmp_path / "x-llm-")
    assert main(["calibrate", str(tmp_path / "x-llm-rates.csv")]) == 0
    out = capsys.readouterr().out
    assert "# half the rates: " in out and "# fit on conv: " in out and "# fit on code: " in out
    profile = tmp_path / "p.yaml"
    profile.write_text(out)
    assert load_llm_profile(str(profile)).kv_cache_tokens == 200_000
    argv = ["simulate", "-f", str(ROOT / "examples/llm-mig-auto.yaml"), "--llm-profile", str(profile)]
    trace = tmp_path / "trace.csv"
    trace.write_text("seconds,rps\n0,2\n180,6\n")
    assert main([*argv, "--mix", "code->conv", "--trace", str(trace), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert len(figures["minutes"]) == 3 and figures["gpu_hours"] > 0 and figures["output_tokens"] > 0
    assert main([*argv, "--mix", "code->conv", "--trace", str(trace)]) == 0
    table = capsys.readouterr().out
    assert "mix code->conv" in table and "TTFT p99 ms" in table and "GPU-hours" in table
    assert main([*argv, "--mix", "chat"]) == 1
    assert "--mix mix 'chat'" in capsys.readouterr().err


def logged_steps(step, segments) -> list[StepBin]:
    """What bench/llmcal's step log would hold of an engine whose steps take `step` (+-5%, at random):
    per segment, bins of prefill tokens x decode requests x their contexts, and an engine profile's bins."""
    bins, k, noise = [], 0, random.Random(0)
    for mix, kind, rate in [(PROFILE_MIX, "decode", 0.0), *((s.mix, s.kind, s.offered_rps) for s in segments)]:
        for prefill in (0, 128, 2048):
            for decode in (0, 1, 16, 200):
                for context in (300, 1500) if decode else (0,):
                    if prefill or decode:
                        k += 1
                        took = 1000 * step.seconds(prefill, decode, decode * context) * noise.uniform(0.95, 1.05)
                        bins.append(StepBin(mix, kind, rate, 10 + k % 7, took, prefill, decode, decode * context))
    return bins


def test_the_step_time_is_regressed_on_the_logged_steps_and_read_from_steps_csv(tmp_path):
    """A run with a steps.csv: the step time comes from its logged steps (all six terms, the decode ones apart
    in steps that prefill; the aggregates cannot separate them), not from the busy seconds."""
    other = replace(
        PROFILE.step, per_prompt_token_ms=0.02, per_kv_token_ms=0.0002, mixed_sequence_ms=0.3, mixed_kv_token_ms=0.0001
    )
    steps = logged_steps(other, sweep().segments)
    fitted = fit_step_time(steps)
    names = ("base_ms", "per_prompt_token_ms", "per_sequence_ms", "per_kv_token_ms", "mixed_sequence_ms")
    for name in (*names, "mixed_kv_token_ms"):
        assert getattr(fitted, name) == pytest.approx(getattr(other, name), rel=0.05), name
    write_llm_sweep(sweep(), tmp_path / "x-llm-")
    write_steps(steps, tmp_path / "x-llm-steps.csv", sweep().header)
    read = read_llm_sweep(tmp_path / "x-llm-rates.csv")
    assert read.steps == tuple(steps)
    profile = fit_llm(read, read.segments, read.steps)
    assert profile.step == fitted and "logged steps" in profile.measured
    assert fit_llm(read, read.segments).step == fit_llm(sweep(), sweep().segments).step  # no steps: aggregates
    assert read_steps(tmp_path / "none.csv") == ()


def test_the_engine_profiles_mixed_steps_teach_a_fit_on_code_what_a_mixed_step_costs(tmp_path):
    """bench/llmcal's mixed-step grid (prompts of P tokens beside D sequences decoding after C-token prompts,
    streaming and quiet, `profile` rows with the harness's extra columns): a fit on code's saturated steps alone
    prices a conversation's mixed step (deep contexts, which code's steps lack) wrong; with the grid's bins read
    from steps.csv it recovers what a sequence and a KV token cost in a mixed step."""
    truth = replace(PROFILE.step, per_prompt_token_ms=0.005, mixed_sequence_ms=0.4, mixed_kv_token_ms=0.0001)
    noise = random.Random(1)

    def logged(mix, kind, offered, prefill, decode, kv, steps=20):
        took = 1000 * truth.seconds(prefill, decode, kv) * noise.uniform(0.97, 1.03)
        return StepBin(mix, kind, offered, steps, took, prefill, decode, kv)

    profile = [logged(PROFILE_MIX, "prefill", p, p, 0, 0) for p in (128, 512, 2048)]
    profile += [logged(PROFILE_MIX, "decode", d, 0, d, 40 * d) for d in (1, 8, 128)]
    code = [logged("code", "sweep", r, 2048, d, 300 * d) for r, d in ((10, 8), (20, 16), (30, 24), (40, 32))]
    grid = [
        logged(PROFILE_MIX, f"{kind}-c{c}", d, p, d, (c + 30) * d)
        for c in (512, 2048)
        for kind in ("mixed", "mixed-quiet")
        for p in (256, 1024, 2048)
        for d in (8, 32, 128)
    ]
    columns = ["mix", "segment", "offered_rps", "steps", "step_ms_mean", "prefill_tokens_mean"]
    columns += ["decode_requests_mean", "decode_kv_tokens_mean", "responses_mean", "gap_ms_mean"]
    path = tmp_path / "x-llm-steps.csv"
    lines = ["# device: CPU", ",".join(columns)]
    for b in [*profile, *code, *grid]:
        figures = (b.mix, b.kind, b.offered_rps, b.steps, b.step_ms, b.prefill_tokens, b.decode_requests)
        lines.append(",".join(map(str, (*figures, b.decode_kv_tokens, 3.5, 0.2))))
    path.write_text("\n".join(lines) + "\n")
    read = read_steps(path)
    assert read == (*profile, *code, *grid)
    grid_kinds = {"mixed-c512", "mixed-quiet-c512", "mixed-c2048", "mixed-quiet-c2048"}
    assert {b.kind for b in read if b.mix == PROFILE_MIX} == {"prefill", "decode", *grid_kinds}
    on_code = [b for b in read if b.mix in ("code", PROFILE_MIX)]  # what a fit on code takes
    with_grid = fit_step_time(on_code)
    for name in ("mixed_sequence_ms", "mixed_kv_token_ms", "per_prompt_token_ms"):
        assert getattr(with_grid, name) == pytest.approx(getattr(truth, name), rel=0.1), name
    without = fit_step_time([b for b in on_code if b.kind not in grid_kinds])
    conv_step = (1024, 64, 64 * 1100)  # a conversation's mixed step: deep contexts, which code's steps lack
    error = lambda step: abs(step.seconds(*conv_step) / truth.seconds(*conv_step) - 1)  # noqa: E731
    assert error(with_grid) < 0.05 < error(without)


def test_logged_steps_split_as_the_segments():
    """Half the rates: each mix's logged steps of its first, third, ... sweep rate, and the engine profile's;
    a fit on one mix takes that mix's and the profile's."""
    steps = logged_steps(PROFILE.step, sweep().segments)
    half = split_step_rates(steps)
    fit, _ = split_rates(sweep())
    assert {(b.mix, b.offered_rps) for b in half if b.mix != PROFILE_MIX} == {(s.mix, s.offered_rps) for s in fit}
    assert {b.mix for b in half} == {PROFILE_MIX, "conv", "code"}


def test_the_cpu_runs_step_log_fits_inside_its_segments():
    """bench/data/cpu-llm-tiny-steps.csv (the harness on the CPU): every segment logged its steps, whose
    time together fits inside the segment and its drain; `unbusy calibrate` fits the step time on them."""
    data = read_llm_sweep(ROOT / "bench/data/cpu-llm-tiny-")
    for segment in data.segments:
        logged = [
            b for b in data.steps if (b.mix, b.kind, b.offered_rps) == (segment.mix, segment.kind, segment.offered_rps)
        ]
        assert logged, segment.name
        # the window closes once the drain's cancellations returned: up to a few tenths of a second later
        assert sum(b.steps * b.step_ms for b in logged) / 1000 <= segment.seconds + segment.drain_s + 0.5, segment.name
    grid = {f"{kind}-c{c}" for kind in ("mixed", "mixed-quiet") for c in (64, 160)}
    assert {b.kind for b in data.steps if b.mix == PROFILE_MIX} == {"prefill", "decode", "decode-context", *grid}
    assert "logged steps" in fit_llm(data, data.segments, data.steps).measured


def test_a_triton_sweep_is_still_read_as_one():
    assert not is_llm_sweep(ROOT / "bench/data/h100-resnet18-rates.csv")


# --- the measured sweeps (bench/llmcal on the H100) --------------------------------------------

# Per model: the step-log run (8-s segments of both mixes and the engine profile: its logged steps), the
# first run (code, and conv in 15-s segments) and conv again in 40-s segments, which replaces the first run's
# conv (conversations live 5-20 s: a 15-s segment is a transient); the later runs' segments replace the
# step-log run's, its steps stay.
MEASURED = {
    "llm-h100-llama-1b": ("h100-llm-llama-1b-steps-", "h100-llm-llama-1b-", "h100-llm-llama-1b-conv-long-"),
    "llm-h100-llama-8b": ("h100-llm-llama-8b-steps-", "h100-llm-llama-8b-", "h100-llm-llama-8b-conv-long-"),
}
# The held-out segments that replay within every bound (served tokens/s 10%, refused 2 points, TTFT p99 25%),
# per validation, asserted to be exactly these so that the list stays what the model gets right
# (bench/llmcal/README.md, "The simulator against these runs", has the misses and why).
WITHIN = {
    "llm-h100-llama-1b": {
        "half the rates": {
            "code sweep 27.8217 rps", "conv sweep 6.5 rps", "conv sweep 11.7 rps", "conv sweep 16.25 rps",
            "code step 83.4652 rps", "conv step 19.5 rps",
        },
        "fit on code": set(),
        "fit on conv": {"code sweep 27.8217 rps"},
    },
    "llm-h100-llama-8b": {
        "half the rates": {
            "code sweep 6.65368 rps", "code sweep 11.9766 rps", "code sweep 26.6147 rps", "conv sweep 2.25 rps",
            "conv sweep 4.05 rps", "code step 19.961 rps", "conv step 6.75 rps",
        },
        "fit on code": {
            "conv sweep 1.125 rps", "conv sweep 2.25 rps", "conv sweep 3.375 rps", "conv sweep 4.05 rps",
            "conv sweep 4.5 rps", "conv sweep 5.625 rps", "conv sweep 6.75 rps",
        },
        "fit on conv": {
            "code sweep 6.65368 rps", "code sweep 9.98052 rps", "code sweep 11.9766 rps", "code sweep 13.3074 rps",
            "code sweep 19.961 rps", "code sweep 26.6147 rps", "code step 19.961 rps",
        },
    },
}  # fmt: skip


@functools.cache
def measured_sweep(name: str) -> LlmSweep:
    return read_llm_sweep(*(ROOT / "bench/data" / prefix for prefix in MEASURED[name]))


def test_a_later_sweep_replaces_a_mix_of_an_earlier_one():
    data = measured_sweep("llm-h100-llama-1b")
    conv = [s for s in data.segments if s.mix == "conv"]
    assert {s.seconds for s in conv if s.kind == "sweep"} == {40} and len(conv) == 8
    assert {s.drain_s for s in conv} == {12} and {s.drain_s for s in data.segments if s.mix == "code"} == {3}
    assert len([s for s in data.segments if s.mix == "code"]) == 9
    # the step-log run's segments are replaced, its logged steps (and its engine profile's) stay
    assert {b.mix for b in data.steps} == {PROFILE_MIX, "conv", "code"} and sum(b.steps for b in data.steps) == 16327


@pytest.mark.parametrize("name", MEASURED)
def test_the_committed_llm_profiles_are_what_calibrate_fits(name):
    data = measured_sweep(name)
    assert name in llm_profile_names()
    assert load_llm_profile(name) == rounded(fit_llm(data, data.segments, data.steps))


@pytest.mark.parametrize("name", MEASURED)
def test_measured_validation_replays_these_segments_within_the_bounds(name):
    """The issue's validation on the H100 runs (fit on half the rates, on each mix; the step time from the
    logged steps split as the segments): exactly the segments of WITHIN replay within every bound."""
    checks = validation(measured_sweep(name))
    assert {split: {c.segment.name for c in found if c.within} for split, found in checks.items()} == WITHIN[name], {
        split: [c.line() for c in found] for split, found in checks.items()
    }


def test_the_step_time_prices_what_a_step_carries_as_the_h100_logged_it():
    """On the 1B's logged steps: a decoding sequence costs far more in a step that also prefills than in a
    decode-only one, and a decode-only step of 256 short sequences (the engine profile: 7.6 ms logged) is
    priced within 50% (the one-price fit gave 24.6 ms)."""
    data = measured_sweep("llm-h100-llama-1b")
    step = fit_llm(data, data.segments, data.steps).step
    assert step.mixed_sequence_ms > 5 * step.per_sequence_ms
    profile = [b for b in data.steps if b.mix == PROFILE_MIX and b.kind == "decode" and b.decode_requests == 256]
    logged = sum(b.steps * b.step_ms for b in profile) / sum(b.steps for b in profile)
    modelled = 1000 * step.seconds(0, 256, profile[0].decode_kv_tokens)
    assert logged == pytest.approx(7.58, abs=0.01) and modelled == pytest.approx(logged, rel=0.5)


def test_unbusy_simulate_sheds_an_llm_to_its_fallback_llm_profile(tmp_path, capsys):
    """`unbusy simulate --llm-profile --fallback-llm-profile` on a manifest with spec.fallback: one
    replica at maxReplicas under 2x its load sheds to the fallback; without the option nothing is."""
    document = yaml.safe_load((ROOT / "examples/llm-vllm.yaml").read_text())
    spec = document["spec"]
    spec["variants"] = [
        {"name": "main", "weight": 100},
        {"name": "small", "weight": 0, "modelRepository": "pvc://model-store/llm-small", "minReplicas": 2},
    ]
    spec["fallback"] = {"variant": "small", "rpsPerReplica": 10, "maxPercent": 70, "shedAbovePercent": 80}
    spec["autoscaling"]["maxReplicas"] = 1
    manifest, profile = tmp_path / "llm.yaml", tmp_path / "profile.yaml"
    manifest.write_text(yaml.safe_dump(document))
    profile.write_text(yaml.safe_dump(PROFILE.to_document()))
    capacity = saturated_rps(PROFILE, TokenMix.from_sizes(list(mix_sizes("conv"))))
    trace = tmp_path / "trace.csv"
    trace.write_text(f"seconds,rps\n0,{2 * capacity:.3f}\n300,{2 * capacity:.3f}\n")
    argv = ["simulate", "-f", str(manifest), "--llm-profile", str(profile), "--trace", str(trace), "--json"]
    assert main([*argv, "--fallback-llm-profile", str(profile)]) == 0
    shed = json.loads(capsys.readouterr().out)
    assert main(argv) == 0
    alone = json.loads(capsys.readouterr().out)
    assert shed["fallback_pct"] > 30 and alone["fallback_pct"] == 0
    assert shed["slo_minutes_pct"] > alone["slo_minutes_pct"]
    document["spec"].pop("fallback")
    manifest.write_text(yaml.safe_dump(document))
    assert main([*argv, "--fallback-llm-profile", str(profile)]) == 1
    assert "--fallback-llm-profile: the manifest has no spec.fallback" in capsys.readouterr().err
