"""Pure renderers: one InferenceService (+ run-time context) -> every child manifest."""

from __future__ import annotations

from typing import Any

from unbusy.api import InferenceService
from unbusy.gpu.request import gpu_request
from unbusy.render import (
    alerts,
    dashboard,
    deployment,
    disruption,
    hpa,
    inference_pool,
    keda,
    model_config,
    monitors,
    network_policy,
    routing,
    service,
)
from unbusy.render.context import RenderContext

__all__ = ["RenderContext", "render_all"]


def render_all(isvc: InferenceService, ctx: RenderContext | None = None) -> list[dict[str, Any]]:
    """Every child of the InferenceService, in apply order. Raises SpecError on impossible specs."""
    ctx = ctx or RenderContext()
    gpu = gpu_request(isvc.spec.gpu, isvc.spec.model.gpu_memory)
    return [
        *model_config.render(isvc, gpu.count),
        *deployment.render(isvc, ctx, gpu),
        *service.render(isvc),
        *disruption.render(isvc),
        *network_policy.render(isvc),
        *hpa.render(isvc),
        *keda.render(isvc, ctx),
        *inference_pool.render(isvc),
        *routing.render(isvc, ctx),
        *monitors.render(isvc),
        *alerts.render(isvc, gpu),
        *dashboard.render(isvc),
    ]
