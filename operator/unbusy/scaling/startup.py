"""Start-up per replica, learned: how long a new pod takes from its creation to Ready.

Scheduling, image pull and model load (6.5-17 s of model load alone on an H100 for the models
measured) are visible on every pod the operator already lists: metadata.creationTimestamp and
the Ready condition's lastTransitionTime. Each pod counts once, when first seen Ready; the
estimate is the median of the last few, so one pod whose readiness flapped long after its
start (its Ready time is the last transition) cannot throw it. The headroom and burst rules
use it where the spec gives no capacity.startupSeconds; an explicit value stays authoritative.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from statistics import median

# Until a pod of the variant has been seen start: what a model load and an image pull take.
DEFAULT_SECONDS = 60.0
# The median of this many of the latest start-ups.
KEPT = 5


@dataclass(frozen=True)
class PodStart:
    """One live pod's creation and, while Ready, when it became so (seconds since the epoch)."""

    name: str
    created: float | None
    ready_since: float | None


@dataclass(frozen=True)
class Startup:
    recent: tuple[float, ...] = ()  # the latest start-ups in seconds, oldest first
    counted: frozenset[str] = frozenset()  # live pods already counted

    @property
    def seconds(self) -> float | None:
        """The learned start-up; None before any pod was seen start."""
        return median(self.recent) if self.recent else None


def learn(previous: Startup, pods: Iterable[PodStart]) -> Startup:
    """The start-ups of the pods seen Ready for the first time added; pods gone are forgotten."""
    pods = list(pods)
    new = [
        p.ready_since - p.created
        for p in sorted(pods, key=lambda p: p.ready_since or 0.0)
        if p.name not in previous.counted
        and p.created is not None
        and p.ready_since is not None
        and p.ready_since >= p.created
    ]
    ready = {p.name for p in pods if p.ready_since is not None}
    live = {p.name for p in pods}
    return Startup((*previous.recent, *new)[-KEPT:], frozenset((previous.counted & live) | ready))


def seconds(spec_seconds: int | None, learned: Startup) -> float:
    """The start-up the rules use: the spec's when it gives one, else the learned, else the default."""
    if spec_seconds is not None:
        return float(spec_seconds)
    found = learned.seconds
    return DEFAULT_SECONDS if found is None else found


def used(spec_seconds: int | None, learned: Startup) -> str:
    """Where seconds() takes the start-up from, as the status says it."""
    if spec_seconds is not None:
        return "spec"
    return "learned" if learned.recent else f"default {DEFAULT_SECONDS:.0f}s"
