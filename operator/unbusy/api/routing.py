"""spec.routing: how clients reach the variants (ingress-nginx or the Gateway API)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from unbusy.api.base import ApiModel


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


class Routing(ApiModel):
    provider: Literal["nginx", "gateway"] = Field(
        "nginx", description="nginx: ingress-nginx with canary annotations; gateway: Gateway API HTTPRoute."
    )
    host: str = Field(
        pattern=r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        max_length=253,
        description="Host name clients use.",
    )
    path: str = Field("/", pattern=r"^/[A-Za-z0-9._~/\-]*$", max_length=256, description="Path prefix.")
    tls_secret_name: str | None = Field(None, max_length=253, description="TLS certificate Secret for the host.")
    ingress_class_name: str = Field("nginx", max_length=253, description="IngressClass (provider nginx).")
    gateway: GatewayRef | None = Field(None, description="Gateway to attach to (provider gateway).")
    rate_limit: RateLimit | None = Field(None, description="Token-bucket rate limits at the edge (provider nginx).")
    load_balancing: Literal["ewma", "round_robin"] = Field(
        "ewma", description="ewma sends requests to the replica with the lowest recent latency."
    )
    session_affinity: Literal["none", "cookie"] = Field("none", description="Sticky sessions by cookie.")
    timeouts: Timeouts = Field(default_factory=Timeouts, description="Upstream timeouts.")
