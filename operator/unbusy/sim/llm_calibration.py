"""Fit an LLM profile (serving/llm.py) to a measured sweep (bench/llmcal's CSVs), and replay the sweep.

Input: the three CSVs of one model shape, `<prefix>rates.csv`, `<prefix>requests.csv` and
`<prefix>seconds.csv` (the format is in the shared brief; bench/llmcal writes them): `# key: value`
header lines (the engine's settings among them), then one row per segment, per request, per second;
and, where the run logged its engine's steps, `<prefix>steps.csv` (bench/llmcal's step log, binned by
prefill tokens and decode requests per segment, `profile` rows from a mix-independent engine profile).

What is fitted:
- the step time t = base + per_prompt_token x prefilled + per_sequence x decoding + per_kv_token x
  attended. Where the fitted segments' mixes have logged steps: directly, a least-squares regression
  (coefficients >= 0) of each bin's mean step time on its mean prefill tokens, decode requests and the
  KV tokens they attend to, the decode terms apart for steps that also prefill (mixed_sequence,
  mixed_kv_token), each bin weighted by its count of steps (as a regression on the steps
  themselves), the engine profile's bins included (a run may log only a profile: its steps are the
  engine's whatever the mix). Otherwise from the aggregates: from the seconds the
  engine was busy throughout (at least BUSY_RUNNING requests
  running on average): in such a second the steps' times add up to the second, so
  1 s = base x steps + per_prompt_token x prompt tokens + per_sequence x output tokens (one per
  sequence a step) + per_kv_token x steps x context, where steps = output tokens / running and
  the context is the KV cache in use less half a block a sequence; by least squares with every
  coefficient >= 0 (a negative one is dropped and the rest refitted);
- the GPU reading of a busy engine: the mean reading over those seconds;
- the first token's way to the client (response_ms, response_per_running_ms): see response_ms();
- the engine's limits (KV tokens, block size, max batched tokens, max sequences, waiting limit,
  the KV reserve at admission: transformers' 15% safety margin where the engine line names its
  ContinuousBatchingManager and no margin is given, else vLLM's 1%; one step scheduled ahead where
  its async_batching is on) are read from the header, not fitted.

The check replays each held-out segment's very requests (their send times, prompts and output
lengths, from requests.csv) through one replica of the fitted engine and compares what the
segment measured: served tokens/s, refused share, TTFT p99.

simulated_sweep writes what bench/llmcal would measure if the engine were a given profile: the
fit recovers it (tests), and its CSVs exercise the reader.
"""

from __future__ import annotations

import csv
import math
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from unbusy.serving.llm import Engine, LlmProfile, Request, StepTime, TokenMix, saturated_rps
from unbusy.sim.calibration import read_commented

BUSY_RUNNING = 3.0  # requests running on average from which a second counts as busy throughout
# Requests waiting on average under which a segment's queue counts as empty: where the response time is
# fitted. Past it the engine model's own misses at overload weigh in (with < 1, the 1B's conv segments
# at 16.25 req/s and the step, 0.93 and 0.52 waiting, made the mean 140 ms: an idle replica's TTFT p99
# 0.65 s against the 0.2 s measured).
QUIET_WAITING = 0.25
DRAIN_S = 30.0  # how long a segment's requests may finish after it, where the header does not say
SAMPLES_PER_SECOND = 4  # gauge readings a second in a simulated sweep (bench/llmcal: every 0.25 s)
# Bounds of the validation (issue 20): served tokens/s, refused share, TTFT p99.
SERVED_WITHIN = 0.10
REFUSED_POINTS = 2.0
TTFT_WITHIN = 0.25
# The header keys each engine setting may go by (bench/llmcal writes the engine's parameters).
_SETTINGS = {
    "kv_cache_tokens": ("kv_tokens", "kv_cache_tokens"),
    "block_size": ("block_size",),
    "max_batched_tokens": ("max_batch_tokens", "max_batched_tokens"),
    "max_sequences": ("max_requests", "max_sequences", "max_num_seqs"),
    "max_waiting": ("queue_limit", "max_waiting"),
    "kv_reserve": ("safety_margin", "kv_reserve", "watermark"),
}
# What an engine keeps free of its KV cache at admission where the header does not say.
TRANSFORMERS_SAFETY_MARGIN = 0.15  # transformers' FIFOScheduler default
VLLM_WATERMARK = 0.01
RATES_COLUMNS = (
    "mix", "segment", "offered_rps", "seconds", "sent", "finished", "refused", "unfinished", "served_rps",
    "prompt_tok_s", "output_tok_s", "ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms", "e2e_p50_s",
    "e2e_p99_s", "pending_mean", "running_mean", "waiting_mean", "kv_used_mean", "kv_used_max", "preempted",
    "gpu_util_mean",
)  # fmt: skip
REQUESTS_COLUMNS = (
    "mix", "segment", "offered_rps", "sent_s", "prompt_tokens", "max_tokens", "generated_tokens", "ttft_ms",
    "tpot_ms", "e2e_ms", "outcome",
)  # fmt: skip
STEPS_COLUMNS = (
    "mix", "segment", "offered_rps", "prefill_from", "decode_from", "steps", "step_ms_mean", "prefill_tokens_mean",
    "decode_requests_mean", "decode_kv_tokens_mean",
)  # fmt: skip
# The mix of a run's engine profile (isolated prefills, decoding at set batch sizes): mix-independent, so
# in every fit that uses logged steps.
PROFILE_MIX = "profile"
SECONDS_COLUMNS = (
    "mix", "segment", "offered_rps", "t_s", "arrivals", "finished", "prompt_tokens", "output_tokens", "running",
    "waiting", "kv_used", "pending", "gpu_util",
)  # fmt: skip


