"""The InferenceService spec: what a platform engineer asks for. Each section's models live in a
module of api/ named after it (model, triton, gpu, ...); here are the spec itself and the rules
across sections."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from unbusy.api.alerts import Alerts
from unbusy.api.autoscaling import EDGE_PROVIDERS, Autoscaling
from unbusy.api.base import ApiModel, Rule
from unbusy.api.fallback import Fallback
from unbusy.api.gpu import Gpu
from unbusy.api.model import Model
from unbusy.api.monitoring import Monitoring
from unbusy.api.network_policy import NetworkPolicy
from unbusy.api.rollout import CANARY_SUFFIX, Rollout
from unbusy.api.routing import PROVIDER_CEL, Routing
from unbusy.api.scheduling import Disruption, Scheduling
from unbusy.api.triton import Triton
from unbusy.api.variants import Variant

MAX_VARIANTS = 8
# How the rules below name ingress-nginx, and the way out of its one canary.
NGINX = "with ingress-nginx (routing.provider nginx, or no routing.gateway)"
FOR_MORE = "route through the Gateway API (routing.gateway) for more"
DEFAULT_VARIANT = "main"


class InferenceServiceSpec(ApiModel):
    """What to serve (model, Triton, GPUs), how traffic splits between variants and how replicas follow load."""

    rules: ClassVar = (
        Rule(
            "!has(self.variants) || size(self.variants) == 0 || self.variants.map(v, v.weight).sum() == 100",
            "the weights must add up to 100",
            lambda spec: not spec.variants or sum(v.weight for v in spec.variants) == 100,
            ".variants",
        ),
        Rule(
            "!has(self.variants) || self.variants.all(v, self.variants.exists_one(w, w.name == v.name))",
            "variant names must be unique",
            lambda spec: len({v.name for v in spec.variants}) == len(spec.variants),
            ".variants",
        ),
        Rule(
            f"!has(self.routing) || {PROVIDER_CEL} != 'nginx' || !has(self.variants)"
            " || self.variants.filter(v, v.weight > 0).size() <= 2",
            f"{NGINX} at most two variants may carry weight "
            f"(ingress-nginx allows one canary per host and path); {FOR_MORE}",
            lambda spec: (
                spec.routing is None
                or spec.routing.effective_provider != "nginx"
                or sum(1 for v in spec.variants if v.weight > 0) <= 2
            ),
            ".variants",
        ),
        Rule(
            "!has(self.routing) || !has(self.routing.provider) || self.routing.provider != 'gateway'"
            " || has(self.routing.gateway)",
            "gateway is required with provider gateway",
            lambda spec: spec.routing is None or spec.routing.provider != "gateway" or spec.routing.gateway is not None,
            ".routing.gateway",
        ),
        Rule(
            "!has(self.autoscaling) || !has(self.autoscaling.demand) || !has(self.autoscaling.demand.source)"
            f" || !(self.autoscaling.demand.source in [{', '.join(repr(s) for s in EDGE_PROVIDERS)}])"
            f" || (has(self.routing) && {PROVIDER_CEL}"
            " == (self.autoscaling.demand.source == 'nginx' ? 'nginx' : 'gateway'))",
            "nginx reads the Ingresses of routing.provider nginx, envoy-gateway, istio and traefik the HTTPRoute "
            "of routing.provider gateway (routing.gateway set); promql and triton need no routing",
            lambda spec: (
                spec.autoscaling.demand.source not in EDGE_PROVIDERS
                or (
                    spec.routing is not None
                    and spec.routing.effective_provider == EDGE_PROVIDERS[spec.autoscaling.demand.source]
                )
            ),
            ".autoscaling.demand.source",
        ),
        Rule(
            f"!has(self.rollout) || !has(self.rollout.canary) || !has(self.routing) || {PROVIDER_CEL} != 'nginx'"
            " || !has(self.variants) || self.variants.filter(v, v.weight > 0).size() <= 1",
            f"with rollout.canary and {NGINX.removeprefix('with ')} only one variant may carry weight (its canary "
            f"takes ingress-nginx's one canary Ingress); {FOR_MORE}",
            lambda spec: (
                spec.rollout.canary is None
                or spec.routing is None
                or spec.routing.effective_provider != "nginx"
                or sum(1 for v in spec.variants if v.weight > 0) <= 1
            ),
            ".variants",
        ),
        Rule(
            f"!has(self.routing) || !has(self.routing.inferencePool) || (has(self.model.llm) && {PROVIDER_CEL} "
            "== 'gateway')",
            "needs spec.model.llm (the endpoint picker reads an LLM server's queue and KV cache) and the Gateway "
            "API (routing.gateway)",
            lambda spec: (
                spec.routing is None
                or spec.routing.inference_pool is None
                or (spec.model.llm is not None and spec.routing.effective_provider == "gateway")
            ),
            ".routing.inferencePool",
        ),
        Rule(
            "!has(self.fallback) || (has(self.variants) && self.variants.exists(v, v.name == self.fallback.variant))",
            "must name one of spec.variants",
            lambda spec: spec.fallback is None or any(v.name == spec.fallback.variant for v in spec.variants),
            ".fallback.variant",
        ),
        Rule(
            "!has(self.fallback) || (has(self.routing)"
            " && (!has(self.autoscaling) || !has(self.autoscaling.mode) || self.autoscaling.mode == 'operator'))",
            "needs routing (its weights move) and autoscaling.mode operator (its loop moves them)",
            lambda spec: spec.fallback is None or (spec.routing is not None and spec.autoscaling.mode == "operator"),
            ".fallback",
        ),
        Rule(
            f"!has(self.fallback) || !has(self.routing) || {PROVIDER_CEL} != 'nginx' || !has(self.variants)"
            " || self.variants.filter(v, v.weight > 0 && v.name != self.fallback.variant).size() <= 1",
            f"{NGINX} only one variant besides the fallback may carry weight (the fallback "
            f"takes ingress-nginx's one canary Ingress); {FOR_MORE}",
            lambda spec: (
                spec.fallback is None
                or spec.routing is None
                or spec.routing.effective_provider != "nginx"
                or sum(1 for v in spec.variants if v.weight > 0 and v.name != spec.fallback.variant) <= 1
            ),
            ".variants",
        ),
        Rule(
            "!has(self.rollout) || !has(self.rollout.canary) || !has(self.variants)"
            " || self.variants.all(v, !v.name.endsWith('-canary'))",
            "with rollout.canary no variant name may end in -canary: that is the name of a variant's canary",
            lambda spec: spec.rollout.canary is None or not any(v.name.endswith(CANARY_SUFFIX) for v in spec.variants),
            ".variants",
        ),
    )

    replicas: int | None = Field(
        None,
        ge=0,
        le=10000,
        description="Total replicas across variants (scale subresource). Split by weight in autoscaling mode none.",
    )
    model: Model = Field(description="The Triton model to serve.")
    triton: Triton = Field(default_factory=Triton, description="The Triton server container.")
    gpu: Gpu = Field(description="GPUs per replica: whole GPUs or a MIG slice.")
    scheduling: Scheduling = Field(default_factory=Scheduling, description="Where replicas may run.")
    variants: list[Variant] = Field(
        default_factory=list,
        max_length=MAX_VARIANTS,
        description=f"Named variants splitting traffic by weight; one variant '{DEFAULT_VARIANT}' when empty.",
    )
    rollout: Rollout = Field(default_factory=Rollout, description="Rolling-update strategy.")
    fallback: Fallback | None = Field(
        None,
        description="Move traffic the ready replicas cannot serve to a fallback variant instead of 503s "
        "(operator mode, with routing).",
    )
    routing: Routing | None = Field(None, description="External traffic; no Ingress or HTTPRoute when omitted.")
    autoscaling: Autoscaling = Field(default_factory=Autoscaling, description="How replicas follow load.")
    alerts: Alerts = Field(default_factory=Alerts, description="Prometheus alert rules.")
    monitoring: Monitoring = Field(default_factory=Monitoring, description="Prometheus scrape configuration.")
    disruption: Disruption = Field(default_factory=Disruption, description="PodDisruptionBudget.")
    network_policy: NetworkPolicy = Field(
        default_factory=NetworkPolicy, description="Who may reach Triton's ports over the network."
    )

    def effective_variants(self) -> list[Variant]:
        """The variants to render: the spec's, or one that takes all traffic."""
        return list(self.variants) or [Variant(name=DEFAULT_VARIANT, weight=100)]

    def ignored_fields(self) -> list[str]:
        """Fields the spec sets that do nothing for it, each as 'field: why' (the operator warns of them)."""
        ignored = self._ignored_routing()
        if self.model.llm is not None and self.autoscaling.targets.queue_depth_per_replica != 0:
            ignored.append(
                "spec.autoscaling.targets.queueDepthPerReplica: not read with spec.model.llm: an LLM backend takes "
                "every request into its own scheduler at once, so Triton's pending count stays near 0 however "
                "loaded it is; the llm block (capacity in tokens, slo.ttftP99Ms) scales it. Set it to 0"
            )
        if self.autoscaling.capacity.burst_recurrence_seconds:
            ignored.append(
                "spec.autoscaling.capacity.burstRecurrenceSeconds: deprecated and not read: the burst hold is priced "
                "by capacity.refusalPriceGpuSeconds (what a refused request is worth in GPU-seconds; 0 turns the hold "
                "off). Remove it"
            )
        return ignored

    def _ignored_routing(self) -> list[str]:
        routing = self.routing
        if routing is None:
            return []
        if routing.effective_provider == "nginx":
            nginx_only = "not read with routing.provider nginx: remove provider to route through the Gateway API"
            return [
                f"spec.routing.{name}: {nginx_only}"
                for name, unread in (("gateway", routing.gateway), ("extensionFilters", routing.extension_filters))
                if unread
            ]
        # What the Gateway API's HTTPRoute has no field for (docs/routing.md: its implementations' policies).
        no_field = "the Gateway API's HTTPRoute has no field for it: use your implementation's policy (docs/routing.md)"
        return [
            f"spec.routing.{name}: {no_field}"
            for name, unread in (
                ("rateLimit", routing.rate_limit),
                ("sessionAffinity", routing.session_affinity != "none"),
            )
            if unread
        ]

    def demand_source(self) -> str:
        """autoscaling.demand.source with auto resolved: the nginx Ingresses Unbusy renders, or Triton."""
        source = self.autoscaling.demand.source
        if source != "auto":
            return source
        return "nginx" if self.routing is not None and self.routing.effective_provider == "nginx" else "triton"
