"""One read of Prometheus for a whole fleet's scaling tick: each query runs once, grouped by the
labels that say whose series a row is, and each variant picks its rows out of the answers.

Per-pod inputs are grouped by namespace, pod and model (DCGM's by namespace and pod): a variant
takes the rows of its live pods, as its own `by (pod)` query would have returned them. Demand
from an edge is a sum of counters (render/edge.py's Counter): one query per counter metric and
fixed matchers, grouped by every label any variant's counter names; a variant sums the rows its
counters match (equal to its label values, or matching its patterns where a label's value is
not known exactly, as Traefik's service names). A user's own demand PromQL (source promql) cannot be grouped and runs as
written, once per variant. The seasonal floor (autoscaling.seasonal) reads the same counters a
period ago, one query per counter and (period, lead) in use: the most of the grouped rate over
the lead, `offset` so that it ends where the same time a period ago plus the lead does. A
variant sums its rows' maxima: at most the max of their sum, an upper bound where its counters
peaked at different times. Pure: the answers come in as rows, from scaling/source.py.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields

from unbusy import series
from unbusy.api import InferenceService
from unbusy.api.autoscaling import Seasonal
from unbusy.render.edge import Counter, Counters, DemandQueries
from unbusy.scaling import policy, tokens
from unbusy.scaling.demand import Demand
from unbusy.scaling.policy import ReplicaSample
from unbusy.scaling.promql import FLEET_DCGM_BY, FLEET_TRITON_BY, LlmQueries, PerPod, fleet_per_pod, llm_queries
from unbusy.scaling.startup import PodStart
from unbusy.serving.llm import LlmProfile, SizeHistogram

Labels = Mapping[str, str]
Rows = list[tuple[Labels, float]]


class SourceError(Exception):
    """Prometheus could not be read; the policy holds and says why."""


@dataclass(frozen=True)
class VariantRead:
    """What one variant needs from the fleet's read."""

    namespace: str
    model: str
    mig: bool  # its GPUs are MIG slices: GR engine activity, not GPU utilisation
    pods: Mapping[str, bool]  # its live pods -> ready
    demand: DemandQueries
    seasonal: Seasonal | None = None  # autoscaling.seasonal when enabled
    llm: LlmRead | None = None  # an LLM variant's token signals (spec.model.llm)
    ready_seconds: Mapping[str, float] = field(default_factory=dict)  # Ready pods -> how long they have been
    starts: tuple[PodStart, ...] = ()  # its live pods' creation and Ready times
    sheds: bool = False  # the InferenceService has a fallback: shedding reads the demand's latest rate too


@dataclass(frozen=True)
class LlmRead:
    """What an LLM variant reads beside its per-pod samples: its engine's signals, run as written
    (their constants are the spec's: one query per variant and signal), and the spec's numbers."""

    queries: LlmQueries
    costs: tokens.TokenCosts
    ttft_slo_ms: float
    tpot_slo_ms: float | None
    pricing: tokens.Pricing | None = None  # spec.model.llm.profile: each mix priced by the engine's model

    @property
    def texts(self) -> tuple[str, ...]:
        q = self.queries
        found = (
            q.prompt_tokens_per_pod,
            q.output_tokens_per_pod,
            q.finished_per_pod,
            q.ttft_p99_seconds,
            q.tpot_p99_seconds,
            q.least_waiting_per_pod,
            q.kv_used_per_pod,
            # The sizes' spread prices the mix by the profile: read only with one.
            *((q.prompt_tokens_buckets, q.output_tokens_buckets) if self.pricing else ()),
        )
        return tuple(text for text in found if text)


def llm_read(isvc: InferenceService, variant: str, share: float, window_seconds: int) -> LlmRead | None:
    """An LLM variant's token signals and the spec's numbers for them; None for other models."""
    llm, queries = isvc.spec.model.llm, llm_queries(isvc, variant, share, window_seconds)
    if llm is None or queries is None:
        return None
    costs = tokens.TokenCosts(llm.capacity.prompt_tokens_per_second, llm.capacity.output_tokens_per_second)
    return LlmRead(queries, costs, llm.slo.ttft_p99_ms, llm.slo.tpot_p99_ms, llm_pricing(isvc))


def llm_pricing(isvc: InferenceService) -> tokens.Pricing | None:
    """spec.model.llm.profile, to price each mix by; None without one."""
    llm = isvc.spec.model.llm
    if llm is None or llm.profile is None:
        return None
    target = (isvc.spec.autoscaling.targets.capacity_utilization_percent or 100) / 100
    return tokens.Pricing(LlmProfile.from_document(llm.profile.model_dump(by_alias=True)), target)