@dataclass(frozen=True)
class Segment:
    """One measured segment: its rates row, its requests (sent_s, prompt, output) and its seconds."""

    mix: str
    kind: str  # sweep | step
    offered_rps: float
    seconds: float
    rates: dict[str, float]
    requests: tuple[tuple[float, int, int], ...]
    per_second: tuple[dict[str, float], ...]
    drain_s: float = DRAIN_S  # how long its requests could finish after it (then the harness cancelled them)
    first_tokens_ms: tuple[float | None, ...] = ()  # the measured TTFT of each of `requests`, where it got one

    @property
    def name(self) -> str:
        return f"{self.mix} {self.kind} {self.offered_rps:g} rps"


@dataclass(frozen=True)
class StepBin:
    """Logged engine steps of one segment whose prefill tokens and decode requests fall in one bin: how
    many, their mean time, and their mean prefill tokens, decode requests and the KV tokens those attend to."""

    mix: str
    kind: str  # the segment's: sweep | step, or the engine profile's part (prefill, decode, ...)
    offered_rps: float
    steps: int
    step_ms: float
    prefill_tokens: float
    decode_requests: float
    decode_kv_tokens: float


@dataclass(frozen=True)
class LlmSweep:
    source: str
    header: dict[str, str]
    segments: tuple[Segment, ...]
    steps: tuple[StepBin, ...] = ()  # every run's logged steps, where it has a steps.csv

    def _text(self) -> str:
        return "\n".join(f"{key}: {value}" for key, value in self.header.items())

    def setting(self, name: str) -> float | None:
        """A number of the header: a line `# name: 400000`, or a pair `name 400000` (`name: 9.3`,
        `name=1`) inside a line such as bench/llmcal's `# engine: ..., kv_tokens 400000, ...`."""
        match = re.search(rf"\b{name}\b\W{{0,3}}([0-9]+(?:\.[0-9]+)?)", self._text(), re.IGNORECASE)
        return float(match.group(1)) if match else None

    def settings(self) -> dict[str, float]:
        """The engine settings of the header, each under the first of its names found."""
        found = {}
        for setting, names in _SETTINGS.items():
            value = next((v for v in map(self.setting, names) if v is not None), None)
            if value is not None:
                found[setting] = value
        for required in ("kv_cache_tokens", "max_batched_tokens"):
            if required not in found:
                raise ValueError(
                    f"{self.source}: no engine setting {required} in the header (a line or a pair named "
                    f"{' or '.join(_SETTINGS[required])})"
                )
        return found

    @property
    def drain_s(self) -> float:
        """How long the harness let a segment's requests finish after it (those left were cancelled)."""
        match = re.search(r"([0-9]+(?:\.[0-9]+)?) s to drain", self._text())
        return float(match.group(1)) if match else self.setting("drain_s") or DRAIN_S

    @property
    def mixes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.mix for s in self.segments))


