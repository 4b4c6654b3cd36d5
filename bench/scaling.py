"""Scaling benchmark: Unbusy's policy beside an HPA on CPU, a KEDA queue scaler and an oracle.

    .venv/bin/python bench/scaling.py                       # all built-in shapes, a table per trace
    .venv/bin/python bench/scaling.py --trace flash --json  # one shape (or a CSV of seconds,rps), as JSON
    .venv/bin/python bench/scaling.py --smoke --json        # a short step, for CI (a few seconds)
    .venv/bin/python bench/scaling.py --trace step --scrape-seconds 5 --metrics-delay-seconds 3 --interval-seconds 5
                                                            # the same with a faster metrics pipeline
    .venv/bin/python bench/scaling.py --trace onoff --refusal-prices 0,0.003,0.03 --fixed-replicas 4,5
                                                            # beside: other refusalPriceGpuSeconds, fixed fleets

Per trace, the four policies drive four fleets in the simulator with the same spec (model,
SLO, bounds, start-up), trace and seed; the engine's RNG draws only the arrivals, so every
fleet receives the very same requests (checked below). The policies (sim/baselines.py):
- unbusy: policy.decide with the manifest's autoscaling, exactly as the operator runs it;
- unbusy+fallback (when the manifest declares spec.fallback): the same, and traffic the ready
  replicas cannot serve is shed to the fallback variant's replicas (--fallback-model serves it);
- hpa-cpu: an HPA on CPU at 70% with the HPA's defaults, CPU modelled from served throughput;
- keda-queue: KEDA's Prometheus scaler on the pending-request sum as an AverageValue of the
  spec's queueDepthPerReplica, polled every 30 s, with the HPA defaults KEDA's HPA gets;
- reactive-floor: knows the load of the present, exactly and at once, and orders what it needs
  (replicas still take the start-up to serve): the fewest rejections any policy that reacts
  rather than predicts can reach; what it rejects is out of reach without a forecast;
- oracle: knows the trace and orders the replicas the load `startup` seconds ahead needs, at
  the spec's gpuUtilizationPercent of capacity (80% without one): the GPU-hours floor.
- unbusy+seasonal (on diurnal2d only, two compressed days): unbusy with autoscaling.seasonal on,
  a 3600 s period (the shape's day) and a 120 s lead (two start-ups); a second table shows day 2
  alone, where the floor sees day 1. unbusy+seasonal+fallback: both.
Under each table, the reactive floor's first minutes in a row with refusals: what no policy that
starts at the same fleet and adds replicas only for load it has seen avoids, in requests and in
minutes outside the SLO. bench/gpu_hours.py splits Unbusy's GPU-hours above the oracle by cause.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

import llm_scaling  # noqa: E402
from tables import markdown  # noqa: E402

from unbusy.api import KIND, load  # noqa: E402
from unbusy.serving.llm import llm_profile_names, load_llm_profile  # noqa: E402
from unbusy.serving.model import DEFAULT_FALLBACK_PROFILE, DEFAULT_PROFILE, from_service, load_profile, profile_names  # noqa: E402
from unbusy.sim.baselines import HPA_SYNC_S, HpaCpu, KedaQueue, Oracle  # noqa: E402
from unbusy.sim.config import SimConfig, from_spec  # noqa: E402
from unbusy.sim.engine import Policy, simulate  # noqa: E402
from unbusy.sim.llm import MixShift  # noqa: E402
from unbusy.sim.stats import SLO_SHARE, SimResult  # noqa: E402
from unbusy.sim.traces import SHAPES, Trace, builtin, named  # noqa: E402

DEFAULT_MANIFEST = ROOT / "examples" / "demand-operator.yaml"
BASE_LOAD = 0.5  # built-in shapes start at this share of the starting fleet's capacity (as `unbusy simulate`)
ORACLE_UTILISATION = 0.8  # without a GPU target in the spec
# The shapes of several compressed days (3600 s each), and the seasonal floor run beside them.
DAILY = {"diurnal2d"}
DAY_S = 3600
SEASONAL = {"enabled": True, "periodSeconds": DAY_S, "leadSeconds": 120}


def smoke_trace(base: float) -> Trace:
    """A 10x step, short: 2 min at base, 5 min at 10x, 3 min back at base."""
    return Trace("smoke-step", (base,) * 120 + (10 * base,) * 300 + (base,) * 180)


def _seconds_list(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def _numbers(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


def with_pipeline(config: SimConfig, scrape_seconds: int | None, interval_seconds: int | None) -> SimConfig:
    """The run's metrics pipeline where the command line changes it (scrape, scaling tick)."""
    if scrape_seconds:
        config = replace(config, scrape_interval_s=scrape_seconds)
    if interval_seconds and config.policy is not None:
        config = replace(config, policy=config.policy.model_copy(update={"interval_seconds": interval_seconds}))
    return config


