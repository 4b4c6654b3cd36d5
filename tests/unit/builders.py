"""Builders shared by the unit tests of the pure rooms."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from unbusy.api import InferenceService, load
from unbusy.api.model import GpuUtilizationCurve, ServiceTime, Serving
from unbusy.serving.model import ServiceModel

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
CRD = ROOT / "crds" / "serving.unbusy.dev_inferenceservices.yaml"
BASE_SPEC: dict[str, Any] = {
    "model": {"name": "resnet50", "repository": "s3://models/vision"},
    "gpu": {"count": 1, "product": "H100-80GB"},
}


# Replicas for the testbed's kwok nodes: requests that fit many to a node, no zone spread (no zones).
ON_KWOK: dict[str, Any] = {
    "triton": {"resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}},
    "scheduling": {"topologySpread": {"enabled": False}},
}


def manifest(spec: dict[str, Any] | None = None, name: str = "resnet", namespace: str = "ml") -> dict[str, Any]:
    """An InferenceService manifest: BASE_SPEC with `spec` merged over it section by section."""
    merged = copy.deepcopy(BASE_SPEC)
    for key, value in (spec or {}).items():
        merged[key] = value
    return {
        "apiVersion": "serving.unbusy.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": merged,
    }


def isvc(spec: dict[str, Any] | None = None, **kwargs: Any) -> InferenceService:
    return load(manifest(spec, **kwargs))


def example_documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in EXAMPLES
        for doc in yaml.safe_load_all(path.read_text())
        if isinstance(doc, dict) and doc.get("kind") == "InferenceService"
    ]


def small_model() -> ServiceModel:
    """A replica of known, small capacity: 8 requests per 17 ms, 470 rps (the measured default serves 1,051)."""
    return ServiceModel(
        saturated_batch=8,
        serving=Serving(
            service_time=ServiceTime(floor_ms=0, base_ms=5, per_item_ms=1.5),
            gpu_utilization=GpuUtilizationCurve(ceiling=1, exponent=1),
            ready_seconds=1,
        ),
    )