def _counter_query(
    metric: str, fixed: tuple[str, ...], by: Iterable[str], window_seconds: int, function: str = "rate"
) -> str:
    selected = series.selector(*fixed) if fixed else ""
    return f"sum by ({', '.join(sorted(by))}) ({function}({metric}{selected}[{window_seconds}s]))"


def _past(query: str, seasonal: Seasonal, window_seconds: int) -> str:
    """The most of `query` over the lead, a period ago: [now - period, now - period + lead]."""
    lead, offset = seasonal.lead_seconds, seasonal.period_seconds - seasonal.lead_seconds
    return f"max_over_time(({query})[{lead}s:{window_seconds}s] offset {offset}s)"


def _season(seasonal: Seasonal) -> tuple[int, int]:
    return seasonal.period_seconds, seasonal.lead_seconds


@functools.lru_cache(maxsize=4096)
def _compiled(regex: str) -> re.Pattern[str]:
    return re.compile(regex)


def _grouped_by(counter: Counter) -> tuple[str, ...]:
    """The labels a fleet query groups a counter's rows by: those it equals and those it matches."""
    return tuple(k for k, _ in (*counter.labels, *counter.patterns))


def _counters(demand: DemandQueries) -> tuple[Counters, ...]:
    return tuple(c for c in (demand.requests_counters, demand.rejected_counters) if c is not None)


@dataclass(frozen=True)
class Plan:
    """The queries of one fleet tick, each once."""

    per_pod: dict[bool, PerPod]  # mig -> the per-pod queries of every namespace read
    counters: dict[tuple[str, tuple[str, ...]], str]  # (metric, fixed matchers) -> grouped query
    own: tuple[str, ...]  # queries that run as written (a user's demand PromQL)
    # (metric, fixed matchers, period, lead) -> the grouped query of the seasonal floor
    past: dict[tuple[str, tuple[str, ...], int, int], str] = field(default_factory=dict)
    window_seconds: int = 60
    # (metric, fixed matchers) -> the grouped irate of the requests counters of services that shed
    latest: dict[tuple[str, tuple[str, ...]], str] = field(default_factory=dict)

    @property
    def queries(self) -> tuple[str, ...]:
        pods = (getattr(p, f.name) for p in self.per_pod.values() for f in fields(PerPod))
        found = [*pods, *self.counters.values(), *self.own, *self.past.values(), *self.latest.values()]
        return tuple(dict.fromkeys(found))


def plan(reads: Iterable[VariantRead], window_seconds: int = 60) -> Plan:
    """The queries for these variants' reads; `window_seconds` is the rate window, the one their
    DemandQueries were built with."""
    reads = list(reads)
    namespaces = sorted({r.namespace for r in reads})
    llm = [text for r in reads if r.llm is not None for text in r.llm.texts]
    per_pod = {mig: fleet_per_pod(namespaces, mig, window_seconds) for mig in sorted({r.mig for r in reads})}
    labels: dict[tuple[str, tuple[str, ...]], set[str]] = {}
    past: dict[tuple[str, tuple[str, ...], int, int], set[str]] = {}
    latest: set[tuple[str, tuple[str, ...]]] = set()
    own: list[str] = [*llm]
    for read in reads:
        grouped = _counters(read.demand)
        if not grouped:  # a user's PromQL
            own += [q for q in (read.demand.requests, read.demand.rejected) if q]
            if read.seasonal is not None:
                own.append(_past(read.demand.requests, read.seasonal, window_seconds))
        for counter in (c for counters in grouped for c in counters.counters):
            labels.setdefault((counter.metric, counter.fixed), set()).update(_grouped_by(counter))
        if read.seasonal is not None and read.demand.requests_counters is not None:
            for counter in read.demand.requests_counters.counters:
                key = (counter.metric, counter.fixed, *_season(read.seasonal))
                past.setdefault(key, set()).update(_grouped_by(counter))
        if read.sheds and read.demand.requests_counters is not None:
            latest.update((c.metric, c.fixed) for c in read.demand.requests_counters.counters)
    counters = {key: _counter_query(*key, by, window_seconds) for key, by in labels.items()}
    # Grouped by the same labels as the rate's, so that a variant picks its rows the same way.
    irates = {key: _counter_query(*key, labels[key], window_seconds, "irate") for key in sorted(latest)}
    seasonal = {
        (metric, fixed, period, lead): _past(
            _counter_query(metric, fixed, by, window_seconds),
            Seasonal(enabled=True, period_seconds=period, lead_seconds=lead),
            window_seconds,
        )
        for (metric, fixed, period, lead), by in past.items()
    }
    return Plan(per_pod, counters, tuple(dict.fromkeys(own)), seasonal, window_seconds, irates)


