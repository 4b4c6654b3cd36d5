"""External traffic split by weight: ingress-nginx canary Ingresses or a Gateway API HTTPRoute."""

from __future__ import annotations

from typing import Any

from unbusy.api import InferenceService
from unbusy.api.spec import Routing
from unbusy.render import meta
from unbusy.render.context import RenderContext, weight

NGINX = "nginx.ingress.kubernetes.io"


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
        # Triton answers 503 when its queue is full: let nginx retry another replica once.
        f"{NGINX}/proxy-next-upstream": "error timeout http_503",
        f"{NGINX}/proxy-next-upstream-tries": "2",
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
                                "service": {"name": meta.variant_name(isvc, variant), "port": {"name": "http"}}
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


def nginx_ingresses(isvc: InferenceService, ctx: RenderContext) -> list[dict[str, Any]]:
    """The heaviest variant behind the primary Ingress, the other weighted one as its canary."""
    weighted = sorted((pair for pair in _weights(isvc, ctx) if pair[1] > 0), key=lambda pair: -pair[1])
    if not weighted:
        return []
    routing = isvc.spec.routing
    primary_variant = weighted[0][0]
    manifests = [_ingress(isvc, isvc.metadata.name, primary_variant, _primary_annotations(routing))]
    for variant, share in weighted[1:]:
        canary = _balancing_annotations(routing) | {f"{NGINX}/canary": "true", f"{NGINX}/canary-weight": str(share)}
        manifests.append(_ingress(isvc, f"{isvc.metadata.name}-canary", variant, canary))
    return manifests


def http_route(isvc: InferenceService, ctx: RenderContext) -> dict[str, Any]:
    routing = isvc.spec.routing
    gateway = routing.gateway
    parent = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway.name}
    parent |= {k: v for k, v in (("namespace", gateway.namespace), ("sectionName", gateway.section_name)) if v}
    backends = [
        {"name": meta.variant_name(isvc, variant), "port": meta.HTTP_PORT, "weight": share}
        for variant, share in _weights(isvc, ctx)
    ]
    rule = {
        "matches": [{"path": {"type": "PathPrefix", "value": routing.path}}],
        "backendRefs": backends,
        "timeouts": {"request": f"{routing.timeouts.read_seconds}s"},
    }
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": meta.metadata(isvc, isvc.metadata.name),
        "spec": {"parentRefs": [parent], "hostnames": [routing.host], "rules": [rule]},
    }


def render(isvc: InferenceService, ctx: RenderContext) -> list[dict[str, Any]]:
    routing = isvc.spec.routing
    if routing is None:
        return []
    return nginx_ingresses(isvc, ctx) if routing.provider == "nginx" else [http_route(isvc, ctx)]
