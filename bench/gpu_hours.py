"""Where Unbusy's GPU-hours above the oracle go, on one trace: second by second, its replicas less
the oracle's, put down to what set Unbusy's count.

    .venv/bin/python bench/gpu_hours.py --trace onoff                       # ResNet-50 profile
    .venv/bin/python bench/gpu_hours.py --trace onoff --model h100-bert-base --minutes
    .venv/bin/python bench/gpu_hours.py --trace flash --ticks 540-900     # each decision in 540-900 s and why

Same spec, trace, seed and simulator as bench/scaling.py (its `unbusy` and `oracle` rows). The count
at each second is the one the last decision set (the engine starts and drains replicas at the
decision; a drained replica holds its GPU until its queue is empty, a second or so), so the sum is
the engine's GPU-hours to a few replica-seconds; both are printed. What set Unbusy's count, from
the decision in force:
- burst hold: the replicas the bursts seen pay for at the refusal price (scaling/bursts.py);
- seasonal floor;
- scale-down window: the count is what the window's highest recommendation kept ("scale-down
  stabilised"), above what the metrics ask for now;
- burst mode: no scale-in while it lasts;
- demand rule: the rest: demand at the capacity target, start-up headroom, whole replicas, the
  tolerance band, the guards.
Seconds where Unbusy holds fewer replicas than the oracle (which orders a start-up ahead of a
rise) are its credit, in the column `below`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scaling as bench  # it puts operator/ on the path

from unbusy.scaling.policy import Decision
from unbusy.serving.model import DEFAULT_PROFILE, from_service, load_profile
from unbusy.sim.config import from_spec
from unbusy.sim.engine import Policy, simulate
from unbusy.sim.traces import SHAPES, named

CAUSES = (
    "burst hold",
    "seasonal floor",
    "scale-down window",
    "burst mode",
    "demand rule",
)


def recording(policy: Policy, log: list[tuple[float, Decision]]) -> Policy:
    def decide(obs, spec, bounds, state, now):
        decision = policy(obs, spec, bounds, state, now)
        log.append((now, decision))
        return decision

    return decide


def per_second(log: list[tuple[float, Decision]], initial: int, seconds: int) -> list[tuple[int, Decision | None]]:
    """(replicas, decision) in force at each second."""
    out, current, decision, i = [], initial, None, 0
    for second in range(seconds):
        while i < len(log) and log[i][0] <= second:
            decision = log[i][1]
            current, i = decision.replicas, i + 1
        out.append((current, decision))
    return out


def cause(decision: Decision | None) -> str:
    if decision is None:
        return "demand rule"
    if decision.floor == "bursts":
        return "burst hold"
    if decision.floor == "seasonal":
        return "seasonal floor"
    if "scale-down stabilised" in decision.reason:
        return "scale-down window"
    if "burst mode" in decision.reason:
        return "burst mode"
    return "demand rule"


def explain(config, trace) -> dict[str, Any]:
    plans = bench.contenders(config, trace)
    logs: dict[str, list[tuple[float, Decision]]] = {"unbusy": [], "oracle": []}
    results = {}
    for name, log in logs.items():
        cfg, policy = plans[name]
        results[name] = simulate(cfg, trace, recording(policy, log))
    ours = per_second(logs["unbusy"], config.initial_replicas, trace.seconds)
    theirs = per_second(logs["oracle"], config.initial_replicas, trace.seconds)
    above: dict[str, float] = defaultdict(float)
    below: dict[str, float] = defaultdict(float)
    minutes: list[dict[str, Any]] = []
    for second, ((mine, decision), (oracle, _)) in enumerate(zip(ours, theirs, strict=True)):
        why = cause(decision)
        if mine > oracle:
            above[why] += (mine - oracle) / 3600
        elif mine < oracle:
            below[why] += (mine - oracle) / 3600
        if second % 60 == 0:
            minutes.append({"minute": second // 60, "causes": defaultdict(int)})
        minutes[-1]["causes"][why] += 1
    for minute, ran, known in zip(minutes, results["unbusy"].minutes, results["oracle"].minutes, strict=True):
        arrived = ran.load_rps * 60
        minute.update(
            load_rps=ran.load_rps,
            unbusy=ran.replicas,
            oracle=known.replicas,
            rejected_pct=100 * ran.rejected / arrived if arrived else 0.0,
            within_slo=ran.within_slo,
            cause=max(minute.pop("causes").items(), key=lambda item: item[1])[0],
        )
    return {
        "trace": trace.name,
        "gpu_hours": {name: r.gpu_hours for name, r in results.items()},
        "counted_gpu_hours": {
            "unbusy": sum(n for n, _ in ours) / 3600,
            "oracle": sum(n for n, _ in theirs) / 3600,
        },
        "rejected_pct": results["unbusy"].rejected_pct,
        "above": {c: above[c] for c in CAUSES if above[c]},
        "below": {c: below[c] for c in CAUSES if below[c]},
        "minutes": minutes,
        "ticks": [
            {
                "second": round(now),
                "load_rps": trace.rps[min(int(now), trace.seconds - 1)],
                "unbusy": decision.replicas,
                "oracle": theirs[min(int(now), trace.seconds - 1)][0],
                "cause": cause(decision),
                "reason": decision.reason,
            }
            for now, decision in logs["unbusy"]
        ],
    }


def report(found: dict[str, Any], show_minutes: bool, ticks: tuple[float, float] | None = None) -> str:
    ours, oracle = found["gpu_hours"]["unbusy"], found["gpu_hours"]["oracle"]
    counted = found["counted_gpu_hours"]
    lines = [
        f"trace {found['trace']}: unbusy {ours:.3f} GPU-h (counted per second {counted['unbusy']:.3f}), oracle "
        f"{oracle:.3f} ({counted['oracle']:.3f}): {ours / oracle:.3f}x, {ours - oracle:+.3f} GPU-h; unbusy rejects "
        f"{found['rejected_pct']:.3f}%",
        "",
        "| what set Unbusy's replicas | GPU-h above the oracle | below | net |",
        "|---|--:|--:|--:|",
    ]
    for name in CAUSES:
        up, down = found["above"].get(name, 0.0), found["below"].get(name, 0.0)
        if up or down:
            lines.append(f"| {name} | {up:.3f} | {down:.3f} | {up + down:+.3f} |")
    total_up, total_down = sum(found["above"].values()), sum(found["below"].values())
    lines.append(f"| all | {total_up:.3f} | {total_down:.3f} | {total_up + total_down:+.3f} |")
    if show_minutes:
        lines += ["", "| minute | load rps | unbusy replicas | oracle replicas | rejected % | in SLO | mostly set by |"]
        lines.append("|--:|--:|--:|--:|--:|:-:|---|")
        for m in found["minutes"]:
            lines.append(
                f"| {m['minute']} | {m['load_rps']:,.0f} | {m['unbusy']:.2f} | {m['oracle']:.2f} | "
                f"{m['rejected_pct']:.3f} | {'yes' if m['within_slo'] else 'no'} | {m['cause']} |"
            )
    if ticks is not None:
        lines += ["", "| second | load rps | unbusy | oracle | set by | reason |", "|--:|--:|--:|--:|---|---|"]
        for t in found["ticks"]:
            if ticks[0] <= t["second"] <= ticks[1]:
                cells = (t["second"], f"{t['load_rps']:,.0f}", t["unbusy"], t["oracle"], t["cause"], t["reason"])
                lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _span(text: str) -> tuple[float, float]:
    first, _, last = text.partition("-")
    return float(first), float(last) if last else float("inf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--filename", type=Path, default=bench.DEFAULT_MANIFEST, help="InferenceService manifest")
    parser.add_argument("--trace", default="onoff", help=f"built-in shape ({', '.join(SHAPES)}) or a CSV file")
    parser.add_argument("--model", default=DEFAULT_PROFILE, help="serving profile or a calibrate file")
    parser.add_argument("--base-rps", type=float, help="base rate of the shape; default: half of the capacity")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the arrivals")
    parser.add_argument("--refusal-price", type=float, help="refusalPriceGpuSeconds (default: the spec's)")
    parser.add_argument("--scrape-seconds", type=int, help="Prometheus scrape interval (default: the spec's)")
    parser.add_argument("--metrics-delay-seconds", type=int, default=10, help="from scrape to readable")
    parser.add_argument("--interval-seconds", type=int, help="Unbusy's tick (default: autoscaling.intervalSeconds)")
    parser.add_argument("--smoke", action="store_true", help="bench/scaling.py's short step (CI)")
    parser.add_argument("--minutes", action="store_true", help="also print each minute")
    parser.add_argument("--ticks", type=_span, help="also print each decision in FIRST-LAST seconds (LAST optional)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    isvc = bench.read_service(args.filename)
    config = from_spec(
        isvc,
        model=from_service(isvc, load_profile(args.model)),
        seed=args.seed,
        metrics_delay_s=args.metrics_delay_seconds,
    )
    config = bench.with_pipeline(config, args.scrape_seconds, args.interval_seconds)
    if args.refusal_price is not None and config.policy is not None:
        config = bench.with_price(config, args.refusal_price)
    base = args.base_rps or bench.BASE_LOAD * config.model.capacity_rps * config.initial_replicas / config.weight
    try:
        trace = bench.smoke_trace(base) if args.smoke else named(args.trace, base)
    except ValueError as error:
        parser.error(str(error))
    found = explain(config, trace)
    print(json.dumps(found, indent=1) if args.json else report(found, args.minutes, args.ticks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