@dataclass
class Answers:
    """Prometheus's answer to each query of a plan (rows, or why there is none), indexed for the
    look-ups of a thousand variants."""

    plan: Plan
    rows: Mapping[str, Rows | SourceError]
    _indexes: dict[tuple[str, tuple[str, ...]], dict[tuple[str, ...], float]] = field(default_factory=dict)

    def _rows(self, query: str) -> Rows:
        answer = self.rows[query]
        if isinstance(answer, SourceError):
            raise answer
        return answer

    def _index(self, query: str, keys: tuple[str, ...]) -> dict[tuple[str, ...], float]:
        """Rows of `query` summed by the values of `keys` (absent labels read as "", as in PromQL)."""
        if (query, keys) not in self._indexes:
            index: dict[tuple[str, ...], float] = {}
            for labels, value in self._rows(query):
                at = tuple(labels.get(k, "") for k in keys)
                index[at] = index.get(at, 0.0) + value
            self._indexes[query, keys] = index
        return self._indexes[query, keys]

    def samples(self, read: VariantRead) -> tuple[ReplicaSample, ...]:
        """One sample per live pod, as scaling/source.py's per-variant read returns them."""
        queries = self.plan.per_pod[read.mig]

        def per_pod(query: str, by: tuple[str, ...]) -> dict[str, float]:
            index = self._index(query, by)
            at = {series.NAMESPACE: read.namespace, series.MODEL: read.model}
            found = {pod: index.get(tuple((at | {series.POD: pod})[k] for k in by)) for pod in read.pods}
            return {pod: value for pod, value in found.items() if value is not None}

        pending = per_pod(queries.pending, FLEET_TRITON_BY)
        gpu = per_pod(queries.gpu_utilization, FLEET_DCGM_BY)
        rate = per_pod(queries.request_rate, FLEET_TRITON_BY)
        waited = per_pod(queries.queue_time_ms, FLEET_TRITON_BY)
        served = per_pod(queries.served_rate, FLEET_TRITON_BY)
        least = per_pod(queries.least_pending, FLEET_TRITON_BY)
        refused = per_pod(queries.refused_rate, FLEET_TRITON_BY)
        batch = per_pod(queries.batch_mean, FLEET_TRITON_BY)
        return tuple(
            ReplicaSample(
                ready=ready,
                queue_depth=pending.get(pod),
                gpu_utilization=gpu.get(pod),
                request_rate=rate.get(pod),
                queue_time_ms=waited.get(pod),
                served_rate=served.get(pod),
                queue_depth_min=least.get(pod),
                # No series of refusals until the first one: a pod Triton serves refused none.
                refused_rate=refused.get(pod, 0.0 if pod in served else None),
                batch_mean=batch.get(pod),
                ready_seconds=read.ready_seconds.get(pod),
            )
            for pod, ready in sorted(read.pods.items())
        )

    def _sum(self, counters: Counters, season: tuple[int, int] | None = None, latest: bool = False) -> float | None:
        """The counters' summed rate (a period ago with `season`; between the last two scrapes with
        `latest`), times their share; None where none of their series exists."""
        values = []
        for counter in counters.counters:
            key = (counter.metric, counter.fixed)
            if latest:
                query = self.plan.latest[key]
            else:
                query = self.plan.past[*key, *season] if season else self.plan.counters[key]
            values.append(self._matched(query, counter) if counter.patterns else self._equal(query, counter))
        found = [v for v in values if v is not None]
        return sum(found) * counters.share if found else None

    def _equal(self, query: str, counter: Counter) -> float | None:
        """The counter's row of `query`, picked by its label values."""
        keys = tuple(k for k, _ in counter.labels)
        return self._index(query, keys).get(tuple(v for _, v in counter.labels))

    def _matched(self, query: str, counter: Counter) -> float | None:
        """The counter's rows of `query` summed: equal to its label values, matching its patterns
        (anchored regexes, which Python's re reads as Prometheus' RE2 does: no backreferences or
        lookarounds in them)."""
        index = self._index(query, _grouped_by(counter))
        equal = tuple(v for _, v in counter.labels)
        patterns = [_compiled(regex) for _, regex in counter.patterns]
        found = [
            value
            for at, value in index.items()
            if at[: len(equal)] == equal
            and all(p.fullmatch(v) for p, v in zip(patterns, at[len(equal) :], strict=True))
        ]
        return sum(found) if found else None

    def _own(self, query: str, field_name: str) -> float | None:
        try:
            values = [value for _, value in self._rows(query)]
        except SourceError as error:  # the user's template: the error is theirs to fix, so it names the field
            raise SourceError(f"spec.autoscaling.demand.{field_name}: {error}") from None
        total = sum(values)
        return None if not values or math.isnan(total) else total

    def seasonal(self, read: VariantRead) -> float | None:
        """The most demand of the same time a period ago over the lead (autoscaling.seasonal); None
        where it is off or Prometheus holds no series of it then (a young variant, short retention)."""
        if read.seasonal is None:
            return None
        counters = read.demand.requests_counters
        if counters is not None:
            return self._sum(counters, _season(read.seasonal))
        return self._own(_past(read.demand.requests, read.seasonal, self.plan.window_seconds), "query")

    def demand(self, read: VariantRead) -> Demand | None:
        """The variant's offered load; None while there is no series of it (not 0: a proxy exports
        a request counter only from its first request, and an unread edge is no idle one)."""
        queries = read.demand
        latest = None
        if queries.requests_counters is not None:
            rps = self._sum(queries.requests_counters)
            rejected = self._sum(queries.rejected_counters) if queries.rejected_counters and rps is not None else None
            latest = self._sum(queries.requests_counters, latest=True) if read.sheds else None
        else:
            rps = self._own(queries.requests, "query")
            rejected = self._own(queries.rejected, "rejectedQuery") if queries.rejected and rps is not None else None
        if rps is None:
            return None
        # Refused requests get a series of their own at the first refusal: until then there were none.
        return Demand(rps, rejected or 0.0, queries.source, queries.measurable, latest)

    def _by_pod(self, query: str | None) -> dict[str, float]:
        if query is None:
            return {}
        return {labels.get(series.POD, ""): value for labels, value in self._rows(query) if not math.isnan(value)}

    def _whole(self, query: str | None) -> float | None:
        if query is None:
            return None
        values = [value for _, value in self._rows(query) if math.isfinite(value)]
        return values[0] if values else None

    def _sizes(self, query: str) -> SizeHistogram | None:
        """A size histogram's buckets over the window (rows by `le`); None where it has none."""
        rows = [(float(labels.get(series.LE, "nan")), value) for labels, value in self._rows(query)]
        return SizeHistogram.from_cumulative((le, value) for le, value in rows if not math.isnan(le + value))

    def llm(self, read: VariantRead, current: int) -> policy.Observation:
        """An LLM variant's observation counted in weighted tokens (scaling/tokens.py): its pods'
        token counters, the edge's demand times the tokens a request costs, TTFT/TPOT/KV guards."""
        llm = read.llm
        q = llm.queries
        prompt, output = self._by_pod(q.prompt_tokens_per_pod), self._by_pod(q.output_tokens_per_pod)
        least_waiting, kv = self._by_pod(q.least_waiting_per_pod), self._by_pod(q.kv_used_per_pod)
        pods = sorted(read.pods.items())
        counted = [
            tokens.PodTokens(
                prompt.get(pod), output.get(pod), least_waiting.get(pod) if q.least_waiting_per_pod else None
            )
            for pod, _ in pods
        ]
        finished = sum(self._by_pod(q.finished_per_pod).values())
        sizes = tokens.Sizes()
        if llm.pricing:
            sizes = tokens.Sizes(self._sizes(q.prompt_tokens_buckets), self._sizes(q.output_tokens_buckets))
        costs = tokens.priced(llm.costs, llm.pricing, counted, finished, llm.ttft_slo_ms, sizes)
        # The seasonal floor reads requests a period ago: at what a request costs now, in tokens.
        past, cost = (
            self.seasonal(read),
            tokens.per_request(costs, sum(v for v in prompt.values()), sum(v for v in output.values()), finished),
        )
        ready_kv = [kv[pod] for pod, ready in pods if ready and pod in kv]
        ttft, tpot = self._whole(q.ttft_p99_seconds), self._whole(q.tpot_p99_seconds)
        latency = tokens.Latency(
            ttft_p99_ms=None if ttft is None else 1000 * ttft,
            ttft_slo_ms=llm.ttft_slo_ms,
            tpot_p99_ms=None if tpot is None else 1000 * tpot,
            tpot_slo_ms=llm.tpot_slo_ms,
            kv_used=max(ready_kv) if ready_kv else None,
        )
        edge = self.demand(read)
        seasonal = past * cost if past is not None and cost is not None else None
        return tokens.observation(current, self.samples(read), counted, edge, finished, latency, costs, seasonal)


def due(last: float | None, interval: float, now: float) -> bool:
    """Whether an InferenceService ticked last at `last` (None: never) is due at `now`: its ticks
    fall in wall-clock slots of `interval` seconds, so that every InferenceService of one interval
    ticks in the same slot, and one read serves them all."""
    return last is None or now // interval > last // interval
