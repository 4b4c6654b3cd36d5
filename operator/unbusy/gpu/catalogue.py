"""MIG profiles per GPU product, from NVIDIA's MIG user guide (supported profiles tables)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MigProfile:
    name: str  # e.g. "1g.10gb"
    memory_gib: int  # framebuffer memory of the instance
    compute_slices: int  # of 7 per GPU
    per_gpu: int  # how many instances of this profile fit on one GPU

    @property
    def media_extensions(self) -> bool:
        return self.name.endswith("+me")


@dataclass(frozen=True)
class GpuProduct:
    key: str  # the value of spec.gpu.product
    label: str  # the nvidia.com/gpu.product node label that GPU feature discovery sets
    memory_gib: int
    mig_profiles: tuple[MigProfile, ...]

    def profile(self, name: str) -> MigProfile | None:
        return next((p for p in self.mig_profiles if p.name == name), None)


def _profiles(small: int, double: int, half: int, whole: int) -> tuple[MigProfile, ...]:
    """The seven-slice layout all these GPUs share; only the memory sizes in the names differ."""
    return (
        MigProfile(f"1g.{small}gb", small, 1, 7),
        MigProfile(f"1g.{small}gb+me", small, 1, 1),
        MigProfile(f"1g.{double}gb", double, 1, 4),
        MigProfile(f"2g.{double}gb", double, 2, 3),
        MigProfile(f"3g.{half}gb", half, 3, 2),
        MigProfile(f"4g.{half}gb", half, 4, 1),
        MigProfile(f"7g.{whole}gb", whole, 7, 1),
    )


PRODUCTS: dict[str, GpuProduct] = {
    product.key: product
    for product in (
        GpuProduct("A100-40GB", "NVIDIA-A100-SXM4-40GB", 40, _profiles(5, 10, 20, 40)),
        GpuProduct("A100-80GB", "NVIDIA-A100-SXM4-80GB", 80, _profiles(10, 20, 40, 80)),
        GpuProduct("H100-80GB", "NVIDIA-H100-80GB-HBM3", 80, _profiles(10, 20, 40, 80)),
        GpuProduct("H100-94GB", "NVIDIA-H100-NVL", 94, _profiles(12, 24, 47, 94)),
        GpuProduct("H200-141GB", "NVIDIA-H200", 141, _profiles(18, 35, 71, 141)),
    )
}
