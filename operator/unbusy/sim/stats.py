"""What a simulation measures: latency percentiles, minutes within the SLO, GPU-hours."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Latencies land in buckets 2% wide from 0.01 ms up: percentiles to 2% at any scale, in little memory.
_FLOOR_MS = 0.01
_LOG_STEP = math.log(1.02)
# A minute is within the SLO when this share of its requests was answered within the latency target.
SLO_SHARE = 0.99


class Histogram:
    def __init__(self) -> None:
        self.counts: dict[int, float] = {}
        self.total = 0.0

    def add(self, ms: float, weight: float) -> None:
        bucket = int(math.log(max(ms, _FLOOR_MS) / _FLOOR_MS) / _LOG_STEP)
        self.counts[bucket] = self.counts.get(bucket, 0.0) + weight
        self.total += weight

    def merge(self, other: Histogram) -> None:
        for bucket, count in other.counts.items():
            self.counts[bucket] = self.counts.get(bucket, 0.0) + count
        self.total += other.total

    def quantile(self, q: float) -> float | None:
        """The q-quantile in ms (a bucket's middle), None without observations."""
        if self.total <= 0:
            return None
        seen = 0.0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= q * self.total:
                return _FLOOR_MS * math.exp(_LOG_STEP * (bucket + 0.5))
        return _FLOOR_MS * math.exp(_LOG_STEP * (max(self.counts) + 0.5))


@dataclass(frozen=True)
class Minute:
    minute: int
    load_rps: float  # offered load: mean requests per second arriving
    replicas: float  # mean replicas holding a GPU (loading, draining and fallback ones included)
    ready: float  # mean replicas ready to serve
    p99_ms: float | None  # of the answered requests
    rejected: float  # requests refused (queue full, or no ready replica)
    shed: float  # requests sent to the fallback variant
    within_slo: bool  # SLO_SHARE of the minute's requests answered within the SLO (a rejection is a miss)


@dataclass(frozen=True)
class SimResult:
    rejected_pct: float
    p50_ms: float | None
    p99_ms: float | None
    slo_minutes_pct: float
    gpu_hours: float
    scaling_events: int
    minutes: tuple[Minute, ...]
    fallback_pct: float = 0.0  # of the requests, sent to the fallback variant (served by the smaller model)

    def first_episode(self) -> tuple[Minute, ...]:
        """The first minutes in a row with refusals: for the reactive floor, what no policy that
        cannot see the future avoids (the first rise comes before any replica ordered for it is ready)."""
        episode: list[Minute] = []
        for minute in self.minutes:
            if minute.rejected > 0:
                episode.append(minute)
            elif episode:
                break
        return tuple(episode)

    def first_episode_pct(self) -> float:
        """Of all requests, the share refused in the first episode."""
        arrived = sum(m.load_rps * 60 for m in self.minutes)
        refused = sum(m.rejected for m in self.first_episode())
        return 100 * refused / arrived if arrived else 0.0

    def first_episode_misses(self) -> int:
        """The first episode's minutes that refused more than 1 - SLO_SHARE of their requests: outside
        the SLO for any policy that refuses at least as many (a refusal is a miss)."""
        return sum(1 for m in self.first_episode() if m.rejected > (1 - SLO_SHARE) * m.load_rps * 60)

    def figures(self) -> dict[str, Any]:
        """The figures `unbusy simulate --json` prints, rounded for reading."""

        def rounded(value: float | None, digits: int) -> float | None:
            return None if value is None else round(value, digits)

        return {
            "rejected_pct": round(self.rejected_pct, 3),
            "p50_ms": rounded(self.p50_ms, 2),
            "p99_ms": rounded(self.p99_ms, 2),
            "slo_minutes_pct": round(self.slo_minutes_pct, 2),
            "gpu_hours": round(self.gpu_hours, 4),
            "fallback_pct": round(self.fallback_pct, 3),
        }
