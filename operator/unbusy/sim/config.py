"""A simulation's settings, taken from an InferenceService where it has them."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from unbusy.api import InferenceService
from unbusy.api.autoscaling import Autoscaling
from unbusy.api.fallback import Fallback
from unbusy.api.model import Serving
from unbusy.gpu.request import gpus_per_replica
from unbusy.render.context import RenderContext, desired_replicas, replica_bounds
from unbusy.serving.model import ServiceModel, from_config, from_service

_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class SimFallback:
    """spec.fallback's variant: a fixed pool of replicas of a smaller model that takes shed traffic."""

    spec: Fallback
    model: ServiceModel  # what it really serves (the spec's rpsPerReplica is what the operator believes)
    replicas: int


@dataclass(frozen=True)
class SimConfig:
    model: ServiceModel
    policy: Autoscaling | None  # None: replicas stay at initial_replicas (scaling off)
    bounds: tuple[int, int]
    initial_replicas: int
    slo_s: float  # the p99 latency a minute must meet
    weight: float = 1.0  # the simulated variant's share of the trace
    gpus_per_replica: float = 1.0  # a MIG slice counts as its share of the GPU's compute
    startup_s: float = 60.0  # image pull + model load until the replica is ready
    scrape_interval_s: int = 15
    metrics_delay_s: int = 10  # from scrape to the sample being readable by the scaling loop
    # The window rates are read over (the operator's queries: 60 s); None: each scrape's own interval.
    rate_window_s: int | None = None
    seed: int = 0
    fallback: SimFallback | None = None  # None: no shedding, what is beyond the ready replicas is refused


def _seconds(duration: str) -> int:
    number, unit = re.fullmatch(r"([0-9]+)(ms|s|m|h)", duration).groups()
    return max(1, int(int(number) * _SECONDS[unit]))


def fallback_model(isvc: InferenceService, serving: Serving) -> ServiceModel:
    """What spec.fallback's variant serves: its model configuration with the smaller model's `serving`."""
    variant = next(v for v in isvc.spec.effective_variants() if v.name == isvc.spec.fallback.variant)
    return from_config(variant.config or isvc.spec.model.config, serving)


def _fallback(isvc: InferenceService, serving: Serving | None) -> SimFallback | None:
    spec = isvc.spec.fallback
    if spec is None or serving is None:
        return None
    variant = next(v for v in isvc.spec.effective_variants() if v.name == spec.variant)
    return SimFallback(
        spec=spec, model=fallback_model(isvc, serving), replicas=max(1, replica_bounds(isvc, variant)[0])
    )


def from_spec(
    isvc: InferenceService, scaling: bool = True, fallback_serving: Serving | None = None, **overrides: float
) -> SimConfig:
    """The spec's heaviest variant: its share of the load, bounds, model, GPUs, SLO and policy.

    With spec.fallback and `fallback_serving` (the measured profile of what the fallback variant
    serves), the fallback's minReplicas take the traffic shedding moves to them.

    Autoscaling mode none, or scaling=False, keeps the replicas fixed (spec.replicas, else
    minReplicas); modes operator and hpa run Unbusy's policy, which follows the HPA's rules.
    """
    spec = isvc.spec
    variant = max(spec.effective_variants(), key=lambda v: v.weight)
    low, high = replica_bounds(isvc, variant)
    active = scaling and spec.autoscaling.mode != "none"
    fixed = desired_replicas(isvc, RenderContext())[variant.name] if spec.autoscaling.mode == "none" else low
    config = SimConfig(
        model=from_service(isvc),
        policy=spec.autoscaling if active else None,
        bounds=(low, high),
        initial_replicas=max(fixed or low, 1),
        slo_s=spec.alerts.p99_latency_seconds.threshold,
        weight=variant.weight / 100,
        gpus_per_replica=gpus_per_replica(isvc.spec.gpu, isvc.spec.model.gpu_memory),
        scrape_interval_s=_seconds(spec.monitoring.interval),
        fallback=_fallback(isvc, fallback_serving) if active else None,
    )
    return replace(config, **overrides)