def _numbers(row: dict[str, str]) -> dict[str, float]:
    numbers = {}
    for key, value in row.items():
        try:
            numbers[key] = float(value)
        except (TypeError, ValueError):
            continue
    return numbers


def is_llm_sweep(path: str | Path) -> bool:
    """Whether `path` is one of an LLM sweep's CSVs (its rows carry a mix), rather than bench/calibrate's."""
    try:
        _, rows = read_commented(path)
    except (OSError, UnicodeDecodeError):
        return False
    return bool(rows) and "mix" in rows[0]


def validation(sweep: LlmSweep) -> dict[str, list[Check]]:
    """The issue's validation: fit on half the rates and check the other half; fit on each mix and
    check the others (where the sweep has several). Logged steps are split the same way."""
    fit, held = split_rates(sweep)
    checks = {"half the rates": check_llm(fit_llm(sweep, fit, split_step_rates(sweep.steps)), held)}
    for mix in sweep.mixes if len(sweep.mixes) > 1 else ():
        fit, held = split_mixes(sweep, mix)
        steps = [b for b in sweep.steps if b.mix in (mix, PROFILE_MIX)]
        checks[f"fit on {mix}"] = check_llm(fit_llm(sweep, fit, steps), held)
    return checks


def read_llm_sweep(*prefixes: str | Path) -> LlmSweep:
    """The sweep of `<prefix>rates.csv`, `<prefix>requests.csv` and `<prefix>seconds.csv`; a path to
    one of the three stands for its prefix. With several prefixes (runs of one engine, e.g. a mix run
    again in longer segments), a mix's segments are those of the last run that has it."""
    sweeps = [_read_one(prefix) for prefix in prefixes]
    first = sweeps[0]
    for other in sweeps[1:]:
        if other.settings() != first.settings():
            raise ValueError(
                f"{other.source}: engine settings {other.settings()} differ from {first.source}'s "
                f"{first.settings()}; a sweep combines runs of one engine"
            )
    latest = {mix: sweep for sweep in sweeps for mix in sweep.mixes}
    segments = tuple(s for sweep in sweeps for s in sweep.segments if latest[s.mix] is sweep)
    steps = tuple(b for sweep in sweeps for b in sweep.steps)
    return LlmSweep(" + ".join(s.source for s in sweeps), first.header, segments, steps)


def _read_one(prefix: str | Path) -> LlmSweep:
    prefix = str(prefix)
    for tail in ("rates.csv", "requests.csv", "seconds.csv"):
        prefix = prefix.removesuffix(tail)
    header, rates = read_commented(f"{prefix}rates.csv")
    _, requests = read_commented(f"{prefix}requests.csv")
    _, seconds = read_commented(f"{prefix}seconds.csv")
    drain_s = LlmSweep(prefix, header, ()).drain_s

    def key(row: dict[str, str]) -> tuple[str, str, float]:
        return row["mix"], row["segment"], float(row["offered_rps"])

    sent: dict[tuple, list[tuple[float, int, int, float | None]]] = {}
    for row in requests:
        output = int(float(row["max_tokens"] or row["generated_tokens"] or 1))
        ttft = float(row["ttft_ms"]) if row.get("ttft_ms") else None
        sent.setdefault(key(row), []).append((float(row["sent_s"]), int(float(row["prompt_tokens"])), output, ttft))
    per_second: dict[tuple, list[dict[str, float]]] = {}
    for row in seconds:
        per_second.setdefault(key(row), []).append(_numbers(row))
    segments = []
    for row in rates:
        ordered = sorted(sent.get(key(row), []), key=lambda r: r[:3])
        segments.append(
            Segment(
                mix=row["mix"],
                kind=row["segment"],
                offered_rps=float(row["offered_rps"]),
                seconds=float(row["seconds"]),
                rates=_numbers(row),
                requests=tuple(r[:3] for r in ordered),
                per_second=tuple(sorted(per_second.get(key(row), []), key=lambda r: r["t_s"])),
                drain_s=drain_s,
                first_tokens_ms=tuple(r[3] for r in ordered),
            )
        )
    return LlmSweep(prefix, header, tuple(segments), read_steps(f"{prefix}steps.csv"))


