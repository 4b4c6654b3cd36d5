"""spec.triton: the Triton server container."""

from __future__ import annotations

from pydantic import Field

from unbusy.api.base import ApiModel, KubeObject, Quantity

DEFAULT_IMAGE = "nvcr.io/nvidia/tritonserver:25.01-py3"


class Resources(ApiModel):
    requests: dict[str, Quantity] = Field(
        default_factory=lambda: {"cpu": "2", "memory": "8Gi"}, description="CPU / memory requests."
    )
    limits: dict[str, Quantity] = Field(default_factory=lambda: {"memory": "16Gi"}, description="CPU / memory limits.")


class Triton(ApiModel):
    image: str = Field(DEFAULT_IMAGE, max_length=512, description="Triton Inference Server image.")
    args: list[str] = Field(
        default_factory=list, max_length=64, description="Extra tritonserver arguments, appended last."
    )
    resources: Resources = Field(default_factory=Resources, description="CPU and memory for the Triton container.")
    env: list[KubeObject] = Field(default_factory=list, max_length=64, description="Extra environment variables.")
    startup_timeout_seconds: int = Field(
        900, ge=30, le=7200, description="Time allowed for pulling weights and loading the model before restarts."
    )
    termination_grace_period_seconds: int = Field(
        60, ge=0, le=3600, description="Time a terminating replica gets to drain in-flight requests."
    )
    service_account_name: str | None = Field(
        None, max_length=253, description="ServiceAccount of the Triton pods (e.g. one with bucket access)."
    )
