"""The InferenceService status: what the operator observed and decided."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from unbusy.api.base import ApiModel
from unbusy.api.model import ModelConfig

ConditionType = Literal["Ready", "Progressing", "Degraded", "ScalingActive", "ModelReady"]


class Condition(ApiModel):
    type: ConditionType = Field(description="Ready, Progressing, Degraded, ScalingActive or ModelReady.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(max_length=128, description="One CamelCase word a machine can match on.")
    message: str = Field("", max_length=32768, description="What happened, in words a person understands.")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(None, description="The spec generation this condition is about.")


class VariantStatus(ApiModel):
    name: str = Field(description="Variant name.")
    weight: int = Field(description="Traffic share in percent now routed to it.")
    replicas: int = Field(0, description="Replicas that exist.")
    ready_replicas: int = Field(0, description="Replicas that pass the readiness probe.")
    desired_replicas: int = Field(0, description="Replicas the operator wants.")
    ready: bool = Field(False, description="All desired replicas are ready.")


class GpuStatus(ApiModel):
    mig_profile: str | None = Field(None, description="The MIG profile in use (resolved from auto).")
    resource_name: str = Field(description="The extended resource each replica requests, e.g. nvidia.com/mig-1g.10gb.")
    summary: str = Field(description="Short form for kubectl get, e.g. 1x H100-80GB or mig-1g.10gb.")


class ScalingDecision(ApiModel):
    time: str = Field(description="When the decision was made (RFC 3339).")
    variant: str = Field(description="The variant that was scaled.")
    from_replicas: int = Field(description="Replicas before.")
    to_replicas: int = Field(description="Replicas after.")
    reason: str = Field(description="Why, e.g. 'queue 34/replica > target 8: 3 -> 9'.")
    demand_source: str | None = Field(
        None, description="Where the variant's demand was read: nginx, envoy-gateway, istio, traefik, promql or triton."
    )
    capacity: str | None = Field(
        None, description="What one replica serves, learned from Triton's counters, e.g. '1,040 rps/replica'."
    )
    overload_measurable: bool | None = Field(
        None,
        description="False where demand is Triton's served rate: requests refused for a full queue are "
        "counted nowhere, so demand beyond capacity is not seen (read it at the edge: autoscaling.demand).",
    )
    floor: Literal["seasonal", "bursts"] | None = Field(
        None,
        description="Set when a floor, not the present demand, set the replicas: seasonal (the demand of the "
        "same time a period ago, autoscaling.seasonal) or bursts (replicas kept through a lull because the "
        "refusals they save in the next burst are worth their GPUs, autoscaling.capacity.refusalPriceGpuSeconds).",
    )


class Learned(ApiModel):
    """What the scaling loop has learned of one variant's replicas."""

    variant: str = Field(description="The variant.")
    capacity: float | None = Field(None, description="What one replica serves at saturation, to 3 figures.")
    capacity_unit: str = Field("rps", description="What capacity counts: rps, or tok/s (weighted tokens) for an LLM.")
    startup_seconds: int | None = Field(
        None,
        description="From a new pod's creation to Ready: the median of its latest pods (none seen start yet: empty).",
    )
    startup_used: str = Field(
        "",
        description="The start-up the headroom and burst rules use: 'learned', 'spec' "
        "(autoscaling.capacity.startupSeconds) or 'default 60s' until a pod has been seen start.",
    )


class RevisionTemplate(ApiModel):
    """What a revision of a variant serves: the fields whose change starts a canary rollout."""

    model_version: str | None = Field(None, description="Model version (the variant's or model.version).")
    model_repository: str = Field(description="Model repository (the variant's or model.repository).")
    image: str = Field(description="Triton image (the variant's or triton.image).")
    config: ModelConfig | None = Field(None, description="Model configuration (the variant's or model.config).")


class Revision(ApiModel):
    variant: str = Field(description="The variant this is a revision of.")
    number: int = Field(description="Revision number, counted per variant from 1.")
    template: RevisionTemplate = Field(description="What it serves.")
    promoted_at: str = Field(description="When it became the stable version (RFC 3339).")


