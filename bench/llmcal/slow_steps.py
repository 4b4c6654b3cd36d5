"""Slow steps in the committed H100 step logs (issue 20 part 4): is a step's time bimodal, and what predicts a slow one?

Splits <run>-steps.log.gz into the sweep's segments at the idle gaps (> 1 s; the first part is the warm-up), labels
them with the rates CSV's rows in order, and prints per segment the share of mixed steps (prefill and decode) slower
than --slow-ms beside the measured TTFT p99; then per mix the mixed steps' percentiles and, per bucket of decode
requests, prefill tokens, decode KV tokens and running requests (and by the kind of step before), the slow share and
the median time of the fast and the slow ones.
Usage: .venv/bin/python bench/llmcal/slow_steps.py 1b-steps 1b-steps2 1b-steps3 8b-steps"""

import argparse
import gzip
import itertools

import numpy as np
from sweep import STEP_FIELDS

from unbusy.sim.calibration import read_commented

# columns of StepLog's lines (bench/llmcal/model.py), as sweep.py reads them
END, DURATION, PREFILL, DECODE, DECODE_KV, RUNNING = map(
    STEP_FIELDS.index, ("end", "duration", "prefill", "decode", "decode_kv", "running")
)


def segments(run: str) -> list[tuple[dict, np.ndarray]]:
    _, rows = read_commented(f"bench/data/h100-llm-llama-{run}-rates.csv")
    with gzip.open(f"bench/data/h100-llm-llama-{run}-steps.log.gz", "rt") as log_file:
        log = np.array([list(map(float, line.split())) for line in log_file])
    starts = log[:, END] - log[:, DURATION]
    parts = np.split(log, np.where(np.diff(starts) > 1.0)[0] + 1)[1:]
    return list(zip(rows, parts, strict=True))


def is_mixed(steps: np.ndarray) -> np.ndarray:
    return (steps[:, PREFILL] > 0) & (steps[:, DECODE] > 0)


def table(label: str, steps: np.ndarray, column: int, edges: list[float], slow_s: float) -> None:
    print(f"  by {label}: bucket  n  slow%  fast_ms  slow_ms")
    for low, high in itertools.pairwise(edges):
        bucket = steps[(steps[:, column] >= low) & (steps[:, column] < high), DURATION]
        if len(bucket) < 20:
            continue
        slow = bucket > slow_s
        fast_ms = np.median(bucket[~slow]) * 1e3 if (~slow).any() else float("nan")
        slow_ms = np.median(bucket[slow]) * 1e3 if slow.any() else float("nan")
        print(f"    [{low:g},{high:g})  {len(bucket)}  {100 * slow.mean():.1f}  {fast_ms:.1f}  {slow_ms:.1f}")


def after(parts: list[np.ndarray], slow_s: float) -> str:
    """The slow share of mixed steps by the kind of step before them (mixed, prefill only, decode only)."""
    before, slow = [], []
    for part in parts:
        mixed = is_mixed(part)
        for i in np.where(mixed[1:])[0] + 1:
            before.append("mixed" if mixed[i - 1] else "prefill" if part[i - 1, DECODE] == 0 else "decode")
            slow.append(part[i, DURATION] > slow_s)
    before, slow = np.array(before), np.array(slow)
    kinds = [kind for kind in ("mixed", "prefill", "decode") if (before == kind).any()]
    return ", ".join(
        f"after {kind}: {(before == kind).sum()} slow {100 * slow[before == kind].mean():.1f}%" for kind in kinds
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", help="the part of bench/data/h100-llm-llama-<run>-steps.log.gz")
    parser.add_argument("--slow-ms", type=float, default=40.0)
    args = parser.parse_args()
    slow_s = args.slow_ms / 1e3
    for run in args.runs:
        by_mix: dict[str, list[np.ndarray]] = {}
        for row, part in segments(run):
            mixed = part[is_mixed(part), DURATION]
            print(
                f"{run} {row['mix']} {row['segment']} {row['offered_rps']} req/s: {len(part)} steps, mixed {len(mixed)}"
                f" slow {100 * (mixed > slow_s).mean():.1f}%, TTFT p99 {float(row['ttft_p99_ms']):.0f} ms"
            )
            by_mix.setdefault(row["mix"], []).append(part)
        for mix, parts in by_mix.items():
            steps = np.concatenate(parts)
            mixed = steps[is_mixed(steps)]
            mixed_slow = (mixed[:, DURATION] > slow_s).mean()
            decode_only = steps[(steps[:, PREFILL] == 0) & (steps[:, DECODE] > 0), DURATION]
            print(
                f"{run} {mix}: {len(steps)} steps, mixed {len(mixed)} (slow {100 * mixed_slow:.1f}%),"
                f" decode-only {len(decode_only)} (slow {100 * (decode_only > slow_s).mean():.1f}%)"
            )
            percentiles = np.percentile(mixed[:, DURATION], [10, 50, 90, 99]) * 1e3
            print("  mixed steps' ms p10/50/90/99:", np.round(percentiles, 1), "|", after(parts, slow_s))
            table("decode requests", mixed, DECODE, [1, 2, 4, 8, 16, 32, 64, 128, 257], slow_s)
            table("prefill tokens", mixed, PREFILL, [1, 256, 512, 1024, 1536, 2049], slow_s)
            table("decode KV tokens", mixed, DECODE_KV, [0, 2e3, 8e3, 32e3, 128e3, 1e7], slow_s)
            table("running requests", mixed, RUNNING, [1, 16, 32, 64, 128, 257], slow_s)


if __name__ == "__main__":
    main()
