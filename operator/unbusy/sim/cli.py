"""`unbusy simulate`: an InferenceService's scaling policy and model under a load trace."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from unbusy.api import KIND, InferenceService, SpecError, load
from unbusy.scaling.fleet import llm_pricing
from unbusy.scaling.tokens import TokenCosts
from unbusy.serving.llm import llm_profile_names, load_llm_profile, saturated_rps
from unbusy.serving.model import DEFAULT_FALLBACK_PROFILE, DEFAULT_PROFILE, from_service, load_profile, profile_names
from unbusy.sim import calibration, llm_calibration, plot
from unbusy.sim.config import SimConfig, from_spec
from unbusy.sim.engine import simulate as run_simulation
from unbusy.sim.llm import LlmFallback, LlmSimConfig, MixShift, simulate_llm
from unbusy.sim.llm_tokens import first_mix_costs, observer
from unbusy.sim.stats import SLO_SHARE, SimResult
from unbusy.sim.traces import SHAPES, Trace, named

# Built-in shapes start at this share of the starting fleet's capacity.
BASE_LOAD = 0.5


def add_parser(subparsers: argparse._SubParsersAction, usage_error: type[Exception]) -> argparse.ArgumentParser:
    """Register `simulate`; it raises `usage_error` for mistakes in its input, which the caller prints.

    The caller passes its error class rather than this module importing unbusy.cli: under
    `python -m unbusy.cli` that module runs as __main__, and a second import of it would
    define a second, uncaught UsageError.
    """
    command = subparsers.add_parser("simulate", help="run an InferenceService through a load trace in the simulator")
    command.add_argument("-f", "--filename", required=True, help="manifest; its first InferenceService is used")
    command.add_argument(
        "--trace", default="step", help=f"built-in shape ({', '.join(SHAPES)}) or a CSV file of seconds,rps"
    )
    command.add_argument("--base-rps", type=float, help="base rate of a built-in shape; default: half of the capacity")
    command.add_argument("--startup-seconds", type=float, default=60.0, help="image pull + model load per replica")
    command.add_argument("--metrics-delay-seconds", type=int, default=10, help="scrape to readable by the loop")
    command.add_argument(
        "--model",
        help=f"serving profile: a measured one ({', '.join(profile_names())}) or a file from `unbusy calibrate`; "
        f"default: the spec's model.serving, else {DEFAULT_PROFILE}",
    )
    command.add_argument(
        "--fallback-model",
        default=DEFAULT_FALLBACK_PROFILE,
        help="serving profile of spec.fallback's variant, which takes the traffic shed to it "
        f"(default {DEFAULT_FALLBACK_PROFILE})",
    )
    command.add_argument(
        "--llm-profile",
        help=f"simulate an LLM: an LLM serving profile ({', '.join(llm_profile_names()) or 'none measured yet'}) "
        "or a file from `unbusy calibrate` on an LLM sweep; request sizes from --mix",
    )
    command.add_argument(
        "--fallback-llm-profile",
        help="with --llm-profile and a spec.fallback: the LLM profile of the fallback variant, which takes the "
        "traffic shed to it (default: none, nothing is shed)",
    )
    command.add_argument(
        "--mix",
        default="conv",
        help="with --llm-profile: the request sizes, conv or code (Azure LLM trace 2023), a CSV of "
        "context_tokens,generated_tokens, or a->b for a mix moving from a to b over the trace (default conv)",
    )
    command.add_argument(
        "--ttft-slo-ms", type=float, default=2000.0, help="with --llm-profile: the TTFT p99 a minute must meet"
    )
    command.add_argument("--no-scaling", action="store_true", help="keep the starting replicas (a baseline)")
    command.add_argument("--seed", type=int, default=0, help="random seed of the arrivals")
    command.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    command.add_argument("--png", help="write load, replicas and p99 per minute to this PNG (needs matplotlib)")
    command.set_defaults(run=simulate, usage_error=usage_error)
    fitting = subparsers.add_parser(
        "calibrate", help="fit a serving profile to a real Triton's sweep (bench/calibrate) and check it"
    )
    fitting.add_argument(
        "csv",
        nargs="+",
        help="a rates CSV written by bench/calibrate (e.g. bench/data/h100-resnet50-rates.csv), or one of an LLM "
        "sweep's three CSVs written by bench/llmcal (<prefix>rates.csv, requests.csv, seconds.csv): an `llm` profile; "
        "several LLM sweeps of one engine fit together, a mix's segments taken from the last sweep that has it",
    )
    fitting.set_defaults(run=calibrate, usage_error=usage_error)
    return command


def calibrate(args: argparse.Namespace) -> str:
    """The `serving` block fitted to a sweep, and how the simulator replays the held-out rates."""
    if all(llm_calibration.is_llm_sweep(path) for path in args.csv):
        return calibrate_llm(args)
    if len(args.csv) > 1:
        raise args.usage_error(f"csv: one Triton sweep at a time; several only of LLM sweeps, got {' '.join(args.csv)}")
    try:
        sweep = calibration.read_sweep(args.csv[0])
        serving = calibration.rounded(calibration.fit(sweep))
    except (OSError, ValueError, KeyError) as error:
        raise args.usage_error(f"{args.csv[0]}: {error}") from None
    block = yaml.safe_dump({"serving": serving.model_dump(by_alias=True)}, sort_keys=False, width=200)
    runs = max((row.repeats for row in sweep.open), default=1)
    median = f" (the median of {runs} runs of each rate)" if runs > 1 else ""
    lines = [f"# unbusy calibrate {args.csv[0]}", f"# held-out rates, measured{median} / simulated:"]
    for row, replayed in calibration.check(sweep, serving):
        low, high = row.p99_range_ms
        spread = f" ({low:.1f}-{high:.1f} in {row.repeats} runs)" if row.repeats > 1 else ""
        lines.append(
            f"#   {row.offered_rps:7.0f} rps: served {row.served_rps:.0f} / {replayed.served_rps:.0f}, "
            f"503s {row.rejected_pct:.2f}% / {replayed.rejected_pct:.2f}%, p99 {row.p99_ms:.1f}{spread} / "
            f"{replayed.p99_ms:.1f} ms, GPU {row.gpu_util:.2f} / {replayed.gpu_util:.2f}"
        )
    return "\n".join(lines) + "\n" + block


def calibrate_llm(args: argparse.Namespace) -> str:
    """The `llm` profile fitted to all of an LLM sweep, and the validation: each held-out segment
    measured / replayed with the profile fitted without it."""
    try:
        sweep = llm_calibration.read_llm_sweep(*args.csv)
        profile = llm_calibration.rounded(llm_calibration.fit_llm(sweep, sweep.segments, sweep.steps))
        checks = llm_calibration.validation(sweep)
    except (OSError, ValueError, KeyError) as error:
        raise args.usage_error(f"{' '.join(args.csv)}: {error}") from None
    bounds = (
        f"served tokens/s within {100 * llm_calibration.SERVED_WITHIN:g}%, refused within "
        f"{llm_calibration.REFUSED_POINTS:g} points, TTFT p99 within {100 * llm_calibration.TTFT_WITHIN:g}%"
    )
    lines = [f"# unbusy calibrate {' '.join(args.csv)}"]
    if sweep.steps:
        busy, rms = llm_calibration.step_fit_error(profile.step, sweep.steps)
        count = sum(b.steps for b in sweep.steps)
        lines.append(
            f"# step time fitted on {count} logged steps ({len(sweep.steps)} bins): their busy time "
            f"{100 * busy:+.1f}%, rms error {rms:.2f} ms a step"
        )
    lines.append(f"# validation, measured / replayed ({bounds}):")
    for name, results in checks.items():
        inside = sum(c.within for c in results)
        lines.append(f"# {name}: {inside} of {len(results)} held-out segments within the bounds")
        lines += [f"#   {'ok ' if c.within else 'OUT'} {c.line()}" for c in results]
    return "\n".join(lines) + "\n" + yaml.safe_dump(profile.to_document(), sort_keys=False, width=200)


def _report(name: str, trace: Trace, policy: str, slo_s: float, result: SimResult) -> str:
    figures = result.figures()

    def show(value: float | None, unit: str) -> str:
        return "-" if value is None else f"{value:g} {unit}"

    rows = [
        ("rejected", show(figures["rejected_pct"], "%")),
        ("sent to the fallback variant", show(figures["fallback_pct"], "%")),
        ("p50 latency", show(figures["p50_ms"], "ms")),
        ("p99 latency", show(figures["p99_ms"], "ms")),
        (f"minutes in SLO (p99 <= {slo_s * 1000:g} ms)", show(figures["slo_minutes_pct"], "%")),
        ("GPU-hours (fallback's included)", show(figures["gpu_hours"], "")),
        ("scaling events", str(result.scaling_events)),
    ]
    header = f"{name}: trace {trace.name} ({trace.seconds} s), {policy}\n"
    return header + "".join(f"  {label:<34}{value.strip()}\n" for label, value in rows)


def _simulate_llm(args: argparse.Namespace, isvc: InferenceService, spec: SimConfig, policy: str) -> str:
    """An LLM profile under the trace, with the spec's scaling (the Triton model's settings aside),
    deciding on what the operator reads of an LLM: weighted tokens at the spec's llm.capacity (else
    the profile's on the first mix), each mix priced by the spec's llm.profile where it has one, the
    TTFT guard at --ttft-slo-ms."""
    name, llm = isvc.metadata.name, isvc.spec.model.llm
    try:
        profile = load_llm_profile(args.llm_profile)
    except (OSError, ValueError, TypeError) as error:
        raise args.usage_error(f"--llm-profile {error}") from None
    try:
        mix = MixShift.parse(args.mix)
    except (OSError, ValueError, KeyError) as error:
        raise args.usage_error(f"--mix {error}") from None
    fallback = None
    if args.fallback_llm_profile:
        if spec.fallback is None:
            raise args.usage_error("--fallback-llm-profile: the manifest has no spec.fallback to shed to")
        try:
            fallback_profile = load_llm_profile(args.fallback_llm_profile)
        except (OSError, ValueError, TypeError) as error:
            raise args.usage_error(f"--fallback-llm-profile {error}") from None
        fallback = LlmFallback(spec.fallback.spec, fallback_profile, spec.fallback.replicas)
    config = LlmSimConfig(
        profile=profile,
        mix=mix,
        policy=spec.policy,
        bounds=spec.bounds,
        initial_replicas=spec.initial_replicas,
        ttft_slo_s=args.ttft_slo_ms / 1000,
        weight=spec.weight,
        gpus_per_replica=spec.gpus_per_replica,
        startup_s=spec.startup_s,
        scrape_interval_s=spec.scrape_interval_s,
        metrics_delay_s=spec.metrics_delay_s,
        seed=spec.seed,
        fallback=fallback,
    )
    capacity = saturated_rps(profile, mix.token_mix(0, 1))
    base = args.base_rps or BASE_LOAD * capacity * config.initial_replicas / config.weight
    try:
        trace = named(args.trace, base)
    except (OSError, ValueError) as error:
        raise args.usage_error(str(error)) from None
    costs = (
        TokenCosts(llm.capacity.prompt_tokens_per_second, llm.capacity.output_tokens_per_second)
        if llm is not None
        else first_mix_costs(profile, mix, trace.seconds)
    )
    result = simulate_llm(config, trace, observe=observer(costs, args.ttft_slo_ms, pricing=llm_pricing(isvc)))
    if args.json:
        return json.dumps({**result.figures(), "minutes": [asdict(m) for m in result.minutes]}) + "\n"
    figures = result.figures()
    header = (
        f"{name}: LLM {args.llm_profile}, mix {mix}, trace {trace.name} ({trace.seconds} s), {policy}\n"
        f"  refused {figures['refused_pct']:g}%, sent to the fallback {figures['fallback_pct']:g}%, "
        f"TTFT p99 {figures['ttft_p99_ms']} ms, minutes in SLO "
        f"(TTFT p99 <= {args.ttft_slo_ms:g} ms, {100 * SLO_SHARE:g}% answered) {figures['slo_minutes_pct']:g}%, "
        f"GPU-hours (the fallback's included) {figures['gpu_hours']:g}, "
        f"tokens served {figures['prompt_tokens']:,} prompt + "
        f"{figures['output_tokens']:,} output, {result.scaling_events} scaling events\n"
    )
    rows = ["  minute  load rps  replicas  TTFT p99 ms  in SLO  refused  output tok/s"]
    for m in result.minutes:
        ttft = "-" if m.ttft_p99_ms is None else f"{m.ttft_p99_ms:.0f}"
        rows.append(
            f"  {m.minute:6d}  {m.load_rps:8.2f}  {m.replicas:8.2f}  {ttft:>11}  {'yes' if m.within_slo else 'NO':>6}"
            f"  {m.refused:7.0f}  {m.output_tokens / 60:12.0f}"
        )
    return header + "\n".join(rows) + "\n"


def _inference_service(path: str) -> dict[str, Any] | None:
    """The first InferenceService document of a manifest file."""
    documents = yaml.safe_load_all(Path(path).read_text())
    return next((d for d in documents if isinstance(d, dict) and d.get("kind") == KIND), None)


def _profile(name_or_path: str, option: str, usage_error: type[Exception]):
    try:
        return load_profile(name_or_path)
    except ValueError as error:  # neither a measured profile's name nor a readable serving block
        raise usage_error(f"{option} {error}") from None


def simulate(args: argparse.Namespace) -> str:
    UsageError = args.usage_error
    try:
        document = _inference_service(args.filename)
    except OSError as error:
        raise UsageError(f"{args.filename}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise UsageError(f"{args.filename}: not valid YAML: {error}") from None
    if document is None:
        raise UsageError(f"{args.filename}: no {KIND} in it")
    serving = _profile(args.model, "--model", UsageError) if args.model else None
    fallback = _profile(args.fallback_model, "--fallback-model", UsageError)
    try:
        isvc = load(document)
        model = from_service(isvc, serving)
        config = from_spec(
            isvc,
            scaling=not args.no_scaling,
            model=model,
            fallback_serving=fallback,
            startup_s=args.startup_seconds,
            metrics_delay_s=args.metrics_delay_seconds,
            seed=args.seed,
        )
    except SpecError as error:
        raise UsageError("\n".join(f"{args.filename}: {problem}" for problem in error.problems)) from None
    policy = "Unbusy's policy" if config.policy else f"fixed at {config.initial_replicas} replicas"
    if args.llm_profile:
        return _simulate_llm(args, isvc, config, policy)
    base = args.base_rps or BASE_LOAD * model.capacity_rps * config.initial_replicas / config.weight
    try:
        trace = named(args.trace, base)
    except (OSError, ValueError) as error:
        raise UsageError(str(error)) from None
    result = run_simulation(config, trace)
    if args.png:
        if plot.available():
            plot.write_png(result, f"{isvc.metadata.name}: {trace.name}, {policy}", args.png)
        else:
            print("note: --png needs matplotlib (pip install matplotlib); no PNG written", file=sys.stderr)
    if args.json:
        return json.dumps(result.figures()) + "\n"
    return _report(isvc.metadata.name, trace, policy, config.slo_s, result)
