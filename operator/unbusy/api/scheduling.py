"""spec.scheduling: where replicas run; spec.disruption: how many of them a voluntary disruption
may take at once."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from unbusy.api.base import PERCENT_OR_COUNT_PATTERN, ApiModel, KubeObject


class TopologySpread(ApiModel):
    enabled: bool = Field(True, description="Spread replicas across topology domains.")
    topology_key: str = Field("topology.kubernetes.io/zone", max_length=253, description="Node label to spread by.")
    max_skew: int = Field(1, ge=1, le=100, description="Largest allowed difference in replicas between domains.")
    when_unsatisfiable: Literal["ScheduleAnyway", "DoNotSchedule"] = Field(
        "ScheduleAnyway", description="Whether spreading is a preference or a hard rule."
    )


class Scheduling(ApiModel):
    node_selector: dict[str, str] = Field(default_factory=dict, description="Extra node labels to require.")
    tolerations: list[KubeObject] = Field(default_factory=list, max_length=32, description="Extra tolerations.")
    affinity: KubeObject | None = Field(None, description="Pod affinity / anti-affinity, as in a PodSpec.")
    topology_spread: TopologySpread = Field(default_factory=TopologySpread, description="Spread across zones.")
    priority_class_name: str | None = Field(None, max_length=253, description="PriorityClass of Triton pods.")
    spot: bool = Field(False, description="Tolerate the spot / preemptible taints of GKE, EKS and AKS.")


class Disruption(ApiModel):
    enabled: bool = Field(True, description="Render a PodDisruptionBudget per variant.")
    max_unavailable: str = Field(
        "1", pattern=PERCENT_OR_COUNT_PATTERN, max_length=8, description="Replicas a voluntary disruption may take."
    )
