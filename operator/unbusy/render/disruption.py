"""A PodDisruptionBudget per variant, so node drains never take a whole variant down."""

from __future__ import annotations

from typing import Any

from unbusy.api import InferenceService
from unbusy.render import meta


def render(isvc: InferenceService) -> list[dict[str, Any]]:
    budget = isvc.spec.disruption
    if not budget.enabled:
        return []
    return [
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta.metadata(isvc, meta.variant_name(isvc, v.name), v.name),
            "spec": {
                "maxUnavailable": meta.int_or_percent(budget.max_unavailable),
                "selector": {"matchLabels": meta.selector(isvc, v.name)},
                # Replicas stuck loading a model must not block a drain forever.
                "unhealthyPodEvictionPolicy": "AlwaysAllow",
            },
        }
        for v in isvc.spec.effective_variants()
    ]