def with_price(config: SimConfig, price: float) -> SimConfig:
    """The same run with another capacity.refusalPriceGpuSeconds."""
    policy = config.policy
    capacity = policy.capacity.model_copy(update={"refusal_price_gpu_seconds": price})
    return replace(config, policy=policy.model_copy(update={"capacity": capacity}))


def read_service(path: Path):
    documents = yaml.safe_load_all(path.read_text())
    document = next((d for d in documents if isinstance(d, dict) and d.get("kind") == KIND), None)
    if document is None:
        raise SystemExit(f"{path}: no {KIND} in it")
    return load(document)


def contenders(
    config: SimConfig, trace: Trace, prices: tuple[float, ...] = (), fixed: tuple[int, ...] = ()
) -> dict[str, tuple[SimConfig, Policy]]:
    """Each policy with the config it runs under (the baselines bring their own Autoscaling).

    `prices`: Unbusy again with each of these refusalPriceGpuSeconds; `fixed`: fleets of these
    many replicas, scaling off."""
    from unbusy.scaling.policy import decide

    spec = config.policy
    if spec is None:
        raise SystemExit("the manifest's autoscaling is off (mode none): nothing to compare")
    capacity = config.model.capacity_rps
    gpu_target = spec.targets.gpu_utilization_percent
    alone = replace(config, fallback=None)
    hpa = HpaCpu(capacity)
    keda = KedaQueue(spec.targets.queue_depth_per_replica or 8)
    oracle = Oracle(
        trace=trace,
        weight=config.weight,
        capacity_rps=capacity,
        utilisation=gpu_target / 100 if gpu_target else ORACLE_UTILISATION,
        lookahead_s=config.startup_s,
        interval_s=HPA_SYNC_S,
    )
    shedding = {"unbusy+fallback": (config, decide)} if config.fallback else {}
    if trace.name in DAILY:
        floored = spec.model_copy(update={"seasonal": type(spec.seasonal).model_validate(SEASONAL)})
        shedding["unbusy+seasonal"] = (replace(alone, policy=floored), decide)
        if config.fallback:
            shedding["unbusy+seasonal+fallback"] = (replace(config, policy=floored), decide)
    for price in prices:
        shedding[f"unbusy, {price:g} GPU-s a refusal"] = (with_price(alone, price), decide)
    for replicas in fixed:
        shedding[f"fixed {replicas}"] = (replace(alone, policy=None, initial_replicas=replicas), decide)
    oracle_config = replace(alone, policy=spec.model_copy(update={"interval_seconds": HPA_SYNC_S}))
    return {
        "unbusy": (alone, decide),
        **shedding,
        "hpa-cpu": (replace(alone, policy=hpa.autoscaling), hpa),
        "keda-queue": (replace(alone, policy=keda.autoscaling), keda),
        "reactive-floor": (oracle_config, replace(oracle, lookahead_s=0)),
        "oracle": (oracle_config, oracle),
    }


