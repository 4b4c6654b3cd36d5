"""spec.variants: the named variants that split traffic by weight."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from unbusy.api.base import DNS_LABEL_PATTERN, ApiModel, Rule
from unbusy.api.model import ModelConfig


class Variant(ApiModel):
    rules: ClassVar = (
        Rule(
            "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
            "must be <= maxReplicas",
            lambda v: v.min_replicas is None or v.max_replicas is None or v.min_replicas <= v.max_replicas,
            ".minReplicas",
        ),
    )

    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=20, description="Variant name, e.g. stable, canary.")
    weight: int = Field(ge=0, le=100, description="Share of traffic in percent; weights add up to 100.")
    model_version: str | None = Field(
        None, pattern=r"^[0-9]+$", max_length=16, description="Overrides model.version for this variant."
    )
    model_repository: str | None = Field(
        None, max_length=512, description="Overrides model.repository for this variant."
    )
    image: str | None = Field(None, max_length=512, description="Overrides triton.image for this variant.")
    config: ModelConfig | None = Field(
        None, description="Overrides model.config for this variant (e.g. a new configuration as a canary)."
    )
    min_replicas: int | None = Field(None, ge=0, le=1000, description="Overrides autoscaling.minReplicas.")
    max_replicas: int | None = Field(None, ge=1, le=1000, description="Overrides autoscaling.maxReplicas.")
