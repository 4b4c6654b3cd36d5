"""spec.autoscaling: how replicas follow load (targets, step limits, capacity and burst mode,
forecast, seasonal floor, where demand is read, KEDA)."""

from __future__ import annotations

import string
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from unbusy.api.base import ApiModel, Rule


class ScalingRules(ApiModel):
    stabilization_window_seconds: int = Field(
        ge=0, le=3600, description="Use the highest (up) or lowest (down) recommendation over this window."
    )
    max_pods_per_step: int = Field(ge=1, le=1000, description="Most replicas added or removed per period.")
    max_percent_per_step: int = Field(ge=1, le=1000, description="Most replicas added or removed per period, in %.")
    period_seconds: int = Field(15, ge=1, le=1800, description="Length of a step period.")


def _scale_up() -> ScalingRules:
    return ScalingRules(stabilization_window_seconds=0, max_pods_per_step=4, max_percent_per_step=100)


def _scale_down() -> ScalingRules:
    return ScalingRules(
        stabilization_window_seconds=300, max_pods_per_step=1, max_percent_per_step=10, period_seconds=60
    )


class Behavior(ApiModel):
    scale_up: ScalingRules = Field(default_factory=_scale_up, description="Fast up (defaults as HPA).")
    scale_down: ScalingRules = Field(default_factory=_scale_down, description="Slow down: 5 min window, 1 pod/min.")


class Targets(ApiModel):
    """Metric targets; 0 turns a metric off (a CRD field cannot be set to null)."""

    queue_depth_per_replica: int = Field(
        8, ge=0, le=100_000, description="Pending requests per replica to aim for (Triton's queue); 0: off."
    )
    gpu_utilization_percent: int = Field(
        80,
        ge=0,
        le=100,
        description="GPU utilisation to aim for (DCGM; GR engine activity under MIG), modes operator and hpa; 0: off.",
    )
    cpu_utilization_percent: int = Field(
        70, ge=0, le=100, description="CPU utilisation target, used in hpa mode only; 0: off."
    )
    capacity_utilization_percent: int = Field(
        80,
        ge=0,
        le=100,
        description="Share of each replica's capacity the demand may fill: replicas = ceil(demand / "
        "(capacity x this)), the main rule in operator mode; 0: off (queue and GPU rules only).",
    )


# What a refused request is worth in GPU-seconds, by default: 20 ms of a GPU, twenty times the GPU
# time of a request served at 1,000 rps a GPU (ResNet-50, 8 images a request, serves 1,004 on an
# H100). A 503 is a user who got nothing, not one request's compute lost, so it is priced above
# what serving it costs. At this price a replica kept through a lull pays when, between two bursts,
# it saves 50 refusals per second it is kept: on the bench's onoff (4x bursts a few minutes apart)
# it keeps the bursts' replicas, 1.21x the oracle's GPU-hours, where a one-off step keeps nothing
# (bench/RESULTS.md, "Bursts priced": the frontier as this moves).
REFUSAL_PRICE_GPU_SECONDS = 0.02


class Capacity(ApiModel):
    """Requests per second one replica answers at saturation: learned from Triton's counters."""

    rps_per_replica: float | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description="Starting value for a new model (default: from model.serving when set); then learned from "
        "the served rate of replicas that were saturated (queue never drained, and refusing or running full "
        "batches) or served more than it, kept within half to twice this.",
    )
    startup_seconds: int | None = Field(
        None,
        ge=0,
        le=3600,
        description="How long a new replica takes to serve (scheduling, image pull, model load): what demand "
        "grows by at the observed rate meanwhile, and over the two intervalSeconds the reading it acts on is "
        "old, is added as headroom; a burst over within it is held for. Default: learned, the median of the "
        "variant's latest pods from creation to Ready (status.learned), 60 until one has started; a value "
        "given here is used as it is.",
    )
    panic_threshold: float = Field(
        2.0,
        ge=1.1,
        le=10,
        description="Burst mode (Knative's panic): when demand reaches this multiple of the ready replicas' "
        "capacity, scale out at once past the step limits and do not scale in for panicWindowSeconds.",
    )
    panic_window_seconds: int = Field(60, ge=0, le=3600, description="How long burst mode lasts after its trigger.")
    refusal_price_gpu_seconds: float = Field(
        REFUSAL_PRICE_GPU_SECONDS,
        ge=0,
        le=3600,
        description="What one refused request (HTTP 503) is worth, in GPU-seconds: the one knob of the burst "
        "hold. After bursts (demand jumping to panicThreshold x its least of the last intervals; a burst "
        "shorter than the rate window read from the edge's 503s), the fleet keeps a replica through the lull "
        "while the refusals it would save in the next burst's first startupSeconds (from the bursts seen: "
        "their height, length and how often they come) at this price are worth more than its GPUs cost until "
        "then. Higher: fewer 503s for more GPU-hours; 0: no hold. The default, 0.02, prices a refusal at twenty "
        "times the GPU time of a request served at 1,000 rps a GPU (ResNet-50 on an H100); raise it where a 503 "
        "costs more (bench/RESULTS.md shows the frontier).",
    )
    burst_recurrence_seconds: int | None = Field(
        None,
        ge=0,
        le=86400,
        description="Deprecated: bursts are priced by refusalPriceGpuSeconds; any value but 0 is ignored "
        "(with a Warning Event), and 0 turns the burst hold off as it did (refusalPriceGpuSeconds: 0 does so now).",
    )

    def refusal_price(self) -> float:
        """The price the burst hold weighs: 0 (no hold) where the deprecated burstRecurrenceSeconds is 0."""
        return 0.0 if self.burst_recurrence_seconds == 0 else self.refusal_price_gpu_seconds