def read_steps(path: str | Path) -> tuple[StepBin, ...]:
    """The step bins of a run's steps.csv; none where the run has no step log."""
    if not Path(path).is_file():
        return ()
    _, rows = read_commented(path)
    return tuple(
        StepBin(
            mix=row["mix"],
            kind=row["segment"],
            offered_rps=float(row["offered_rps"]),
            steps=int(float(row["steps"])),
            step_ms=float(row["step_ms_mean"]),
            prefill_tokens=float(row["prefill_tokens_mean"]),
            decode_requests=float(row["decode_requests_mean"]),
            decode_kv_tokens=float(row["decode_kv_tokens_mean"]),
        )
        for row in rows
        if float(row["steps"] or 0) > 0
    )


def write_steps(steps: Iterable[StepBin], path: str | Path, header: dict[str, str]) -> None:
    """Step bins in bench/llmcal's steps.csv columns (those the fit reads)."""
    with open(path, "w", newline="") as out:
        out.writelines(f"# {key}: {value}\n" for key, value in header.items())
        writer = csv.DictWriter(out, STEPS_COLUMNS)
        writer.writeheader()
        for b in steps:
            writer.writerow(
                {
                    "mix": b.mix, "segment": b.kind, "offered_rps": b.offered_rps, "steps": b.steps,
                    "step_ms_mean": b.step_ms, "prefill_tokens_mean": b.prefill_tokens,
                    "decode_requests_mean": b.decode_requests, "decode_kv_tokens_mean": b.decode_kv_tokens,
                }
            )  # fmt: skip


# --- the fit ---------------------------------------------------------------------------------


