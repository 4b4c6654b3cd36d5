"""External traffic split by weight: ingress-nginx canary Ingresses or a Gateway API HTTPRoute."""

from __future__ import annotations

import re
from typing import Any

from unbusy import series
from unbusy.api import InferenceService
from unbusy.api.routing import Routing
from unbusy.render import inference_pool, meta
from unbusy.render.context import RenderContext, weight

NGINX = "nginx.ingress.kubernetes.io"
# The Service port every Ingress backend names (Triton's HTTP port, render/service.py).
BACKEND_PORT = "http"
# The HTTPRoute has one rule, which carries every variant as a weighted backendRef.
ROUTE_RULE = 0
BUSY_STATUS = int(series.BUSY_STATUS)  # Triton's answer when its queue is full
# The provider name Traefik qualifies the services of its Kubernetes Gateway provider with.
TRAEFIK_GATEWAY_PROVIDER = "kubernetesgateway"


def route_name(isvc: InferenceService) -> str:
    """The primary Ingress and the HTTPRoute carry the InferenceService's own name."""
    return isvc.metadata.name


def nginx_upstream(isvc: InferenceService, variant: str) -> str:
    """ingress-nginx's upstream of a variant's Service: <namespace>-<service>-<port>, as its controller
    names them (upstreamName). A request the canary Ingress takes carries this in its `canary` label."""
    return f"{isvc.metadata.namespace}-{meta.variant_name(isvc, variant)}-{BACKEND_PORT}"


def envoy_gateway_cluster(namespace: str, route: str) -> str:
    """The Envoy cluster Envoy Gateway makes of the rule of the HTTPRoute `route` (its
    irRouteDestinationName): httproute/<namespace>/<name>/rule/<index>. Every backendRef of the
    rule, that is every variant, is a weighted locality of this one cluster."""
    return f"httproute/{namespace}/{route}/rule/{ROUTE_RULE}"


def _traefik_normalize(name: str) -> str:
    """Traefik's provider.Normalize: runs of anything but letters and digits become one '-'."""
    return "-".join(re.findall(r"[^\W_]+", name))


def traefik_service_regex(namespace: str, route: str, gateway_namespace: str, gateway: str, backend: str) -> str:
    """An anchored regex of the `service` label of Traefik's counters for one backendRef (a
    variant's Service) of the HTTPRoute `route`. Traefik's Kubernetes Gateway provider names it
    <router>-svc-<namespace>-<backend>-<backend index>@kubernetesgateway, the router being
    Normalize(httproute-<namespace>-<route>-gw-<gateway namespace>-<gateway>-ep-<entry point>-<rule
    index>) and 10 bytes of a hash in hex. The entry point (one router per Gateway listener) and
    the hash (of the match rule) are Traefik's own, and the index moves as variants come and go:
    all three are matched, not named; the backend's name pins the variant."""
    router = _traefik_normalize(f"httproute-{namespace}-{route}-gw-{gateway_namespace}-{gateway}")
    parts = (
        f"^{series.escape_regex(router)}-ep-[^@]+-{ROUTE_RULE}-[0-9a-f]{{20}}",
        f"-svc-{series.escape_regex(namespace)}-{series.escape_regex(backend)}-[0-9]+",
        f"@{series.escape_regex(TRAEFIK_GATEWAY_PROVIDER)}$",
    )
    return "".join(parts)


def url(routing: Routing | None) -> str | None:
    if routing is None:
        return None
    scheme = "https" if routing.tls_secret_name else "http"
    return f"{scheme}://{routing.host}{routing.path}"


def _weights(isvc: InferenceService, ctx: RenderContext) -> list[tuple[str, int]]:
    return [(v.name, weight(v, ctx)) for v in isvc.spec.effective_variants()]


def _balancing_annotations(routing: Routing) -> dict[str, str]:
    """Annotations ingress-nginx honours on canary Ingresses too."""
    annotations = {f"{NGINX}/load-balance": routing.load_balancing}
    if routing.session_affinity == "cookie":
        annotations |= {f"{NGINX}/affinity": "cookie", f"{NGINX}/session-cookie-name": "unbusy-affinity"}
    return annotations


