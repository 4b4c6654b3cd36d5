"""spec.gpu: whole GPUs or a MIG slice per replica."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from unbusy.api.base import ApiModel, Rule

GpuProduct = Literal["A100-40GB", "A100-80GB", "H100-80GB", "H100-94GB", "H200-141GB"]


class Gpu(ApiModel):
    rules: ClassVar = (
        Rule(
            "has(self.count) != has(self.migProfile)",
            "set exactly one of count (whole GPUs) or migProfile (a MIG slice)",
            lambda gpu: (gpu.count is None) != (gpu.mig_profile is None),
        ),
        Rule(
            "!has(self.migProfile) || has(self.product)",
            "required with migProfile: MIG profiles differ per GPU product",
            lambda gpu: gpu.mig_profile is None or gpu.product is not None,
            ".product",
        ),
    )

    count: int | None = Field(None, ge=1, le=16, description="Whole GPUs per replica.")
    mig_profile: str | None = Field(
        None,
        pattern=r"^(auto|[1-7]g\.[0-9]+gb(\+me)?)$",
        max_length=16,
        description="MIG profile per replica (e.g. 1g.10gb), or auto: the smallest that holds model.gpuMemory.",
    )
    product: GpuProduct | None = Field(None, description="GPU product to run on; selects nodes by product label.")
    mig_strategy: Literal["mixed", "single"] = Field(
        "mixed", description="The NVIDIA device plugin's MIG strategy in the cluster."
    )
    memory_headroom_percent: int = Field(
        10, ge=0, le=100, description="Headroom over model.gpuMemory when choosing a MIG profile automatically."
    )
