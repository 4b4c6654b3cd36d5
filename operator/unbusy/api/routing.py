"""spec.routing: how clients reach the variants (the Gateway API, or ingress-nginx)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from unbusy.api.base import ApiModel

# spec.routing's provider as the API server's CEL rules see it (`self` is the spec): the one
# named, else gateway when a Gateway is named, else nginx (Routing.effective_provider).
PROVIDER_CEL = (
    "(has(self.routing.provider) ? self.routing.provider : (has(self.routing.gateway) ? 'gateway' : 'nginx'))"
)


class RateLimit(ApiModel):
    rps: int | None = Field(None, ge=1, le=1_000_000, description="Requests per second per client IP.")
    burst_multiplier: int = Field(5, ge=1, le=100, description="Burst allowed above rps, as a multiple of it.")
    connections: int | None = Field(None, ge=1, le=100_000, description="Concurrent connections per client IP.")


class Timeouts(ApiModel):
    connect_seconds: int = Field(5, ge=1, le=3600, description="Upstream connect timeout.")
    read_seconds: int = Field(60, ge=1, le=3600, description="Upstream read timeout (long for LLM responses).")
    send_seconds: int = Field(60, ge=1, le=3600, description="Upstream send timeout.")


class GatewayRef(ApiModel):
    name: str = Field(max_length=253, description="Gateway the HTTPRoute attaches to.")
    namespace: str | None = Field(None, max_length=63, description="Gateway namespace; the service's when omitted.")
    section_name: str | None = Field(None, max_length=253, description="Listener of the Gateway.")


class ExtensionFilter(ApiModel):
    """A filter of the Gateway API implementation's own kind (HTTPRoute filter type ExtensionRef)."""

    group: str = Field(max_length=253, description="API group of the filter object, e.g. traefik.io.")
    kind: str = Field(max_length=63, description="Kind of the filter object, e.g. Middleware.")
    name: str = Field(max_length=253, description="Name of the filter object, in the service's namespace.")


class EndpointPicker(ApiModel):
    """The Inference Extension's endpoint picker (EPP) of each variant's InferencePool."""

    service_suffix: str = Field(
        "-epp",
        pattern=r"^-[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=32,
        description="A pool's picker is the Service <pool><suffix>, e.g. llama-main-epp for the pool of variant "
        "main of llama: the name the Inference Extension's inferencepool chart gives it, released as the pool.",
    )
    port: int = Field(9002, ge=1, le=65535, description="The picker's Service port (its ext-proc gRPC port).")
    failure_mode: Literal["FailClose", "FailOpen"] = Field(
        "FailClose",
        description="When the picker does not answer: FailClose refuses the request; FailOpen lets the Gateway "
        "send it to a pod of the pool without the picker.",
    )


class InferencePoolRouting(ApiModel):
    """Variants of an LLM as Gateway API Inference Extension InferencePools."""

    endpoint_picker: EndpointPicker = Field(
        default_factory=EndpointPicker, description="The endpoint picker each pool asks for a pod."
    )


class Routing(ApiModel):
    provider: Literal["gateway", "nginx"] | None = Field(
        None,
        description="gateway: a Gateway API HTTPRoute attached to routing.gateway; nginx: ingress-nginx (retired "
        "upstream since March 2026) with canary Ingresses. Default: gateway when routing.gateway is set, nginx "
        "otherwise.",
    )
    host: str = Field(
        pattern=r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        max_length=253,
        description="Host name clients use.",
    )
    path: str = Field("/", pattern=r"^/[A-Za-z0-9._~/\-]*$", max_length=256, description="Path prefix.")
    tls_secret_name: str | None = Field(None, max_length=253, description="TLS certificate Secret for the host.")
    ingress_class_name: str = Field("nginx", max_length=253, description="IngressClass (provider nginx).")
    gateway: GatewayRef | None = Field(
        None, description="Gateway the HTTPRoute attaches to; setting it makes the Gateway API the provider."
    )
    extension_filters: list[ExtensionFilter] = Field(
        default_factory=list,
        max_length=8,
        description="Filters of the Gateway API implementation applied to every request of the route (provider "
        "gateway), e.g. a Traefik Middleware that rate-limits (group traefik.io, kind Middleware).",
    )
    rate_limit: RateLimit | None = Field(
        None,
        description="Token-bucket rate limits at the edge (provider nginx; the Gateway API has none: use the "
        "implementation's policy, see extensionFilters).",
    )
    inference_pool: InferencePoolRouting | None = Field(
        None,
        description="Optional, for LLMs (spec.model.llm) behind a Gateway whose implementation serves the "
        "Gateway API Inference Extension: one InferencePool (inference.networking.k8s.io/v1) per variant, "
        "selecting its pods on Triton's HTTP port, and the HTTPRoute's backendRefs name the pools, at the "
        "variants' weights, instead of their Services; an endpoint picker then chooses each request's pod by "
        "queue and KV-cache load.",
    )
    retries_on_503: int = Field(
        1,
        ge=0,
        le=5,
        description="Times the edge retries a request a replica refused with 503 (queue full): nginx's "
        "proxy-next-upstream, the HTTPRoute's retry (Gateway API standard channel since v1.7.0; 0 leaves it out, "
        "for older Gateway API CRDs).",
    )
    load_balancing: Literal["ewma", "round_robin"] = Field(
        "ewma", description="ewma sends requests to the replica with the lowest recent latency (provider nginx)."
    )
    session_affinity: Literal["none", "cookie"] = Field(
        "none", description="Sticky sessions by cookie (provider nginx)."
    )
    timeouts: Timeouts = Field(
        default_factory=Timeouts,
        description="Upstream timeouts; the Gateway API's HTTPRoute has a request timeout only (readSeconds).",
    )

    @property
    def effective_provider(self) -> Literal["gateway", "nginx"]:
        """The provider named, else the Gateway API where a Gateway is named, else ingress-nginx: the
        default of manifests written before the Gateway API came first, which name no Gateway."""
        if self.provider is not None:
            return self.provider
        return "gateway" if self.gateway is not None else "nginx"
