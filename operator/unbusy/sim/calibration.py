"""Fit a serving profile (api.model.Serving) to a real Triton's sweep, and replay the sweep through the simulator.

Input: a rates CSV written by bench/calibrate/harness.py: '#' lines (device, versions, the
model's config.pbtxt, ready_s), then one row per closed-loop concurrency and per open-loop
offered rate. A rate measured more than once in the run (the harness given the sweep's
fractions several times, `--fractions` repeated) counts as one step whose every figure is the
median of its repeats; the repeats' lowest and highest p99 are kept beside it (`Row.segments`).
The open-loop rates are split in two halves by rank (the 1st, 3rd, 5th ... lowest to fit, the
others to validate), so a check against the held-out half is not the fit.

What is fitted, each from the fit half and the closed loop:
- t(b) = max(floor, base + per_item x b), from each row's batch size (Triton's
  inference_count / exec_count) and batch time (Triton's compute time of an execution, plus the
  per-request cost around it seen in the saturated steps, where executions run back to back);
- the GPU reading ceiling x (served / capacity)^exponent, by least squares;
- stalls (how often, how long), by replaying the fit rates through the simulator and matching
  their p99: the tail at low load comes from them. Two kinds are tried: stalls at random times
  (so many per second) and stalls in a share of the executions (so fewer per second where
  batches are few and large, past capacity); the one that replays the fit half best is kept.

Each row weighs by how long it was measured (the CSV's `seconds`): a closed-loop step of 3 s
that a half-second stall of the server fell into (bench/data/h100-long-resnet50-rates.csv, 96 in
flight) does not count as much as an open-loop step of 30 s.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
import statistics
from dataclasses import dataclass, fields, replace
from pathlib import Path

from unbusy.api.model import DynamicBatching, GpuUtilizationCurve, ModelConfig, Pauses, ServiceTime, Serving
from unbusy.scaling.policy import line
from unbusy.serving.batcher import steady_state
from unbusy.serving.model import ServiceModel, from_config, saturated_batch
from unbusy.sim.config import SimConfig
from unbusy.sim.engine import simulate
from unbusy.sim.traces import Trace

# Replays of one offered rate: long enough for a steady p99, short enough to fit in seconds.
REPLAY_SECONDS = 60
PAUSE_MS = (5, 10, 15, 20, 30, 45, 60, 80)
PAUSES_PER_SECOND = (0.25, 0.5, 1.0, 2.0, 4.0, 6.0)
PAUSES_PER_EXECUTION = (0.005, 0.01, 0.02, 0.03, 0.05)
# Requests per batcher run in the search for the stalls (the profile's own runs take more).
FIT_REQUESTS = 5_000
# In the fit of the stalls, a miss of this many points of rejected % weighs as much as p99 100% off.
REJECTED_POINTS = 10.0


@dataclass(frozen=True)
class Row:
    """One step of the sweep, as measured."""

    mode: str  # closed | open
    offered_rps: float | None
    served_rps: float
    rejected_pct: float
    p50_ms: float
    p99_ms: float
    gpu_util: float | None
    avg_batch: float
    executions_per_s: float
    compute_ms: float  # Triton's compute_infer time of one execution (a batch)
    concurrency: int | None = None  # requests in flight, in the closed loop
    seconds: float = 0.0  # how long it was measured (its repeats together)
    # The rows of the run this one is the median of, in the order they ran (empty: measured once).
    segments: tuple[Row, ...] = ()

    @property
    def repeats(self) -> int:
        return max(1, len(self.segments))

    @property
    def p99_range_ms(self) -> tuple[float, float]:
        """The lowest and highest p99 of the repeats."""
        p99s = [r.p99_ms for r in self.segments] or [self.p99_ms]
        return min(p99s), max(p99s)

    def saturated(self, full_batch: int) -> bool:
        """Its batches ran full: the queue never ran dry and executions followed each other back
        to back. 503s alone do not say so: a stall fills the queue at a fraction of capacity (the
        ResNet-18 sweep refused 2.4% at 0.7x, in batches of 10)."""
        return self.avg_batch >= full_batch - 0.5


@dataclass(frozen=True)
class Sweep:
    source: str
    header: dict[str, str]
    config: ModelConfig
    rows: tuple[Row, ...]

    @property
    def closed(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.mode == "closed")

    @property
    def open(self) -> tuple[Row, ...]:
        return tuple(sorted((r for r in self.rows if r.mode == "open"), key=lambda r: r.offered_rps or 0))

    @property
    def fit_half(self) -> tuple[Row, ...]:
        return self.open[0::2]

    @property
    def check_half(self) -> tuple[Row, ...]:
        return self.open[1::2]


def _number(text: str, pattern: str, default: int) -> int:
    found = re.search(pattern, text)
    return int(found.group(1)) if found else default


def _config(pbtxt: str) -> ModelConfig:
    """The batching parts of the config.pbtxt the harness served (from the CSV's header)."""
    preferred = re.search(r"preferred_batch_size: \[([0-9, ]*)\]", pbtxt)
    return ModelConfig(
        max_batch_size=_number(pbtxt, r"max_batch_size: ([0-9]+)", 0),
        dynamic_batching=DynamicBatching(
            max_queue_delay_microseconds=_number(pbtxt, r"max_queue_delay_microseconds: ([0-9]+)", 0),
            max_queue_size=_number(pbtxt, r"max_queue_size: ([0-9]+)", 0),
            preferred_batch_sizes=[int(s) for s in preferred.group(1).split(",")] if preferred else [],
        )
        if "dynamic_batching" in pbtxt
        else None,
    )


def read_commented(path: str | Path) -> tuple[dict[str, str], list[dict[str, str]]]:
    """A measured CSV: its `# key: value` header lines, and its rows by column name."""
    text = Path(path).read_text()
    header = {}
    for row in text.splitlines():
        if row.startswith("# ") and ": " in row:
            key, _, value = row[2:].partition(": ")
            header[key] = value
    body = "\n".join(row for row in text.splitlines() if not row.startswith("#"))
    return header, list(csv.DictReader(io.StringIO(body)))


def read_sweep(path: str | Path) -> Sweep:
    header, table = read_commented(path)
    if "config.pbtxt" not in header:
        raise ValueError(f"{path}: no '# config.pbtxt:' line; is it a rates CSV from bench/calibrate?")

    def value(row: dict, key: str) -> float | None:
        return float(row[key]) if row.get(key) else None

    measured = [
        Row(
            mode=row["mode"],
            offered_rps=value(row, "offered_rps"),
            served_rps=float(row["served_rps"]),
            rejected_pct=value(row, "rejected_pct") or 0.0,
            p50_ms=float(row["p50_ms"]),
            p99_ms=float(row["p99_ms"]),
            gpu_util=value(row, "gpu_util"),
            avg_batch=float(row["avg_batch"]),
            executions_per_s=float(row["executions_per_s"]),
            compute_ms=float(row["compute_infer_us"]) / 1000,
            concurrency=int(row["concurrency"]) if row.get("concurrency") else None,
            seconds=value(row, "seconds") or 0.0,
        )
        for row in table
    ]
    steps: dict[tuple, list[Row]] = {}
    for row in measured:
        steps.setdefault((row.mode, row.concurrency, row.offered_rps), []).append(row)
    rows = tuple(combined(repeats) for repeats in steps.values())
    return Sweep(str(path), header, _config(header["config.pbtxt"]), rows)


def combined(repeats: list[Row]) -> Row:
    """One step measured several times: the median of each figure, the repeats kept beside it."""
    if len(repeats) == 1:
        return repeats[0]
    numbers = {}
    for f in fields(Row):
        if f.name in ("mode", "offered_rps", "concurrency", "seconds", "segments"):
            continue
        values = [getattr(r, f.name) for r in repeats if getattr(r, f.name) is not None]
        numbers[f.name] = statistics.median(values) if values else None
    return replace(repeats[0], **numbers, seconds=sum(r.seconds for r in repeats), segments=tuple(repeats))


# --- the fit ---------------------------------------------------------------------------------


def batch_times(rows: list[Row], full_batch: int) -> list[tuple[float, float]]:
    """(batch size, ms per batch) of each row: Triton's compute time of a batch plus the time each
    of its requests costs around it (inputs, responses), which only shows where executions follow
    each other back to back (batches of `full_batch`): there, the gap between them is the whole
    batch time."""
    saturated = [r for r in rows if r.saturated(full_batch)]
    if not saturated:
        raise ValueError(f"no saturated step (batches of {full_batch}, the maximum): capacity unknown")
    weights = [weight(r) for r in saturated]
    costs = [(1000 / r.executions_per_s - r.compute_ms) / r.avg_batch for r in saturated]
    around = sum(w * c for w, c in zip(weights, costs, strict=True)) / sum(weights)
    return [(r.avg_batch, r.compute_ms + around * r.avg_batch) for r in rows]


def weight(row: Row) -> float:
    """How much a row counts in the fit: the seconds it was measured (1 where the CSV does not say)."""
    return row.seconds or 1.0


def fit_service_time(points: list[tuple[float, float]], weights: list[float] | None = None) -> ServiceTime:
    """t(b) = max(floor, base + per_item x b) through (batch, ms) points, least relative squares,
    each point counting `weights` times (once each, unless told).

    Each split of the points by batch size puts the smaller ones on the floor (their mean) and
    the others on a line; the split with the smallest error wins.
    """
    weighted = sorted(zip(points, weights or [1.0] * len(points), strict=True))
    best: tuple[float, ServiceTime] | None = None
    for split in range(len(weighted) - 1):
        on_floor, on_line = weighted[:split], weighted[split:]
        base, per_item = line([point for point, _ in on_line], [w for _, w in on_line])
        if per_item <= 0:
            continue
        floor = sum(w * t for (_, t), w in on_floor) / sum(w for _, w in on_floor) if on_floor else 0.0
        error = sum(w * (max(floor, base + per_item * b) / t - 1) ** 2 for (b, t), w in weighted)
        if best is None or error < best[0]:
            best = (error, ServiceTime(floor_ms=floor, base_ms=max(base, 0.0), per_item_ms=per_item))
    if best is None:
        raise ValueError("batch times do not grow with the batch: no service-time line fits")
    return best[1]


def fit_gpu_curve(points: list[tuple[float, float]], weights: list[float] | None = None) -> GpuUtilizationCurve:
    """reading = ceiling x fraction^exponent through (fraction of capacity, reading) points,
    by least squares, each point counting `weights` times (once each, unless told)."""
    weights = weights or [1.0] * len(points)
    best: tuple[float, GpuUtilizationCurve] | None = None
    for exponent in (e / 100 for e in range(10, 301)):
        powers = [(min(f, 1.0) ** exponent, u, w) for (f, u), w in zip(points, weights, strict=True)]
        ceiling = sum(w * p * u for p, u, w in powers) / sum(w * p * p for p, _, w in powers)
        error = sum(w * (ceiling * p - u) ** 2 for p, u, w in powers)
        if 0 < ceiling <= 1 and (best is None or error < best[0]):
            best = (error, GpuUtilizationCurve(ceiling=round(ceiling, 4), exponent=exponent))
    if best is None:
        raise ValueError("no GPU utilisation readings to fit")
    return best[1]


@dataclass(frozen=True)
class Replayed:
    served_rps: float
    rejected_pct: float
    p50_ms: float
    p99_ms: float
    gpu_util: float


def replay(model: ServiceModel, rate: float, seconds: int = REPLAY_SECONDS, seed: int = 0) -> Replayed:
    """One replica of `model` under Poisson arrivals at `rate` for `seconds`, scaling off."""
    config = SimConfig(model=model, policy=None, bounds=(1, 1), initial_replicas=1, slo_s=math.inf, seed=seed)
    result = simulate(config, Trace("replay", (rate,) * seconds))
    served = rate * (1 - result.rejected_pct / 100)
    return Replayed(served, result.rejected_pct, result.p50_ms or 0.0, result.p99_ms or 0.0, model.gpu_reading(served))


def fit(sweep: Sweep) -> Serving:
    """The serving profile of a sweep, from its closed loop and the fit half of its open loop."""
    rows = [*sweep.closed, *sweep.fit_half]
    points = batch_times(rows, saturated_batch(sweep.config))
    service_time = fit_service_time(points, [weight(r) for r in rows])
    shape = Serving(
        service_time=service_time,
        gpu_utilization=GpuUtilizationCurve(ceiling=1, exponent=1),
        ready_seconds=float(sweep.header.get("ready_s", 0)),
    )
    replica = from_config(sweep.config, shape)
    capacity = replica.capacity_rps
    read = [r for r in rows if r.gpu_util is not None]
    readings = [(r.served_rps / capacity, r.gpu_util) for r in read]
    shape = shape.model_copy(update={"gpu_utilization": fit_gpu_curve(readings, [weight(r) for r in read])})
    saturated_ms = 1000 * replica.service_s(replica.saturated_batch)

    def keep(pauses: Pauses) -> float:
        """The share of the measured batch times that is not stalls."""
        return 1 - pauses.per_second * pauses.ms / 1000 - pauses.per_execution * pauses.ms / saturated_ms

    def stalled(pauses: Pauses) -> Serving:
        # The measured batch times already hold the stalls on average (a saturated replica's
        # executions per second count them): take them out, or stalls would be counted twice.
        # What is left keeps the saturated replica's throughput where it was measured.
        kept = keep(pauses)
        time = shape.service_time
        return shape.model_copy(
            update={
                "pauses": pauses,
                "service_time": ServiceTime(
                    floor_ms=time.floor_ms * kept, base_ms=time.base_ms * kept, per_item_ms=time.per_item_ms * kept
                ),
            }
        )

    # Stalls show below capacity: in p99, and in the 503s of bursts the batcher could not absorb.
    below = [row for row in sweep.fit_half if row.offered_rps < capacity]

    def error(pauses: Pauses, enough: float) -> float:
        """How far the replay of the fit rates is off, or more than `enough` once it is that far."""
        batcher = from_config(sweep.config, stalled(pauses)).batcher
        total = 0.0
        for row in below:
            state = steady_state(batcher, row.offered_rps, requests=FIT_REQUESTS)
            total += (1000 * state.p99_s / row.p99_ms - 1) ** 2
            total += ((100 * state.rejected - row.rejected_pct) / REJECTED_POINTS) ** 2
            if total > enough:  # worse than the best so far: the other rows cannot mend it
                break
        return total

    candidates = [
        Pauses(),
        *(Pauses(per_second=rate, ms=ms) for ms, rate in itertools.product(PAUSE_MS, PAUSES_PER_SECOND)),
        *(Pauses(per_execution=share, ms=ms) for ms, share in itertools.product(PAUSE_MS, PAUSES_PER_EXECUTION)),
    ]
    best, least = Pauses(), math.inf
    for pauses in candidates:
        if keep(pauses) <= 0.8:  # stalled at most a fifth of the time
            continue
        if (miss := error(pauses, least)) < least:
            best, least = pauses, miss
    serving = stalled(best)
    measured = (
        f"{sweep.header.get('model', '?')} on {sweep.header.get('device', '?')}; "
        f"tritonserver {sweep.header.get('tritonserver', '?')}; fitted from {Path(sweep.source).name}"
    )
    return serving.model_copy(update={"measured": measured[:512]})


def rounded(serving: Serving) -> Serving:
    """The profile with its figures at the precision the measurements carry."""
    time, curve = serving.service_time, serving.gpu_utilization
    return serving.model_copy(
        update={
            "service_time": ServiceTime(
                floor_ms=round(time.floor_ms, 3), base_ms=round(time.base_ms, 3), per_item_ms=round(time.per_item_ms, 4)
            ),
            "gpu_utilization": GpuUtilizationCurve(ceiling=round(curve.ceiling, 3), exponent=curve.exponent),
            "ready_seconds": round(serving.ready_seconds, 1),
        }
    )


def check(sweep: Sweep, serving: Serving) -> list[tuple[Row, Replayed]]:
    """Each held-out rate of the sweep beside its replay through the simulator with `serving`."""
    model = from_config(sweep.config, serving)
    return [(row, replay(model, row.offered_rps)) for row in sweep.check_half]