def run_trace(config: SimConfig, trace: Trace, **more: tuple) -> dict[str, SimResult]:
    results = {name: simulate(cfg, trace, policy) for name, (cfg, policy) in contenders(config, trace, **more).items()}
    loads = {name: tuple(m.load_rps for m in r.minutes) for name, r in results.items()}
    assert len(set(loads.values())) == 1, "the policies did not see the same arrivals"
    return results


def rows(trace: Trace, results: dict[str, SimResult]) -> list[dict[str, Any]]:
    return [{"policy": name, "trace": trace.name, **result.figures()} for name, result in results.items()]


def from_minute(result: SimResult, first: int) -> SimResult:
    """The figures of the minutes from `first` on (day 2 of a daily shape); p50/p99 left out."""
    minutes = result.minutes[first:]
    arrived = sum(m.load_rps * 60 for m in minutes)
    return replace(
        result,
        rejected_pct=100 * sum(m.rejected for m in minutes) / arrived if arrived else 0.0,
        fallback_pct=100 * sum(m.shed for m in minutes) / arrived if arrived else 0.0,
        p50_ms=None,
        p99_ms=None,
        slo_minutes_pct=100 * sum(m.within_slo for m in minutes) / len(minutes) if minutes else 100.0,
        gpu_hours=result.gpu_hours * sum(m.replicas for m in minutes) / sum(m.replicas for m in result.minutes),
        minutes=minutes,
    )


def footer(floor: SimResult, initial_replicas: int) -> str:
    """The reactive floor's first refusals: in requests, and in minutes outside the SLO."""
    misses, minutes = floor.first_episode_misses(), len(floor.minutes)
    return (
        f"\nThe reactive floor's first refusals in a row: {floor.first_episode_pct():.3f}% of the requests, "
        f"{misses} of its minutes refusing over {1 - SLO_SHARE:.0%}: out of reach for any policy that starts at "
        f"{initial_replicas} replicas and adds none before it has seen load that needs them, which so has "
        f"at most {100 * (minutes - misses) / minutes:.1f}% of the minutes within the SLO.\n"
    )


