"""What one replica asks the scheduler for: GPU resource, count and node labels."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from unbusy.api.gpu import Gpu
from unbusy.api.resource import SpecError
from unbusy.gpu.catalogue import PRODUCTS, GpuProduct, MigProfile

GPU_RESOURCE = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMGTP]i?)?$")
_BYTES = (
    {None: 1}
    | {u: 1000 ** (i + 1) for i, u in enumerate("KMGTP")}
    | {f"{u}i": 1024 ** (i + 1) for i, u in enumerate("KMGTP")}
)


@dataclass(frozen=True)
class GpuRequest:
    resource_name: str
    count: int
    node_selector: dict[str, str] = field(default_factory=dict)
    mig_profile: str | None = None

    @property
    def summary(self) -> str:
        if self.mig_profile:
            return f"mig-{self.mig_profile}"
        product = next((p.key for p in PRODUCTS.values() if p.label == self.node_selector.get(PRODUCT_LABEL)), "GPU")
        return f"{self.count}x {product}"


def gibibytes(quantity: str, field_name: str) -> float:
    match = _QUANTITY.match(quantity)
    if not match:
        raise SpecError([f"{field_name}: {quantity!r} is not a memory quantity such as 14Gi or 16000Mi"])
    return float(match.group(1)) * _BYTES[match.group(2)] / 1024**3


def choose_profile(product: GpuProduct, need_gib: float, headroom_percent: int) -> MigProfile:
    """The smallest profile (memory, then compute) that holds the model with headroom."""
    wanted = need_gib * (1 + headroom_percent / 100)
    fitting = [p for p in product.mig_profiles if p.memory_gib >= wanted and not p.media_extensions]
    if not fitting:
        largest = max(p.memory_gib for p in product.mig_profiles)
        raise SpecError(
            [
                f"spec.model.gpuMemory: {need_gib:g}Gi plus {headroom_percent}% headroom does not fit any MIG "
                f"profile of {product.key} (largest {largest}Gi); use gpu.count for whole GPUs or a larger product"
            ]
        )
    return min(fitting, key=lambda p: (p.memory_gib, p.compute_slices))


def _mig_profile(gpu: Gpu, gpu_memory: str | None) -> MigProfile:
    product = PRODUCTS[gpu.product]
    if gpu.mig_profile == "auto":
        if gpu_memory is None:
            raise SpecError(["spec.model.gpuMemory: required with gpu.migProfile auto (the memory the model needs)"])
        return choose_profile(product, gibibytes(gpu_memory, "spec.model.gpuMemory"), gpu.memory_headroom_percent)
    profile = product.profile(gpu.mig_profile)
    if profile is None:
        allowed = ", ".join(["auto", *(p.name for p in product.mig_profiles)])
        raise SpecError(
            [f"spec.gpu.migProfile: {gpu.mig_profile!r} is not a MIG profile of {product.key}; allowed: {allowed}"]
        )
    return profile


def gpu_request(gpu: Gpu, gpu_memory: str | None = None) -> GpuRequest:
    """Resolve spec.gpu into resources and node labels; SpecError names the bad field."""
    product_selector = {PRODUCT_LABEL: PRODUCTS[gpu.product].label} if gpu.product else {}
    if gpu.mig_profile is None:
        return GpuRequest(GPU_RESOURCE, gpu.count or 1, product_selector)
    profile = _mig_profile(gpu, gpu_memory)
    if gpu.mig_strategy == "mixed":
        return GpuRequest(f"nvidia.com/mig-{profile.name}", 1, product_selector, profile.name)
    # Under the single strategy every GPU of a node is cut the same way and shows up as
    # nvidia.com/gpu; GPU feature discovery names the slice in the product label instead.
    label = f"{PRODUCTS[gpu.product].label}-MIG-{profile.name}"
    return GpuRequest(GPU_RESOURCE, 1, {PRODUCT_LABEL: label}, profile.name)


# A whole GPU has 7 compute slices under MIG (A100, H100, H200).
MIG_SLICES_PER_GPU = 7


def gpus_per_replica(gpu: Gpu, gpu_memory: str | None = None) -> float:
    """GPUs one replica holds: its count, or its MIG slice's share of a GPU's compute (what it costs)."""
    request = gpu_request(gpu, gpu_memory)
    if request.mig_profile is None:
        return float(request.count)
    return PRODUCTS[gpu.product].profile(request.mig_profile).compute_slices / MIG_SLICES_PER_GPU
