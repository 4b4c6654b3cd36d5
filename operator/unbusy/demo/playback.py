"""The demo's load step and what it records, summarised (pure: no clock, no cluster).

The player (demo/player.py) takes one Sample a second: what the load generator saw happen to
its requests (offered, answered by each variant, refused with a 503) and what the cluster
showed (the main variant's replicas, the fallback's route weight, the last scaling decision).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from unbusy.api import InferenceService
from unbusy.api.model import Serving
from unbusy.render.context import replica_bounds
from unbusy.serving.model import slowed
from unbusy.sim.stats import Histogram


@dataclass(frozen=True)
class Roles:
    variant: str  # the main variant: the heaviest that is not the fallback
    fallback: str
    weight: int
    min_replicas: int
    max_replicas: int


def roles(isvc: InferenceService) -> Roles:
    """The variant the step scales and the fallback it sheds to (a fallback implies mode operator);
    raises ValueError naming the field."""
    if isvc.spec.fallback is None:
        raise ValueError("spec.fallback: the demo plays shedding to a fallback variant; declare one")
    fallback = isvc.spec.fallback.variant
    main = max((v for v in isvc.spec.effective_variants() if v.name != fallback), key=lambda v: v.weight)
    return Roles(main.name, fallback, main.weight, *replica_bounds(isvc, main))


def slowed_manifest(manifest: dict, factor: float, batch: float, serving: Serving) -> dict:
    """An InferenceService manifest whose model, serving as `serving`, is slowed `factor` times with
    batches `batch` times the size (serving/model.py `slowed`): the profile in spec.model.serving,
    Triton's batch sizes and queue delays, and the rates per replica its spec states, all scaled.
    Its queues (in requests), scaling and shedding are the same in the model's own time; its rates
    ones a real proxy and a Python load generator carry."""
    slow = {**manifest, "spec": {**manifest["spec"]}}
    spec = slow["spec"]
    spec["model"] = {**spec["model"], "serving": slowed(serving, factor, batch).to_wire()}
    for holder in [spec["model"], *spec.get("variants", [])]:
        if not holder.get("config"):
            continue
        config = holder["config"] = {**holder["config"]}
        if "maxBatchSize" in config:
            config["maxBatchSize"] = max(1, round(config["maxBatchSize"] * batch))
        if batching := config.get("dynamicBatching"):
            batching = config["dynamicBatching"] = {**batching}
            if "maxQueueDelayMicroseconds" in batching:
                batching["maxQueueDelayMicroseconds"] = round(batching["maxQueueDelayMicroseconds"] * factor * batch)
            if "preferredBatchSizes" in batching:
                batching["preferredBatchSizes"] = sorted(
                    {max(1, round(n * batch)) for n in batching["preferredBatchSizes"]}
                )
    capacity = spec.get("autoscaling", {}).get("capacity", {})
    if "rpsPerReplica" in capacity:
        spec["autoscaling"] = {**spec["autoscaling"], "capacity": {**capacity}}
        spec["autoscaling"]["capacity"]["rpsPerReplica"] = capacity["rpsPerReplica"] / factor
    if "fallback" in spec:
        spec["fallback"] = {**spec["fallback"], "rpsPerReplica": spec["fallback"]["rpsPerReplica"] / factor}
    return slow


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: int
    rps: float


def load_step(base_rps: float, factor: float, seconds: tuple[int, int, int]) -> tuple[Phase, ...]:
    """Low, `factor` times higher, low again; `seconds` long each."""
    before, step, after = seconds
    return (Phase("before", before, base_rps), Phase("step", step, base_rps * factor), Phase("after", after, base_rps))


@dataclass(frozen=True)
class Sample:
    second: int  # since the load step began
    phase: str
    offered: float  # requests that arrived in this second
    answered: float  # by the main variant's replicas
    fallback_answered: float  # by the fallback variant's replicas
    rejected: float  # refused with a 503 (queue full, or no ready replica)
    desired: int  # the main variant's replicas, as its Deployment asks
    ready: int
    fallback_weight: int  # percent of traffic the routes send to the fallback variant
    last_scaling: str  # status.lastScaling: "<from> -> <to>: <reason>", or ""
    learned_capacity: float | None = None  # the main variant's, status.learned (None: not yet)
    failed: float = 0.0  # answered with another error status, or no answer (connection failed)


@dataclass(frozen=True)
class Decision:
    second: int  # when the player first saw it
    text: str


@dataclass(frozen=True)
class Shedding:
    """The step's last minute (its second half, if shorter): what main and the fallback answered
    against main's ready capacity at the profile's rate (what the emulator serves)."""

    seconds: int
    ready: float  # main's ready replicas, mean
    answered_rps: float  # by main
    of_capacity_pct: float  # main's answered / (ready x the profile's capacity)
    fallback_pct: float  # of the offered requests, answered by the fallback
    excess_pct: float  # of the offered requests, beyond main's ready capacity


@dataclass(frozen=True)
class Summary:
    phases: tuple[Phase, ...]
    variant: str
    fallback: str
    max_replicas: int
    requests: float
    answered: float
    fallback_answered: float
    rejected: float
    rejected_by_phase: dict[str, float]
    p99_ms: dict[str, float | None]  # of the answered requests, per phase and "all"
    replicas: tuple[int, int, int]  # ready at the start, at most, at the end
    weight_max: int
    weight_end: int
    shed_from: int | None  # second the fallback first took weight
    restored_at: int | None  # second its weight was back to 0 for good, after it took some
    decisions: tuple[Decision, ...] = field(default=())
    capacity_rps: float | None = None  # one main replica's, by the profile the emulator serves
    learned_capacity: dict[str, tuple[float, float] | None] = field(default_factory=dict)  # per phase: least, most
    shedding: Shedding | None = None
    failed: float = 0.0  # answered with another error status, or not at all

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def queued(self) -> float:
        """Requests still queued at the end (arrived, neither answered nor refused yet)."""
        return self.requests - self.answered - self.fallback_answered - self.rejected - self.failed


def _shedding(samples: Sequence[Sample], step: str, capacity_rps: float | None) -> Shedding | None:
    in_step = [s for s in samples if s.phase == step]
    late = in_step[-min(60, len(in_step) // 2) :] if len(in_step) >= 2 else []
    if not capacity_rps or not late:
        return None
    offered = sum(s.offered for s in late)
    ready = sum(s.ready for s in late) / len(late)
    answered = sum(s.answered for s in late) / len(late)
    capacity = ready * capacity_rps * len(late)
    return Shedding(
        seconds=len(late),
        ready=ready,
        answered_rps=answered,
        of_capacity_pct=100 * answered * len(late) / capacity if capacity else 0.0,
        fallback_pct=100 * sum(s.fallback_answered for s in late) / offered if offered else 0.0,
        excess_pct=100 * max(0.0, offered - capacity) / offered if offered else 0.0,
    )


def summarize(
    samples: Sequence[Sample],
    latencies: Mapping[str, Histogram],
    phases: Sequence[Phase],
    variant: str,
    fallback: str,
    max_replicas: int,
    decided_before: str = "",
    capacity_rps: float | None = None,
) -> Summary:
    """The samples of one playback, with the answered requests' latencies per phase; `decided_before`
    is the last scaling decision as the playback began (not one of its own); `capacity_rps` is what
    one main replica serves by the profile the emulator serves (for the step's shedding line)."""
    everything = Histogram()
    for histogram in latencies.values():
        everything.merge(histogram)
    p99 = {phase.name: latencies[phase.name].quantile(0.99) if phase.name in latencies else None for phase in phases}
    p99["all"] = everything.quantile(0.99)
    weights = [s.fallback_weight for s in samples]
    shed = [s.second for s in samples if s.fallback_weight > 0]
    restored = next((s.second for s in samples if shed and s.second > shed[-1]), None)
    decisions, seen = [], decided_before
    for s in samples:
        if s.last_scaling and s.last_scaling != seen:
            decisions.append(Decision(s.second, s.last_scaling))
        seen = s.last_scaling or seen
    return Summary(
        phases=tuple(phases),
        variant=variant,
        fallback=fallback,
        max_replicas=max_replicas,
        requests=sum(s.offered for s in samples),
        answered=sum(s.answered for s in samples),
        fallback_answered=sum(s.fallback_answered for s in samples),
        rejected=sum(s.rejected for s in samples),
        rejected_by_phase={p.name: sum(s.rejected for s in samples if s.phase == p.name) for p in phases},
        p99_ms=p99,
        replicas=(samples[0].ready, max(s.ready for s in samples), samples[-1].ready) if samples else (0, 0, 0),
        weight_max=max(weights, default=0),
        weight_end=weights[-1] if weights else 0,
        shed_from=shed[0] if shed else None,
        restored_at=restored,
        decisions=tuple(decisions),
        capacity_rps=capacity_rps,
        learned_capacity={p.name: _range([s.learned_capacity for s in samples if s.phase == p.name]) for p in phases},
        shedding=_shedding(samples, phases[1].name, capacity_rps) if len(phases) > 1 else None,
        failed=sum(s.failed for s in samples),
    )


def _range(values: Sequence[float | None]) -> tuple[float, float] | None:
    known = [v for v in values if v is not None]
    return (min(known), max(known)) if known else None


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _at(second: int | None, phases: Sequence[Phase]) -> str:
    """`41 s into the step` for a second since the playback began."""
    if second is None:
        return "never"
    start = 0
    for phase in phases:
        if second < start + phase.seconds:
            return f"{second - start} s into '{phase.name}'"
        start += phase.seconds
    return f"{second} s"


def report(summary: Summary) -> str:
    """The summary as the demo prints it."""
    s, phases = summary, summary.phases
    shape = " -> ".join(f"{_n(p.rps)} rps for {p.seconds} s" for p in phases)
    start, most, end = s.replicas
    answered = s.answered + s.fallback_answered
    lines = [
        f"load step: {shape}",
        f"  requests            {_n(s.requests)}",
        f"  answered            {_n(answered)} ({_share(answered, s.requests)}):"
        f" {s.variant} {_n(s.answered)}, {s.fallback} (fallback) {_n(s.fallback_answered)}",
        f"  503s                {_n(s.rejected)} ({_share(s.rejected, s.requests)}): "
        + ", ".join(f"{name} {_n(count)}" for name, count in s.rejected_by_phase.items()),
        f"  other failures      {_n(s.failed)} (another status, or no answer)",
        "  p99 (answered)      " + ", ".join(f"{name} {_ms(ms)}" for name, ms in s.p99_ms.items()),
        f"  {s.variant} replicas       ready {start} -> {most} (maxReplicas {s.max_replicas}) -> {end}",
        f"  weight on {s.fallback:<9} 0% -> {s.weight_max}% (from {_at(s.shed_from, phases)}) -> {s.weight_end}%"
        + (f" (from {_at(s.restored_at, phases)})" if s.restored_at is not None else ""),
    ]
    if any(s.learned_capacity.values()):
        seen = ", ".join(
            f"{name} {_n(span[0])}" + (f"-{_n(span[1])}" if span[1] != span[0] else "")
            for name, span in s.learned_capacity.items()
            if span is not None
        )
        profile = f" (the profile's {_n(s.capacity_rps)})" if s.capacity_rps else ""
        lines.append(f"  learned capacity    {seen} rps/replica{profile}")
    if s.shedding is not None:
        sh = s.shedding
        lines.append(
            f"  step's last {sh.seconds} s    {s.variant} answered {_n(sh.answered_rps)}/s:"
            f" {sh.of_capacity_pct:.1f}% of its {sh.ready:.3g} ready replicas' capacity;"
            f" {s.fallback} {sh.fallback_pct:.1f}% of the requests,"
            f" the excess over that capacity {sh.excess_pct:.1f}%"
        )
    if s.decisions:
        lines.append("  scaling decisions seen (status.lastScaling):")
        lines += [f"    {_at(d.second, phases):<22} {d.text}" for d in s.decisions]
    return "\n".join(lines) + "\n"


def table(samples: Sequence[Sample], every: int, variant: str, fallback: str) -> str:
    """Replicas and traffic over time, one row per `every` seconds of a phase (rates are the row's means,
    replicas and weight as at its last second)."""
    header = (
        f"{'time':>6}  {'phase':<6} {'offered/s':>9} {'answered/s':>10} {'503/s':>6}"
        f"  {variant + ' ready/desired':>18}  {fallback + ' weight':>12}"
    )
    rows = [header]
    spans: list[list[Sample]] = []
    for sample in samples:
        if not spans or sample.phase != spans[-1][0].phase or len(spans[-1]) == every:
            spans.append([])
        spans[-1].append(sample)
    for span in spans:
        last = span[-1]
        offered, rejected = (sum(getattr(s, of) for s in span) / len(span) for of in ("offered", "rejected"))
        answered = sum(s.answered + s.fallback_answered for s in span) / len(span)
        rows.append(
            f"{span[0].second:>5}s  {span[0].phase:<6} {_n(offered):>9} {_n(answered):>10} {_n(rejected):>6}"
            f"  {f'{last.ready}/{last.desired}':>18}  {f'{last.fallback_weight}%':>12}"
        )
    return "\n".join(rows) + "\n"


def rows_every(seconds: int, rows: int = 16) -> int:
    """A row span that shows `seconds` in about `rows` rows, in whole 5 s."""
    return max(5, 5 * math.ceil(seconds / rows / 5))