def _primary_annotations(routing: Routing) -> dict[str, str]:
    timeouts = routing.timeouts
    annotations = _balancing_annotations(routing) | {
        f"{NGINX}/proxy-connect-timeout": str(timeouts.connect_seconds),
        f"{NGINX}/proxy-read-timeout": str(timeouts.read_seconds),
        f"{NGINX}/proxy-send-timeout": str(timeouts.send_seconds),
        # Triton answers 503 when its queue is full: let nginx retry another replica.
        f"{NGINX}/proxy-next-upstream": "error timeout http_503" if routing.retries_on_503 else "error timeout",
        f"{NGINX}/proxy-next-upstream-tries": str(routing.retries_on_503 + 1),
    }
    limit = routing.rate_limit
    if limit and limit.rps:
        annotations |= {
            f"{NGINX}/limit-rps": str(limit.rps),
            f"{NGINX}/limit-burst-multiplier": str(limit.burst_multiplier),
        }
    if limit and limit.connections:
        annotations[f"{NGINX}/limit-connections"] = str(limit.connections)
    return annotations


def _ingress(isvc: InferenceService, name: str, variant: str, annotations: dict[str, str]) -> dict[str, Any]:
    routing = isvc.spec.routing
    spec: dict[str, Any] = {
        "ingressClassName": routing.ingress_class_name,
        "rules": [
            {
                "host": routing.host,
                "http": {
                    "paths": [
                        {
                            "path": routing.path,
                            "pathType": "Prefix",
                            "backend": {
                                "service": {"name": meta.variant_name(isvc, variant), "port": {"name": BACKEND_PORT}}
                            },
                        }
                    ]
                },
            }
        ],
    }
    if routing.tls_secret_name:
        spec["tls"] = [{"hosts": [routing.host], "secretName": routing.tls_secret_name}]
    metadata = meta.metadata(isvc, name, variant, annotations=annotations)
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata, "spec": spec}


def nginx_weighted(isvc: InferenceService, ctx: RenderContext) -> list[tuple[str, int]]:
    """The variants that carry traffic, heaviest first: the first is behind the primary Ingress."""
    return sorted((pair for pair in _weights(isvc, ctx) if pair[1] > 0), key=lambda pair: -pair[1])


def nginx_ingresses(isvc: InferenceService, ctx: RenderContext) -> list[dict[str, Any]]:
    """The heaviest variant behind the primary Ingress, the other weighted one as its canary."""
    weighted = nginx_weighted(isvc, ctx)
    if not weighted:
        return []
    routing = isvc.spec.routing
    primary_variant = weighted[0][0]
    manifests = [_ingress(isvc, route_name(isvc), primary_variant, _primary_annotations(routing))]
    for variant, share in weighted[1:]:
        canary = _balancing_annotations(routing) | {f"{NGINX}/canary": "true", f"{NGINX}/canary-weight": str(share)}
        manifests.append(_ingress(isvc, f"{route_name(isvc)}-canary", variant, canary))
    return manifests


def _backend(isvc: InferenceService, variant: str) -> dict[str, Any]:
    """A variant as a backendRef: its InferencePool (no port: the pool's targetPorts say where its
    pods listen), or its Service."""
    if inference_pool.pooled(isvc):
        return {
            "group": inference_pool.GROUP,
            "kind": inference_pool.KIND,
            "name": inference_pool.pool_name(isvc, variant),
        }
    return {"name": meta.variant_name(isvc, variant), "port": meta.HTTP_PORT}


def http_route(isvc: InferenceService, ctx: RenderContext) -> dict[str, Any]:
    routing = isvc.spec.routing
    gateway = routing.gateway
    parent = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway.name}
    parent |= {k: v for k, v in (("namespace", gateway.namespace), ("sectionName", gateway.section_name)) if v}
    backends = [_backend(isvc, variant) | {"weight": share} for variant, share in _weights(isvc, ctx)]
    rule: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": routing.path}}],
        "backendRefs": backends,
        "timeouts": {"request": f"{routing.timeouts.read_seconds}s"},
    }
    if routing.retries_on_503:
        # Triton answers 503 when its queue is full: the Gateway retries on another replica.
        rule["retry"] = {"codes": [BUSY_STATUS], "attempts": routing.retries_on_503}
    if routing.extension_filters:
        rule["filters"] = [
            {"type": "ExtensionRef", "extensionRef": {"group": f.group, "kind": f.kind, "name": f.name}}
            for f in routing.extension_filters
        ]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": meta.metadata(isvc, route_name(isvc)),
        "spec": {"parentRefs": [parent], "hostnames": [routing.host], "rules": [rule]},
    }


def render(isvc: InferenceService, ctx: RenderContext) -> list[dict[str, Any]]:
    routing = isvc.spec.routing
    if routing is None:
        return []
    return nginx_ingresses(isvc, ctx) if routing.effective_provider == "nginx" else [http_route(isvc, ctx)]
