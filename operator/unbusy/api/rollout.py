"""spec.rollout: rolling updates, and canary rollouts of a variant."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from unbusy.api.base import PERCENT_OR_COUNT_PATTERN, ApiModel, Rule

# A variant's canary runs beside it as this extra track until promoted or rolled back.
CANARY_SUFFIX = "-canary"


class CanaryStep(ApiModel):
    weight: int = Field(ge=1, le=100, description="Share of the variant's traffic the canary takes, in percent.")
    pause_seconds: int = Field(
        60, ge=0, le=86400, description="How long the canary stays at this weight, passing every analysis."
    )


class RolloutCheck(ApiModel):
    rules: ClassVar = (
        Rule(
            "has(self.max) != has(self.maxRatioToStable)",
            "set exactly one of max (an absolute limit) or maxRatioToStable (a limit relative to the stable "
            "version over the same window)",
            lambda c: (c.max is None) != (c.max_ratio_to_stable is None),
            ".max",
        ),
    )

    metric: Literal["p99LatencyMs", "errorRatePercent", "queueTimeMs"] = Field(
        description="p99LatencyMs: Triton's p99 request latency (its summary, the slowest pod); errorRatePercent: "
        "failed requests in percent, Triton's failures and, where the edge is read (autoscaling.demand), "
        "its 503s; queueTimeMs: mean time a request waits in Triton's queue."
    )
    max: float | None = Field(None, ge=0, description="The canary fails the check above this value.")
    max_ratio_to_stable: float | None = Field(
        None,
        ge=1,
        le=100,
        description="The canary fails the check above the stable version's value times this, over the same window.",
    )


def _default_steps() -> list[CanaryStep]:
    return [CanaryStep(weight=w) for w in (10, 25, 50, 100)]


def _default_checks() -> list[RolloutCheck]:
    return [
        RolloutCheck(metric="p99LatencyMs", max_ratio_to_stable=1.5),
        RolloutCheck(metric="errorRatePercent", max=1),
    ]


class CanaryStrategy(ApiModel):
    """A new model version, image or model config of a variant runs as its canary first."""

    rules: ClassVar = (
        Rule(
            "self.steps.map(s, s.weight).isSorted()",
            "the steps' weights must rise (e.g. 10, 25, 50, 100)",
            lambda c: [s.weight for s in c.steps] == sorted(s.weight for s in c.steps),
            ".steps",
        ),
    )

    steps: list[CanaryStep] = Field(
        default_factory=_default_steps,
        min_length=1,
        max_length=20,
        description="Weights the canary takes in turn, each held for its pauseSeconds; promoted after the last.",
    )
    analysis_interval_seconds: int = Field(
        30, ge=5, le=3600, description="How often the checks are measured, each over the last interval."
    )
    checks: list[RolloutCheck] = Field(
        default_factory=_default_checks, min_length=1, max_length=8, description="What the canary must pass."
    )
    failure_limit: int = Field(
        2, ge=1, le=100, description="Failed analyses after which the canary is rolled back (weight 0, removed)."
    )


class Rollout(ApiModel):
    canary: CanaryStrategy | None = Field(
        None,
        description="Progressive delivery: a changed modelVersion, modelRepository, image or model config of a "
        "variant is served by a canary that takes traffic step by step, promoted or rolled back on its checks. "
        "Without it a change replaces the variant in place (a rolling update).",
    )
    max_surge: str = Field(
        "25%", pattern=PERCENT_OR_COUNT_PATTERN, max_length=8, description="Extra replicas during an update."
    )
    max_unavailable: str = Field(
        "10%", pattern=PERCENT_OR_COUNT_PATTERN, max_length=8, description="Replicas that may be down in an update."
    )
    revision_history_limit: int = Field(5, ge=0, le=100, description="Old ReplicaSets kept for rollback.")
    progress_deadline_seconds: int = Field(
        1200, ge=60, le=86400, description="Time before an update without progress is reported as failed."
    )
