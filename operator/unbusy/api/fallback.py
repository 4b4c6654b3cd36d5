"""spec.fallback: the variant that takes the traffic the others cannot serve with their ready
replicas."""

from __future__ import annotations

from pydantic import Field

from unbusy.api.base import DNS_LABEL_PATTERN, ApiModel


class Fallback(ApiModel):
    """Shed to a smaller model instead of answering 503 while new replicas start."""

    variant: str = Field(
        pattern=DNS_LABEL_PATTERN,
        max_length=20,
        description="The variant of spec.variants that takes the traffic the others cannot serve with their ready "
        "replicas (usually weight 0: a smaller, faster model).",
    )
    rps_per_replica: float = Field(
        gt=0,
        le=1_000_000,
        description="Requests per second one replica of the fallback answers at saturation (unbusy calibrate, "
        "or a load test): what it can take is its ready replicas x this x utilizationPercent.",
    )
    max_percent: int = Field(50, ge=1, le=100, description="Most of the traffic, in percent, moved to the fallback.")
    shed_above_percent: int = Field(
        95,
        ge=50,
        le=100,
        description="A variant keeps demand up to this share of its ready replicas' capacity and sheds the rest.",
    )
    utilization_percent: int = Field(
        90, ge=10, le=100, description="Share of the fallback's ready capacity that shed traffic may fill."
    )
    restore_seconds: int = Field(
        60,
        ge=0,
        le=3600,
        description="Weight moves back once the ready replicas have covered the demand for this long: "
        "the fallback keeps the most any tick of the last restoreSeconds needed.",
    )