def nonnegative_least_squares(rows: list[list[float]], targets: list[float]) -> list[float]:
    """x >= 0 minimising |A x - y|: least squares on the columns still in, dropping the most
    negative coefficient until none is (few columns, so a plain active set is enough)."""
    width = len(rows[0])
    scale = [math.sqrt(sum(r[j] ** 2 for r in rows)) or 1.0 for j in range(width)]
    active = list(range(width))
    while active:
        solution = _solve(
            [[sum(r[i] * r[j] / (scale[i] * scale[j]) for r in rows) for j in active] for i in active],
            [sum(r[i] * y / scale[i] for r, y in zip(rows, targets, strict=True)) for i in active],
        )
        if all(x >= 0 for x in solution):
            result = [0.0] * width
            for i, x in zip(active, solution, strict=True):
                result[i] = x / scale[i]
            return result
        active.pop(min(range(len(active)), key=lambda k: solution[k]))
    return [0.0] * width


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (a near-singular system gets its free parts 0)."""
    n = len(vector)
    a = [[*row, value] for row, value in zip(matrix, vector, strict=True)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        if abs(a[col][col]) < 1e-12:
            continue
        for r in range(n):
            if r != col:
                factor = a[r][col] / a[col][col]
                a[r] = [x - factor * y for x, y in zip(a[r], a[col], strict=True)]
    return [a[i][n] / a[i][i] if abs(a[i][i]) >= 1e-12 else 0.0 for i in range(n)]


def busy_seconds(segments: Iterable[Segment]) -> list[dict[str, float]]:
    return [
        second
        for segment in segments
        for second in segment.per_second
        if second.get("running", 0) >= BUSY_RUNNING and second.get("output_tokens", 0) > 0
    ]


def fit_step_time(steps: Sequence[StepBin]) -> StepTime:
    """The step time regressed on what the logged steps carried: each bin's mean time on its mean
    prefill tokens, decode requests and their KV tokens, the decode terms apart for bins of steps that
    prefill (mixed) and of decode-only steps, weighted by its count of steps, coefficients >= 0."""
    rows, targets = [], []
    for b in steps:
        weight = math.sqrt(b.steps)  # a mean of n steps: its noise falls as 1/sqrt(n)
        decode = [b.decode_requests, b.decode_kv_tokens]
        mixed, only = (decode, [0.0, 0.0]) if b.prefill_tokens > 0 else ([0.0, 0.0], decode)
        rows.append([weight * x for x in (1.0, b.prefill_tokens, *only, *mixed)])
        targets.append(weight * b.step_ms)
    return StepTime(*nonnegative_least_squares(rows, targets))


def step_fit_error(step: StepTime, steps: Sequence[StepBin]) -> tuple[float, float]:
    """(modelled / logged busy time - 1, the steps' rms error in ms) of `step` over logged steps."""
    count = sum(b.steps for b in steps)
    logged = sum(b.steps * b.step_ms for b in steps)
    modelled = [1000 * step.seconds(b.prefill_tokens, b.decode_requests, b.decode_kv_tokens) for b in steps]
    squares = sum(b.steps * (m - b.step_ms) ** 2 for b, m in zip(steps, modelled, strict=True))
    return sum(b.steps * m for b, m in zip(steps, modelled, strict=True)) / logged - 1, math.sqrt(squares / count)


def fit_llm(sweep: LlmSweep, segments: Sequence[Segment], steps: Sequence[StepBin] = ()) -> LlmProfile:
    """The LLM profile of `segments` (some of the sweep's) and the sweep's engine settings; the step time
    from `steps` (logged steps of the same mixes, and the engine profile's) where there are any, else from
    the segments' aggregates."""
    settings = sweep.settings()
    kv_tokens = settings["kv_cache_tokens"]
    block = settings.get("block_size", 16)
    logged = bool(steps)
    step = fit_step_time(steps) if logged else fit_step_time_from_aggregates(sweep, segments, kv_tokens, block)
    readings = [s["gpu_util"] for s in busy_seconds(segments) if "gpu_util" in s]
    transformers = "ContinuousBatchingManager" in sweep.header.get("engine", "")
    default_reserve = TRANSFORMERS_SAFETY_MARGIN if transformers else VLLM_WATERMARK
    runs = sweep.source.split(" + ")
    csvs = "{rates,requests,seconds,steps}" if logged else "{rates,requests,seconds}"
    measured = (
        f"{sweep.header.get('model', '?')} on {sweep.header.get('device', '?')}; fitted from "
        f"{' + '.join(f'{Path(p).name}{csvs}.csv' for p in runs)} ({len(segments)} of {len(sweep.segments)} "
        f"segments{f'; step time from {sum(b.steps for b in steps)} logged steps' if logged else ''})"
    )
    profile = LlmProfile(
        step=step,
        kv_cache_tokens=int(kv_tokens),
        max_batched_tokens=int(settings["max_batched_tokens"]),
        max_sequences=int(settings.get("max_sequences") or 1024),
        block_size=int(block),
        max_waiting=int(settings.get("max_waiting", 0)),
        kv_reserve=settings.get("kv_reserve", default_reserve),
        scheduled_ahead=1 if re.search(r"async_batching\W{0,3}true", sweep.header.get("engine", ""), re.I) else 0,
        gpu_busy_reading=round(sum(readings) / len(readings), 3) if readings else 1.0,
        ready_seconds=sweep.setting("ready_s") or 0.0,
        measured=measured[:512],
    )
    fixed, per_running = response_ms(profile, segments)
    return replace(profile, response_ms=fixed, response_per_running_ms=per_running)


def fit_step_time_from_aggregates(
    sweep: LlmSweep, segments: Sequence[Segment], kv_tokens: float, block: float
) -> StepTime:
    """The step time from the busy seconds of `segments` (see the module's docstring)."""
    seconds = busy_seconds(segments)
    if len(seconds) < 4:
        raise ValueError(
            f"{sweep.source}: {len(seconds)} busy seconds (>= {BUSY_RUNNING:g} running) in the fitted "
            "segments; the fit needs loads that keep the engine busy"
        )
    rows, weights = [], []
    for segment in segments:  # a segment's busy seconds together: a step of 0.5 s straddles two seconds
        busy = busy_seconds([segment])
        if not busy:
            continue
        terms = [0.0] * 4
        for second in busy:
            steps = second["output_tokens"] / second["running"]
            context = max(0.0, second["kv_used"] * kv_tokens - second["running"] * block / 2)
            for i, term in enumerate((steps, second["prompt_tokens"], second["output_tokens"], steps * context)):
                terms[i] += term / len(busy)
        weight = math.sqrt(len(busy))  # least squares on sums of n seconds: their noise grows as sqrt(n)
        rows.append([term * weight for term in terms])
        weights.append(weight)
    return StepTime(*(1000 * x for x in nonnegative_least_squares(rows, weights)))


def response_ms(profile: LlmProfile, segments: Sequence[Segment]) -> tuple[float, float]:
    """The mean time a first token takes from the engine to the client, drawn in the engine from an
    exponential of mean response_ms + response_per_running_ms x requests running, as (response_ms,
    response_per_running_ms): what each request's measured TTFT exceeds its TTFT in the engine (`profile`
    without a response time) by, regressed on the requests the engine ran when it yielded that first token
    (least squares, both >= 0), over the segments whose engine queue stayed empty (waiting_mean <
    QUIET_WAITING)."""
    engine_only = replace(profile, response_ms=0.0, response_per_running_ms=0.0)
    rows, gaps = [], []
    for segment in segments:
        if segment.rates.get("waiting_mean", 0) >= QUIET_WAITING:
            continue
        for request, ttft_ms in zip(replay(engine_only, segment), segment.first_tokens_ms, strict=True):
            if ttft_ms is not None and request.ttft_s is not None:
                rows.append([1.0, float(request.running_at_first_token)])
                gaps.append(ttft_ms - request.ttft_s * 1000)
    if not gaps:
        return 0.0, 0.0
    fixed, per_running = nonnegative_least_squares(rows, gaps)
    return round(fixed, 1), float(f"{per_running:.3g}")


def rounded(profile: LlmProfile) -> LlmProfile:
    """The profile with its figures at the precision the measurements carry (4 significant digits)."""

    def digits(value: float) -> float:
        return float(f"{value:.4g}")

    figures = asdict(profile.step)
    return replace(profile, step=StepTime(**{k: None if v is None else digits(v) for k, v in figures.items()}))


# --- the check -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    served_tok_s: float  # prompt and output tokens/s the engine processed during the segment
    refused_pct: float  # of the requests sent
    ttft_p99_ms: float | None  # of the requests answered by the segment's end and its drain (bench/llmcal's)


def measured(segment: Segment) -> Figures:
    rates = segment.rates
    sent = rates.get("sent") or len(segment.requests) or 1
    return Figures(
        served_tok_s=rates["prompt_tok_s"] + rates["output_tok_s"],
        refused_pct=100 * rates.get("refused", 0) / sent,
        ttft_p99_ms=rates.get("ttft_p99_ms"),
    )


def _p99(values: list[float]) -> float | None:
    values = sorted(values)
    return values[min(len(values) - 1, int(0.99 * len(values)))] if values else None


def replay(profile: LlmProfile, segment: Segment, served: list[float] | None = None) -> list[Request]:
    """The segment's requests through one replica of `profile`, those that finished by the end of the
    drain (what the harness did not cancel) with their answer; `served` gets the tokens/s of the segment."""
    engine = Engine(profile)
    requests = []
    for at, prompt, output in segment.requests:
        engine.advance_to(at)
        request = Request(at, prompt, output)
        requests.append(request)
        engine.submit(request)
    engine.advance_to(segment.seconds)
    if served is not None:
        served.append((engine.prompt_tokens + engine.output_tokens) / segment.seconds)
    horizon = segment.seconds + segment.drain_s  # what is still running then, the harness cancels
    engine.advance_to(horizon)
    for request in requests:
        if request.done_s is not None and request.done_s > horizon:
            request.done_s = request.first_token_s = None
    return requests


def replayed(profile: LlmProfile, segment: Segment) -> Figures:
    """The segment's figures as bench/llmcal computes them, from its requests through `profile`."""
    served: list[float] = []
    requests = replay(profile, segment, served)
    first = [r.ttft_s * 1000 for r in requests if r.done_s is not None and not r.refused]
    return Figures(
        served_tok_s=served[0],
        refused_pct=100 * sum(r.refused for r in requests) / max(1, len(requests)),
        ttft_p99_ms=_p99(first),
    )


@dataclass(frozen=True)
class Check:
    segment: Segment
    measured: Figures
    replayed: Figures

    @property
    def served_error(self) -> float:
        """Relative error of the replayed served tokens/s."""
        return self.replayed.served_tok_s / self.measured.served_tok_s - 1 if self.measured.served_tok_s else 0.0

    @property
    def refused_points(self) -> float:
        return self.replayed.refused_pct - self.measured.refused_pct

    @property
    def ttft_error(self) -> float | None:
        want, got = self.measured.ttft_p99_ms, self.replayed.ttft_p99_ms
        if not want or got is None:
            return None
        return got / want - 1

    @property
    def within(self) -> bool:
        """Within the issue's bounds: served 10%, refused 2 points, TTFT p99 25%."""
        ttft = self.ttft_error
        return (
            abs(self.served_error) <= SERVED_WITHIN
            and abs(self.refused_points) <= REFUSED_POINTS
            and (ttft is None or abs(ttft) <= TTFT_WITHIN)
        )

    def line(self) -> str:
        m, r = self.measured, self.replayed

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.0f}"

        ttft = "" if self.ttft_error is None else f" ({100 * self.ttft_error:+.0f}%)"
        return (
            f"{self.segment.name}: served {m.served_tok_s:.0f} / {r.served_tok_s:.0f} tok/s "
            f"({100 * self.served_error:+.1f}%), refused {m.refused_pct:.1f}% / {r.refused_pct:.1f}%, "
            f"TTFT p99 {ms(m.ttft_p99_ms)} / {ms(r.ttft_p99_ms)} ms{ttft}"
        )


