"""Gateway API Inference Extension InferencePools (inference.networking.k8s.io/v1): with
spec.routing.inferencePool, each variant of an LLM is a pool of its own pods, which the
HTTPRoute names as its backendRef (render/routing.py) at the variant's weight. The weights keep
splitting traffic between variants (canary, fallback); within a variant the pool's endpoint
picker chooses each request's pod by its queue and KV-cache load, where a Service would pick at
random.
"""

from __future__ import annotations

from typing import Any

from unbusy.api import InferenceService
from unbusy.render import meta

GROUP = "inference.networking.k8s.io"
API_VERSION = f"{GROUP}/v1"
KIND = "InferencePool"


def pooled(isvc: InferenceService) -> bool:
    """Whether the variants are reached through InferencePools (the API's rules ask for an LLM
    and the Gateway API with them)."""
    routing = isvc.spec.routing
    return routing is not None and routing.inference_pool is not None and routing.effective_provider == "gateway"


def pool_name(isvc: InferenceService, variant: str) -> str:
    """A variant's pool carries the name of its Deployment and Service."""
    return meta.variant_name(isvc, variant)


def _pool(isvc: InferenceService, variant: str) -> dict[str, Any]:
    picker = isvc.spec.routing.inference_pool.endpoint_picker
    name = pool_name(isvc, variant)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": meta.metadata(isvc, name, variant),
        "spec": {
            "selector": {"matchLabels": meta.selector(isvc, variant)},
            "targetPorts": [{"number": meta.HTTP_PORT}],
            "endpointPickerRef": {
                "name": f"{name}{picker.service_suffix}",
                "port": {"number": picker.port},
                "failureMode": picker.failure_mode,
            },
        },
    }


def render(isvc: InferenceService) -> list[dict[str, Any]]:
    if not pooled(isvc):
        return []
    return [_pool(isvc, v.name) for v in isvc.spec.effective_variants()]