def table(trace: Trace, config: SimConfig, results: dict[str, SimResult], title: str = "") -> str:
    oracle = results["oracle"]

    def show(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    head = (
        f"trace {trace.name} ({trace.seconds} s), model {config.model.serving.measured.split(':')[0]} "
        f"({config.model.capacity_rps:.0f} rps/replica), SLO p99 <= {config.slo_s * 1000:g} ms, "
        f"start-up {config.startup_s:g} s, bounds {config.bounds[0]}..{config.bounds[1]}{title}\n"
    )
    header = ("policy", "rejected %", "to fallback %", "p99 ms", "SLO min %", "GPU-h", "GPU-h / oracle")
    lines = [header]
    for name, r in results.items():
        ratio = r.gpu_hours / oracle.gpu_hours if oracle.gpu_hours else math.nan
        lines.append(
            (
                name,
                f"{r.rejected_pct:.3f}",
                f"{r.fallback_pct:.2f}",
                show(r.p99_ms, ".1f"),
                f"{r.slo_minutes_pct:.1f}",
                f"{r.gpu_hours:.2f}",
                f"{ratio:.2f}x",
            )
        )
    foot = footer(results["reactive-floor"], config.initial_replicas)
    return head + "\n" + markdown(lines) + "\n" + foot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--filename", type=Path, default=DEFAULT_MANIFEST, help="InferenceService manifest")
    parser.add_argument("--trace", help=f"built-in shape ({', '.join(SHAPES)}) or CSV of seconds,rps; default: all")
    parser.add_argument("--base-rps", type=float, help="base rate of a built-in shape; default: half of the capacity")
    parser.add_argument(
        "--model", default=DEFAULT_PROFILE, help=f"serving profile ({', '.join(profile_names())}) or a calibrate file"
    )
    parser.add_argument(
        "--fallback-model",
        default=DEFAULT_FALLBACK_PROFILE,
        help="serving profile of spec.fallback's variant (if declared)",
    )
    parser.add_argument("--startup-seconds", type=float, default=60.0, help="image pull + model load per replica")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the arrivals")
    parser.add_argument(
        "--scrape-seconds", type=int, help="Prometheus scrape interval (default: the spec's monitoring.interval)"
    )
    parser.add_argument(
        "--metrics-delay-seconds", type=int, default=10, help="from scrape to readable by the scaling loop"
    )
    parser.add_argument(
        "--interval-seconds", type=int, help="Unbusy's evaluation tick (default: autoscaling.intervalSeconds)"
    )
    parser.add_argument(
        "--refusal-prices",
        type=_numbers,
        default=(),
        help="also run Unbusy with each of these refusalPriceGpuSeconds (comma-separated): the frontier",
    )
    parser.add_argument(
        "--fixed-replicas", type=_seconds_list, default=(), help="also run fixed fleets of these many replicas"
    )
    parser.add_argument(
        "--llm-profile", help=f"an LLM serving profile ({', '.join(llm_profile_names())}) or file: bench an LLM"
    )
    parser.add_argument("--mix", help="with --llm-profile: the request mix (conv, code, a->b); default per trace")
    parser.add_argument(
        "--ttft-slo-ms", type=float, help="with --llm-profile: the TTFT p99 SLO (default: see llm_scaling)"
    )
    parser.add_argument("--smoke", action="store_true", help="one short step trace (CI)")
    parser.add_argument("--json", action="store_true", help="print a list of objects, one per trace and policy")
    args = parser.parse_args(argv)
    if args.llm_profile:
        return llm_main(args)

    isvc = read_service(args.filename)
    config = from_spec(
        isvc,
        fallback_serving=load_profile(args.fallback_model),
        model=from_service(isvc, load_profile(args.model)),
        startup_s=args.startup_seconds,
        seed=args.seed,
        metrics_delay_s=args.metrics_delay_seconds,
    )
    config = with_pipeline(config, args.scrape_seconds, args.interval_seconds)
    base = args.base_rps or BASE_LOAD * config.model.capacity_rps * config.initial_replicas / config.weight
    if args.smoke:
        traces = [smoke_trace(base)]
    elif args.trace is None:
        traces = [builtin(name, base) for name in SHAPES]
    else:
        try:
            traces = [named(args.trace, base)]
        except ValueError as error:
            parser.error(str(error))

    every: list[dict[str, Any]] = []
    for trace in traces:
        results = run_trace(config, trace, prices=args.refusal_prices, fixed=args.fixed_replicas)
        if args.json:
            every += rows(trace, results)
        else:
            print(table(trace, config, results))
            if trace.name in DAILY:
                day2 = {name: from_minute(r, DAY_S // 60) for name, r in results.items()}
                print(table(trace, config, day2, title=", day 2 only"))
    if args.json:
        print(json.dumps(every, indent=1))
    return 0


def llm_main(args: argparse.Namespace) -> int:
    """The LLM bench (bench/llm_scaling.py): Unbusy in tokens beside the baselines, per trace and mix."""
    profile = load_llm_profile(args.llm_profile)
    names = ["smoke"] if args.smoke else [args.trace] if args.trace else list(llm_scaling.TRACES)
    every: list[dict[str, Any]] = []
    for name in names:
        mix = MixShift.parse(args.mix or llm_scaling.TRACES.get(name) or "conv")
        slo_ms = args.ttft_slo_ms or llm_scaling.default_slo_ms(profile, mix)
        config = llm_scaling.configure(profile, mix, args.startup_seconds, args.seed, slo_ms)
        trace = llm_scaling.trace_of(name, args.base_rps or llm_scaling.base_rps(profile, mix))
        results = llm_scaling.run_trace(config, trace, slo_ms)
        if args.json:
            every += llm_scaling.rows(trace, mix, results)
        else:
            print(llm_scaling.table(trace, config, slo_ms, results, args.llm_profile))
    if args.json:
        print(json.dumps(every, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