def check_llm(profile: LlmProfile, segments: Sequence[Segment]) -> list[Check]:
    return [Check(s, measured(s), replayed(profile, s)) for s in segments]


def split_rates(sweep: LlmSweep) -> tuple[list[Segment], list[Segment]]:
    """(fit, held out): each mix's sweep segments by offered rate, alternately; step segments are held out."""
    fit, held = [], []
    for mix in sweep.mixes:
        ranked = sorted((s for s in sweep.segments if s.mix == mix and s.kind == "sweep"), key=lambda s: s.offered_rps)
        fit += ranked[0::2]
        held += ranked[1::2]
    held += [s for s in sweep.segments if s.kind != "sweep"]
    return fit, held


def split_step_rates(steps: Sequence[StepBin]) -> list[StepBin]:
    """The logged steps of a fit on half the rates: as split_rates, of the runs' own segments (each mix's
    sweep segments by offered rate, alternately: the first, third, ...), and the engine profile's."""
    fitted = []
    for mix in dict.fromkeys(b.mix for b in steps if b.mix != PROFILE_MIX):
        rates = sorted({b.offered_rps for b in steps if b.mix == mix and b.kind == "sweep"})
        fitted += [b for b in steps if b.mix == mix and b.kind == "sweep" and b.offered_rps in rates[0::2]]
    return [b for b in steps if b.mix == PROFILE_MIX] + fitted