class Forecast(ApiModel):
    enabled: bool = Field(False, description="Scale out ahead of a rising request rate; never scales in on it.")
    horizon_seconds: int = Field(
        120, ge=15, le=3600, description="How far ahead to project; at least the model's load time."
    )
    window_seconds: int = Field(600, ge=60, le=86400, description="History the trend is fitted over.")


class Seasonal(ApiModel):
    """A floor from the demand one period ago: a daily (or weekly) peak is met before it arrives."""

    rules: ClassVar = (
        Rule(
            "self.leadSeconds < self.periodSeconds",
            "must be shorter than periodSeconds",
            lambda s: s.lead_seconds < s.period_seconds,
            ".leadSeconds",
        ),
    )

    enabled: bool = Field(
        False,
        description="Hold at least the replicas that the most demand of the same time one period ago, "
        "over the next leadSeconds, needs at the capacity target (Prometheus must keep that much history).",
    )
    period_seconds: int = Field(
        86400, ge=600, le=2419200, description="How far back the same time is: 86400 a day, 604800 a week."
    )
    lead_seconds: int = Field(
        900,
        ge=60,
        le=86400,
        description="How far ahead of the same time the floor looks: a peak of a period ago is met this long "
        "before it comes back; at least the start-up.",
    )
    percent: int = Field(
        100, ge=1, le=200, description="Share of that past demand the floor holds: below 100 trusts the past less."
    )


# Values a spec.autoscaling.demand.query template may use; each becomes a quoted PromQL string
# (the variant's), except $window: the loop's rate window as a PromQL duration, e.g. 60s.
PROMQL_PLACEHOLDERS = ("namespace", "inferenceservice", "variant", "service", "window")
# The edge a demand source reads, and the routing.provider that renders it.
EDGE_PROVIDERS = {"nginx": "nginx", "envoy-gateway": "gateway", "istio": "gateway", "traefik": "gateway"}


class DemandMetric(ApiModel):
    """Where the scaling loop reads each variant's offered load, refused requests included."""

    rules: ClassVar = (
        Rule(
            "self.source == 'promql' ? has(self.query) : !has(self.query) && !has(self.rejectedQuery)",
            "required with source promql, and query and rejectedQuery go with source promql only",
            lambda d: d.query is not None if d.source == "promql" else d.query is None and d.rejected_query is None,
            ".query",
        ),
    )

    source: Literal["auto", "nginx", "envoy-gateway", "istio", "traefik", "promql", "triton"] = Field(
        "auto",
        description="nginx: ingress-nginx's request counter of the variant's Ingress; envoy-gateway, istio or "
        "traefik: the Gateway's (routing.provider gateway); promql: query below; triton: Triton's served rate, which "
        "cannot see demand beyond capacity; auto: nginx with routing.provider nginx, triton otherwise.",
    )
    query: str | None = Field(
        None,
        max_length=4096,
        description="source promql: requests per second offered to one variant, refused ones included. "
        "$namespace, $inferenceservice, $variant and $service (the variant's Service) become quoted strings, "
        "e.g. {svc=$service}; $window the rate window; $$ a literal $.",
    )
    rejected_query: str | None = Field(
        None,
        max_length=4096,
        description="source promql: of those, the ones refused with HTTP 503, with the same placeholders; "
        "without it the loop reads none refused and the busy-rate alert is not rendered.",
    )

    @field_validator("query", "rejected_query")
    @classmethod
    def _known_placeholders(cls, template: str | None) -> str | None:
        if template is None:
            return None
        parsed = string.Template(template)
        unknown = sorted(set(parsed.get_identifiers()) - set(PROMQL_PLACEHOLDERS))
        if not parsed.is_valid() or unknown:
            allowed = ", ".join(f"${name}" for name in PROMQL_PLACEHOLDERS)
            found = (
                f"unknown placeholder {', '.join(f'${name}' for name in unknown)}"
                if unknown
                else "a $ that starts no placeholder"
            )
            raise ValueError(f"{found}: use {allowed}, or $$ for a literal $")
        return template