RolloutPhase = Literal["Progressing", "Paused", "Promoting", "Promoted", "Failed"]


class RolloutState(ApiModel):
    """One variant's canary rollout; the operator resumes it from here after a restart."""

    variant: str = Field(description="The variant being rolled out.")
    phase: RolloutPhase = Field(
        description="Progressing, Paused, Promoting (the stable Deployment takes the new revision), "
        "Promoted or Failed (rolled back)."
    )
    revision: int = Field(description="The canary's revision number.")
    template: RevisionTemplate = Field(description="What the canary serves.")
    step: int = Field(0, description="Index of the current step in spec.rollout.canary.steps (0 is the first).")
    weight: int = Field(0, description="Share of the variant's traffic the canary takes now, in percent.")
    step_started_at: str = Field(description="When the current step (or phase) began (RFC 3339).")
    passed: int = Field(0, description="Analyses passed at the current step.")
    failed: int = Field(0, description="Analyses failed in this rollout.")
    message: str = Field("", max_length=4096, description="The last verdict, with measured values and limits.")


class ShedLevel(ApiModel):
    """A smaller share of traffic a variant's demand needed on the fallback, and when it last did."""

    percent: int = Field(ge=1, le=100, description="Percent of all traffic.")
    needed_at: str = Field(description="When its demand last needed that much (RFC 3339).")


class Shed(ApiModel):
    """Traffic weight moved from a variant to spec.fallback's variant (traffic/shedding.py)."""

    variant: str = Field(description="The variant whose weight moved.")
    percent: int = Field(ge=1, le=100, description="Percent of all traffic moved from it to the fallback.")
    needed_at: str = Field(
        description="When its demand last needed that much (RFC 3339); it moves back fallback.restoreSeconds after."
    )
    latest: ShedLevel | None = Field(
        None,
        description="The last smaller share its demand needed while this one was held: where nothing is needed "
        "when this one expires, the weight steps down to that, not to 0, until it too is restoreSeconds old.",
    )


class InferenceServiceStatus(ApiModel):
    """What the operator observed and decided; written by the operator only."""

    observed_generation: int | None = Field(None, description="The spec generation last reconciled.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Progressing, Degraded, ...")
    replicas: int = Field(0, description="Replicas across variants (scale subresource).")
    ready_replicas: int = Field(0, description="Ready replicas across variants.")
    desired_replicas: int = Field(0, description="Replicas the operator wants across variants.")
    replica_summary: str = Field("0/0", description="ready/desired, for kubectl get.")
    selector: str = Field("", description="Label selector of all replicas (scale subresource).")
    url: str | None = Field(None, description="Where clients reach the service.")
    weights: str = Field("", description="Traffic split, e.g. stable=90,canary=10.")
    variants: list[VariantStatus] = Field(default_factory=list, description="Per-variant weight and readiness.")
    gpu: GpuStatus | None = Field(None, description="The GPU resource each replica requests.")
    last_scaling: ScalingDecision | None = Field(None, description="The last scaling decision and its reason.")
    learned: list[Learned] = Field(
        default_factory=list, description="Per variant, the capacity and start-up the scaling loop has learned."
    )
    rollouts: list[RolloutState] = Field(default_factory=list, description="Canary rollouts, one per variant.")
    revisions: list[Revision] = Field(
        default_factory=list,
        description="The last 3 stable revisions of each variant, newest last; roll back with the annotation "
        "serving.unbusy.dev/rollback-to: <variant>=<number>.",
    )
    shedding: list[Shed] = Field(default_factory=list, description="Weight moved to the fallback variant now.")
    fallback: str = Field("", description="Traffic on the fallback, for kubectl get, e.g. 30% main->small.")
    rollout: str = Field("", description="Rollout phase and step, for kubectl get, e.g. main: Progressing 2/4 (25%).")