def split_mixes(sweep: LlmSweep, fit_mix: str) -> tuple[list[Segment], list[Segment]]:
    """(fit, held out): every segment of `fit_mix`, and every segment of the others."""
    return [s for s in sweep.segments if s.mix == fit_mix], [s for s in sweep.segments if s.mix != fit_mix]


# --- a sweep of the simulated engine ----------------------------------------------------------


def simulated_segment(
    profile: LlmProfile,
    mix: str,
    sizes: Sequence[tuple[int, int]],
    rate: Callable[[float], float] | float,
    seconds: int,
    seed: int,
    kind: str = "sweep",
    drain_s: float = DRAIN_S,
) -> Segment:
    """What bench/llmcal would record of one segment if the engine were `profile`: Poisson arrivals
    at `rate` requests/s (a number, or a function of the time), sizes drawn from `sizes`."""
    rng = random.Random(seed)
    rate_at = rate if callable(rate) else (lambda _t, r=rate: r)
    engine = Engine(profile)
    requests: list[Request] = []
    rows: list[dict[str, float]] = []
    t = 0.0
    for second in range(seconds):
        before = (engine.prompt_tokens, engine.output_tokens, engine.busy_s, len(requests))
        readings = []
        for k in range(SAMPLES_PER_SECOND):
            end = second + (k + 1) / SAMPLES_PER_SECOND
            while True:
                gap = rng.expovariate(max(rate_at(t), 1e-9))
                if t + gap >= end:
                    break
                t += gap
                engine.advance_to(t)
                prompt, output = rng.choice(sizes)
                request = Request(t, prompt, output)
                requests.append(request)
                engine.submit(request)
            t = end
            engine.advance_to(end)
            readings.append((engine.running, len(engine.waiting), engine.kv_fraction))
        finished = sum(1 for r in requests if r.done_s is not None and second <= r.done_s < second + 1)
        rows.append(
            {
                "t_s": float(second),
                "arrivals": float(len(requests) - before[3]),
                "finished": float(finished),
                "prompt_tokens": float(engine.prompt_tokens - before[0]),
                "output_tokens": float(engine.output_tokens - before[1]),
                "running": sum(r[0] for r in readings) / len(readings),
                "waiting": sum(r[1] for r in readings) / len(readings),
                "kv_used": sum(r[2] for r in readings) / len(readings),
                "pending": 0.0,
                "gpu_util": profile.gpu_busy_reading * min(1.0, engine.busy_s - before[2]),
            }
        )
    served_prompt, served_output = engine.prompt_tokens / seconds, engine.output_tokens / seconds
    engine.advance_to(seconds + drain_s)
    answered = [r for r in requests if r.done_s is not None and not r.refused and r.done_s <= seconds + drain_s]
    ttfts = [r.ttft_s * 1000 for r in answered]
    offered = rate_at(seconds) if callable(rate) else float(rate)
    rates = {
        "offered_rps": offered,
        "seconds": float(seconds),
        "sent": float(len(requests)),
        "finished": float(len(answered)),
        "refused": float(sum(r.refused for r in requests)),
        "unfinished": float(len(requests) - len(answered) - sum(r.refused for r in requests)),
        "served_rps": len(answered) / seconds,
        "prompt_tok_s": served_prompt,
        "output_tok_s": served_output,
        "ttft_p99_ms": _p99(ttfts) or 0.0,
        "running_mean": sum(r["running"] for r in rows) / len(rows),
        "kv_used_mean": sum(r["kv_used"] for r in rows) / len(rows),
        "preempted": float(engine.preemptions),
    }
    return Segment(
        mix=mix,
        kind=kind,
        offered_rps=offered,
        seconds=float(seconds),
        rates=rates,
        requests=tuple((r.arrival_s, r.prompt, r.output) for r in requests),
        per_second=tuple(rows),
        drain_s=drain_s,
        first_tokens_ms=tuple(None if r.ttft_s is None else r.ttft_s * 1000 for r in requests),
    )


