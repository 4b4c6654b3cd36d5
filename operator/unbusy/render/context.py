"""What render needs beyond the spec: decisions the operator made at run time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from unbusy.api import InferenceService, Variant


@dataclass(frozen=True)
class RenderContext:
    # Replicas per variant chosen by the operator's scaling loop (autoscaling mode operator).
    replicas: Mapping[str, int] = field(default_factory=dict)
    # Traffic weights per variant when a rollout or fallback shift overrides the spec's.
    weights: Mapping[str, int] = field(default_factory=dict)


def weight(variant: Variant, ctx: RenderContext) -> int:
    return ctx.weights.get(variant.name, variant.weight)


def replica_bounds(isvc: InferenceService, variant: Variant) -> tuple[int, int]:
    scaling = isvc.spec.autoscaling
    low = scaling.min_replicas if variant.min_replicas is None else variant.min_replicas
    high = scaling.max_replicas if variant.max_replicas is None else variant.max_replicas
    return low, max(low, high)


def split_replicas(total: int, variants: list[Variant], bounds: list[tuple[int, int]]) -> list[int]:
    """Share `total` replicas by weight (largest remainder), then clamp to each variant's bounds."""
    weights = [v.weight for v in variants]
    exact = [total * w / (sum(weights) or 1) for w in weights]
    shares = [int(x) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: shares[i] - exact[i])[: total - sum(shares)]:
        shares[i] += 1
    return [min(max(share, low), high) for share, (low, high) in zip(shares, bounds, strict=True)]


def desired_replicas(isvc: InferenceService, ctx: RenderContext) -> dict[str, int | None]:
    """Replicas to write into each Deployment; None leaves them to an HPA (KEDA's too)."""
    variants = isvc.spec.effective_variants()
    bounds = [replica_bounds(isvc, v) for v in variants]
    mode = isvc.spec.autoscaling.mode
    if mode in ("hpa", "keda"):
        return {v.name: None for v in variants}
    if mode == "operator":
        return {v.name: ctx.replicas.get(v.name, low) for v, (low, _) in zip(variants, bounds, strict=True)}
    if isvc.spec.replicas is None:
        return {v.name: low for v, (low, _) in zip(variants, bounds, strict=True)}
    shares = split_replicas(isvc.spec.replicas, variants, bounds)
    return {v.name: n for v, n in zip(variants, shares, strict=True)}
