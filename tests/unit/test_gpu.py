"""The MIG catalogue: automatic profile choice per product, and errors for impossible requests."""

from __future__ import annotations

import pytest

from unbusy.api import SpecError
from unbusy.api.gpu import Gpu
from unbusy.gpu.catalogue import PRODUCTS
from unbusy.gpu.request import GPU_RESOURCE, PRODUCT_LABEL, choose_profile, gibibytes, gpu_request


@pytest.mark.parametrize(
    ("product", "need", "expected"),
    [
        ("A100-40GB", "4Gi", "1g.5gb"),
        ("A100-40GB", "8Gi", "1g.10gb"),
        ("A100-40GB", "30Gi", "7g.40gb"),
        ("A100-80GB", "8Gi", "1g.10gb"),
        ("A100-80GB", "14Gi", "1g.20gb"),
        ("A100-80GB", "30Gi", "3g.40gb"),
        ("H100-80GB", "9Gi", "1g.10gb"),
        ("H100-80GB", "60Gi", "7g.80gb"),
        ("H100-94GB", "20Gi", "1g.24gb"),
        ("H100-94GB", "40Gi", "3g.47gb"),
        ("H200-141GB", "14Gi", "1g.18gb"),
        ("H200-141GB", "30Gi", "1g.35gb"),
        ("H200-141GB", "100Gi", "7g.141gb"),
    ],
)
def test_auto_picks_the_smallest_profile_with_headroom(product, need, expected):
    request = gpu_request(Gpu(mig_profile="auto", product=product), need)
    assert request.mig_profile == expected
    assert request.resource_name == f"nvidia.com/mig-{expected}"


def test_auto_prefers_less_compute_among_equal_memory():
    # 1g.20gb and 2g.20gb hold the same memory; the one-slice profile leaves more for others.
    assert choose_profile(PRODUCTS["A100-80GB"], 15, 0).name == "1g.20gb"


def test_auto_never_picks_media_extension_profiles():
    for product in PRODUCTS.values():
        assert not choose_profile(product, 1, 0).media_extensions


def test_catalogue_slices_per_gpu():
    a100 = PRODUCTS["A100-80GB"]
    assert [(p.name, p.per_gpu) for p in a100.mig_profiles if not p.media_extensions] == [
        ("1g.10gb", 7),
        ("1g.20gb", 4),
        ("2g.20gb", 3),
        ("3g.40gb", 2),
        ("4g.40gb", 1),
        ("7g.80gb", 1),
    ]
    assert all(p.memory_gib <= product.memory_gib for product in PRODUCTS.values() for p in product.mig_profiles)


def test_single_strategy_requests_gpus_and_selects_the_sliced_product():
    request = gpu_request(Gpu(mig_profile="1g.10gb", product="A100-80GB", mig_strategy="single"))
    assert request.resource_name == GPU_RESOURCE
    assert request.node_selector == {PRODUCT_LABEL: "NVIDIA-A100-SXM4-80GB-MIG-1g.10gb"}


def test_mixed_strategy_selects_the_product_and_requests_the_slice():
    request = gpu_request(Gpu(mig_profile="3g.40gb", product="H100-80GB"))
    assert request.resource_name == "nvidia.com/mig-3g.40gb"
    assert request.node_selector == {PRODUCT_LABEL: "NVIDIA-H100-80GB-HBM3"}
    assert request.summary == "mig-3g.40gb"


def test_whole_gpus():
    request = gpu_request(Gpu(count=4, product="H200-141GB"))
    assert (request.resource_name, request.count, request.summary) == (GPU_RESOURCE, 4, "4x H200-141GB")


def test_unknown_profile_names_the_field_and_lists_the_allowed():
    with pytest.raises(SpecError) as error:
        gpu_request(Gpu(mig_profile="1g.5gb", product="H100-80GB"))
    message = error.value.problems[0]
    assert message.startswith("spec.gpu.migProfile: '1g.5gb' is not a MIG profile of H100-80GB; allowed: auto, 1g.10gb")
    assert "7g.80gb" in message


def test_model_too_large_for_any_profile():
    with pytest.raises(SpecError) as error:
        gpu_request(Gpu(mig_profile="auto", product="A100-40GB"), "39Gi")
    assert error.value.problems[0].startswith("spec.model.gpuMemory: 39Gi plus 10% headroom does not fit")


def test_auto_needs_the_models_memory():
    with pytest.raises(SpecError) as error:
        gpu_request(Gpu(mig_profile="auto", product="A100-80GB"))
    assert error.value.problems[0].startswith("spec.model.gpuMemory: required with gpu.migProfile auto")


@pytest.mark.parametrize(("quantity", "gib"), [("14Gi", 14), ("16384Mi", 16), ("1Ti", 1024), ("2.5Gi", 2.5)])
def test_memory_quantities(quantity, gib):
    assert gibibytes(quantity, "f") == pytest.approx(gib)


def test_bad_memory_quantity_names_the_field():
    with pytest.raises(SpecError, match="spec.model.gpuMemory: 'lots' is not a memory quantity"):
        gibibytes("lots", "spec.model.gpuMemory")