def simulated_sweep(
    profile: LlmProfile,
    mixes: dict[str, Sequence[tuple[int, int]]],
    fractions: Sequence[float],
    seconds: int,
    seed: int = 0,
) -> LlmSweep:
    """Each mix at each fraction of the profile's saturated requests/s for that mix, `seconds` each."""
    header = {
        "device": "simulated",
        "kv_tokens": str(profile.kv_cache_tokens),
        "block_size": str(profile.block_size),
        "max_batch_tokens": str(profile.max_batched_tokens),
        "max_requests": str(profile.max_sequences),
        "queue_limit": str(profile.max_waiting),
        "drain_s": str(DRAIN_S),
    }
    segments = []
    for index, (mix, sizes) in enumerate(mixes.items()):
        capacity = saturated_rps(profile, TokenMix.from_sizes(list(sizes)))
        for k, fraction in enumerate(fractions):
            rate = round(fraction * capacity, 3)
            segments.append(simulated_segment(profile, mix, sizes, rate, seconds, seed + 100 * index + k))
    return LlmSweep("simulated-", header, tuple(segments))


def write_llm_sweep(sweep: LlmSweep, prefix: str | Path) -> None:
    """The sweep as the three CSVs of the brief's format (columns it does not hold stay empty)."""
    head = "".join(f"# {key}: {value}\n" for key, value in sweep.header.items())

    def write(name: str, columns: Sequence[str], rows: Iterable[dict]) -> None:
        with open(f"{prefix}{name}.csv", "w", newline="") as out:
            out.write(head)
            writer = csv.DictWriter(out, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def labels(s: Segment) -> dict:
        return {"mix": s.mix, "segment": s.kind, "offered_rps": s.offered_rps}

    write("rates", RATES_COLUMNS, ({**s.rates, **labels(s)} for s in sweep.segments))
    write(
        "requests",
        REQUESTS_COLUMNS,
        (
            {**labels(s), "sent_s": at, "prompt_tokens": p, "max_tokens": o, "ttft_ms": ttft, "outcome": "ok"}
            for s in sweep.segments
            for (at, p, o), ttft in zip(s.requests, s.first_tokens_ms, strict=True)
        ),
    )
    write("seconds", SECONDS_COLUMNS, ({**second, **labels(s)} for s in sweep.segments for second in s.per_second))