class Keda(ApiModel):
    """KEDA's Prometheus scaler, for autoscaling mode keda."""

    server_address: str = Field(
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        max_length=512,
        description="Prometheus as KEDA reaches it, e.g. http://prometheus-operated.monitoring.svc:9090.",
    )
    failure_threshold: int = Field(
        3,
        ge=1,
        le=100,
        description="Failed reads of Prometheus in a row after which KEDA falls back to what "
        "autoscaling.onMetricsMissing says: hold keeps the current replicas, minReplicas goes there.",
    )


class Autoscaling(ApiModel):
    rules: ClassVar = (
        Rule(
            "self.minReplicas <= self.maxReplicas",
            "must be <= maxReplicas",
            lambda a: a.min_replicas <= a.max_replicas,
            ".minReplicas",
        ),
        Rule(
            "self.mode != 'keda' || has(self.keda)",
            "required with mode keda: the Prometheus address KEDA reads",
            lambda a: a.mode != "keda" or a.keda is not None,
            ".keda",
        ),
        Rule(
            "self.mode != 'keda' || self.targets.queueDepthPerReplica > 0"
            " || self.targets.capacityUtilizationPercent > 0",
            "mode keda scales on queueDepthPerReplica and capacityUtilizationPercent: set at least one above 0",
            lambda a: (
                a.mode != "keda" or a.targets.queue_depth_per_replica > 0 or a.targets.capacity_utilization_percent > 0
            ),
            ".targets",
        ),
        Rule(
            "self.mode != 'keda' || self.targets.capacityUtilizationPercent == 0 || has(self.capacity.rpsPerReplica)",
            "required with mode keda and targets.capacityUtilizationPercent above 0: KEDA cannot learn a "
            "replica's capacity (or set capacityUtilizationPercent to 0 to scale on the queue only)",
            lambda a: (
                a.mode != "keda"
                or a.targets.capacity_utilization_percent == 0
                or a.capacity.rps_per_replica is not None
            ),
            ".capacity.rpsPerReplica",
        ),
    )

    mode: Literal["operator", "hpa", "keda", "none"] = Field(
        "operator",
        description="operator: Unbusy scales from Prometheus; hpa: render HorizontalPodAutoscalers; keda: render "
        "KEDA ScaledObjects with the operator's queries; none: fixed.",
    )
    min_replicas: int = Field(1, ge=0, le=1000, description="Fewest replicas per variant.")
    max_replicas: int = Field(10, ge=1, le=1000, description="Most replicas per variant.")
    targets: Targets = Field(default_factory=Targets, description="Metric targets; the largest demand wins.")
    tolerance: float = Field(0.1, ge=0, le=1, description="No change while metric/target is within 1 +- this.")
    behavior: Behavior = Field(default_factory=Behavior, description="Stabilisation windows and step limits.")
    on_metrics_missing: Literal["hold", "minReplicas"] = Field(
        "hold", description="When metrics are missing: keep the last good count, or go to minReplicas."
    )
    forecast: Forecast = Field(default_factory=Forecast, description="Predictive scale-out.")
    seasonal: Seasonal = Field(
        default_factory=Seasonal, description="A floor from the demand of the same time yesterday or last week."
    )
    capacity: Capacity = Field(default_factory=Capacity, description="Capacity per replica and burst mode.")
    demand: DemandMetric = Field(
        default_factory=DemandMetric, description="Where each variant's offered load is read, refused requests too."
    )
    interval_seconds: int = Field(
        15, ge=5, le=600, description="How often the operator evaluates (operator mode) or KEDA polls (keda mode)."
    )
    keda: Keda | None = Field(None, description="KEDA's Prometheus scaler (mode keda).")
