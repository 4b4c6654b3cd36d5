"""Offered load at the edge: the PromQL of one variant's requests per second, refused ones
included, as the proxy in front of Triton counts them.

Under overload Triton refuses requests with HTTP 503 and counts the queue-full ones nowhere:
only the edge sees how far demand exceeds capacity. The scaling loop reads these queries as
the variant's demand and the busy-rate alert divides their refused share. Each source names
the variant's requests as that proxy labels what Unbusy renders (routing.py); the metric and
label names are series.py's, checked against each project's source by
tests/contract/test_edge_contract.py:

- nginx: ingress-nginx counts a request under the Ingress and Service of the nginx location
  that took it, which for canary traffic too is the primary Ingress's; a request the canary
  Ingress took also carries that backend's upstream name in `canary`. So a variant's requests
  are the primary Ingress's to its Service that no canary took, plus those whose `canary` is
  its upstream: wherever the variant sits now (the heaviest variant is primary, and weights
  move). The Ingress's namespace is `exported_namespace` where Prometheus scrapes the
  controller without honorLabels (its chart's default) and `namespace` with it: both are read.
- envoy-gateway: Envoy Gateway makes the HTTPRoute's rule one Envoy cluster, each variant a
  weighted locality of it; its stats cannot tell variants apart, so a variant's demand is the
  rule's times the variant's share of the weight, the split Envoy applies. Refused: 5xx.
- istio: requests to the variant's Service as the proxies before it report them (the ingress
  gateway, client sidecars, a waypoint), so a request Triton refuses is counted once.
- traefik: Traefik's Kubernetes Gateway provider makes each backendRef of the HTTPRoute's rule a
  service of its own, counted per server with the status code: a variant's requests are its
  backend's, selected by a regex of the name Traefik gives it (routing.traefik_service_regex),
  which no two variants share. A request to a variant with no ready replica is refused before
  any server and counted nowhere. The fleet's one query groups by the service, and each variant
  matches its regex to the rows.
- promql: the user's template, with the variant's values substituted as quoted strings.
- triton: no edge: Triton's answered requests plus those it refused after queueing. Those it
  refuses because its queue is full it counts nowhere: overload is not measurable.

Rates of series that differ in at least one label are joined with `or` (their union) inside
one sum, so each query is empty, not 0, when none of its series exists yet.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from unbusy import series
from unbusy.api import InferenceService
from unbusy.render import meta, routing

# The rate window the scaling inputs read (scaling/promql.py; KEDA's triggers, render/keda.py).
RATE_WINDOW_S = 60


@dataclass(frozen=True)
class Counter:
    """The series of one counter that make up part of a variant's demand: `fixed` matchers are the
    same for every variant, `labels` are this variant's own (label, value) equalities and
    `patterns` its own (label, anchored regex) matches, for a label whose values it cannot name
    exactly (Traefik's service names carry a hash); the fleet's query groups by both kinds of label.
    A variant's counters never share a series, so their rates add up."""

    metric: str
    labels: tuple[tuple[str, str], ...]
    fixed: tuple[str, ...] = ()
    patterns: tuple[tuple[str, str], ...] = ()

    def selector(self) -> str:
        equal = (series.matcher(k, v) for k, v in self.labels)
        return series.selector(*equal, *(series.matcher(k, r, "=~") for k, r in self.patterns), *self.fixed)


@dataclass(frozen=True)
class Counters:
    """A demand query as data: the summed rate of `counters`, times `share`. The scaling loop reads
    a whole fleet's with one query per counter (scaling/fleet.py), grouped by their labels."""

    counters: tuple[Counter, ...]
    share: float = 1.0

    def query(self, window: str) -> str:
        """The variant's own query: every counter's rate, `or`-ed into one sum (empty, not 0, while
        none of the series exists)."""
        summed = "sum(" + " or ".join(f"rate({c.metric}{c.selector()}[{window}])" for c in self.counters) + ")"
        return summed if self.share == 1.0 else f"{summed} * {self.share:.6g}"


@dataclass(frozen=True)
class DemandQueries:
    source: str  # nginx | envoy-gateway | istio | traefik | promql | triton
    measurable: bool  # the source sees refused requests: demand beyond capacity is visible
    requests: str  # requests per second offered to the variant, refused ones included
    rejected: str | None  # of which refused with HTTP 503; None: the source has no query for them
    # The two as data, for every source but a user's PromQL (which only runs as written).
    requests_counters: Counters | None = None
    rejected_counters: Counters | None = None


def _queries(source: str, measurable: bool, requests: Counters, rejected: Counters, window: str) -> DemandQueries:
    return DemandQueries(source, measurable, requests.query(window), rejected.query(window), requests, rejected)


def _nginx(isvc: InferenceService, variant: str, *extra: tuple[str, str]) -> Counters:
    namespace = isvc.metadata.namespace
    namespace_labels = (
        ((series.EXPORTED_NAMESPACE, namespace),),  # scraped without honorLabels
        ((series.NAMESPACE, namespace), (series.EXPORTED_NAMESPACE, "")),  # with
    )
    service = (series.NGINX_SERVICE, meta.variant_name(isvc, variant))
    routes = (
        (service, (series.NGINX_CANARY, "")),  # behind the primary Ingress
        ((series.NGINX_CANARY, routing.nginx_upstream(isvc, variant)),),  # taken by the canary
    )
    ingress = (series.NGINX_INGRESS, routing.route_name(isvc))
    return Counters(
        tuple(
            Counter(series.NGINX_REQUESTS, (*where, ingress, *route, *extra))
            for where in namespace_labels
            for route in routes
        )
    )


def _envoy_gateway(isvc: InferenceService, share: float, *extra: tuple[str, str]) -> Counters:
    route = routing.envoy_gateway_cluster(isvc.metadata.namespace, routing.route_name(isvc))
    return Counters((Counter(series.ENVOY_UPSTREAM_RESPONSES, ((series.ENVOY_CLUSTER, route), *extra)),), share)


def _istio(isvc: InferenceService, variant: str, *extra: tuple[str, str]) -> Counters:
    reporters = series.matcher(series.ISTIO_REPORTER, series.names_regex(series.ISTIO_CLIENT_REPORTERS), "=~")
    labels = (
        (series.ISTIO_SERVICE_NAMESPACE, isvc.metadata.namespace),
        (series.ISTIO_SERVICE, meta.variant_name(isvc, variant)),
        *extra,
    )
    return Counters((Counter(series.ISTIO_REQUESTS, labels, (reporters,)),))


def _traefik(isvc: InferenceService, variant: str, *extra: tuple[str, str]) -> Counters:
    namespace, gateway = isvc.metadata.namespace, isvc.spec.routing.gateway
    backend = routing.traefik_service_regex(
        namespace,
        routing.route_name(isvc),
        gateway.namespace or namespace,
        gateway.name,
        meta.variant_name(isvc, variant),
    )
    return Counters((Counter(series.TRAEFIK_SERVICE_REQUESTS, extra, patterns=((series.TRAEFIK_SERVICE, backend),)),))


def _template(template: str, isvc: InferenceService, variant: str, window: str) -> str:
    """The user's PromQL with the variant's values in, as quoted strings that cannot end early,
    summed: whatever series it returns add up to the variant's one number."""
    values = {
        "namespace": isvc.metadata.namespace,
        "inferenceservice": isvc.metadata.name,
        "variant": variant,
        "service": meta.variant_name(isvc, variant),
    }
    query = string.Template(template).substitute({k: series.quote(v) for k, v in values.items()}, window=window)
    return f"sum({query})"


def _triton(isvc: InferenceService, variant: str, window: str) -> DemandQueries:
    scope = meta.series_scope(isvc, variant)
    labels = (
        (series.NAMESPACE, scope.namespace),
        (series.INFERENCE_SERVICE, scope.inference_service),
        (series.VARIANT, variant),
        (series.MODEL, isvc.spec.model.name),
    )
    refused = Counter(series.REQUEST_FAILURE, labels, (series.matcher(series.REASON, series.REJECTED),))
    requests = Counters((Counter(series.REQUEST_SUCCESS, labels), refused))
    return _queries("triton", False, requests, Counters((refused,)), window)


def demand_queries(isvc: InferenceService, variant: str, share: float, window_seconds: int) -> DemandQueries:
    """One variant's demand from the source the spec names; `share` is its part of the route's
    traffic (its weight / 100), for an edge that counts the whole route only."""
    if window_seconds < 1:
        raise ValueError(f"window_seconds must be at least 1, not {window_seconds}")
    window = f"{window_seconds}s"
    source = isvc.spec.demand_source()
    if source == "nginx":
        refused = (series.NGINX_STATUS, series.BUSY_STATUS)
        return _queries(source, True, _nginx(isvc, variant), _nginx(isvc, variant, refused), window)
    if source == "envoy-gateway":
        refused = (series.ENVOY_CODE_CLASS, series.ENVOY_SERVER_ERRORS)
        return _queries(source, True, _envoy_gateway(isvc, share), _envoy_gateway(isvc, share, refused), window)
    if source == "istio":
        refused = (series.ISTIO_RESPONSE_CODE, series.BUSY_STATUS)
        return _queries(source, True, _istio(isvc, variant), _istio(isvc, variant, refused), window)
    if source == "traefik":
        refused = (series.TRAEFIK_CODE, series.BUSY_STATUS)
        return _queries(source, True, _traefik(isvc, variant), _traefik(isvc, variant, refused), window)
    if source == "promql":
        demand = isvc.spec.autoscaling.demand
        requests = _template(demand.query, isvc, variant, window)
        rejected = demand.rejected_query and _template(demand.rejected_query, isvc, variant, window)
        return DemandQueries(source, True, requests, rejected)
    return _triton(isvc, variant, window)
