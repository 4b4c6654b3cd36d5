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
- promql: the user's template, with the variant's values substituted as quoted strings.
- triton: no edge: Triton's answered requests plus those it refused after queueing. Those it
  refuses because its queue is full it counts nowhere: overload is not measurable.

Rates of series that differ in at least one label are joined with `or` (their union) inside
one sum, so each query is empty, not 0, when none of its series exists yet.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

from unbusy import series
from unbusy.api import InferenceService
from unbusy.render import meta, routing


@dataclass(frozen=True)
class DemandQueries:
    source: str  # nginx | envoy-gateway | istio | promql | triton
    measurable: bool  # the source sees refused requests: demand beyond capacity is visible
    requests: str  # requests per second offered to the variant, refused ones included
    rejected: str | None  # of which refused with HTTP 503; None: the source has no query for them


def _sum_of_rates(selected: Sequence[tuple[str, str]], window: str) -> str:
    """The summed rate of every (metric, selector): disjoint series, so `or` is their union."""
    return "sum(" + " or ".join(f"rate({metric}{selector}[{window}])" for metric, selector in selected) + ")"


def _nginx(isvc: InferenceService, variant: str, window: str, *extra: str) -> str:
    namespace = isvc.metadata.namespace
    namespace_labels = (
        (series.matcher(series.EXPORTED_NAMESPACE, namespace),),  # scraped without honorLabels
        (series.matcher(series.NAMESPACE, namespace), series.matcher(series.EXPORTED_NAMESPACE, "")),  # with
    )
    service = series.matcher(series.NGINX_SERVICE, meta.variant_name(isvc, variant))
    routes = (
        (service, series.matcher(series.NGINX_CANARY, "")),  # behind the primary Ingress
        (series.matcher(series.NGINX_CANARY, routing.nginx_upstream(isvc, variant)),),  # taken by the canary
    )
    ingress = series.matcher(series.NGINX_INGRESS, routing.route_name(isvc))
    selectors = [series.selector(*where, ingress, *route, *extra) for where in namespace_labels for route in routes]
    return _sum_of_rates([(series.NGINX_REQUESTS, s) for s in selectors], window)


def _envoy_gateway(isvc: InferenceService, share: float, window: str, *extra: str) -> str:
    route = routing.envoy_gateway_cluster(isvc.metadata.namespace, routing.route_name(isvc))
    cluster = series.matcher(series.ENVOY_CLUSTER, route)
    rule = _sum_of_rates([(series.ENVOY_UPSTREAM_RESPONSES, series.selector(cluster, *extra))], window)
    return f"{rule} * {share:.6g}"


def _istio(isvc: InferenceService, variant: str, window: str, *extra: str) -> str:
    where = series.selector(
        series.matcher(series.ISTIO_REPORTER, series.names_regex(series.ISTIO_CLIENT_REPORTERS), "=~"),
        series.matcher(series.ISTIO_SERVICE_NAMESPACE, isvc.metadata.namespace),
        series.matcher(series.ISTIO_SERVICE, meta.variant_name(isvc, variant)),
        *extra,
    )
    return _sum_of_rates([(series.ISTIO_REQUESTS, where)], window)


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
    model = series.matcher(series.MODEL, isvc.spec.model.name)
    refused = (series.REQUEST_FAILURE, scope.triton(model, series.matcher(series.REASON, series.REJECTED)))
    return DemandQueries(
        source="triton",
        measurable=False,
        requests=_sum_of_rates([(series.REQUEST_SUCCESS, scope.triton(model)), refused], window),
        rejected=_sum_of_rates([refused], window),
    )


def demand_queries(isvc: InferenceService, variant: str, share: float, window_seconds: int) -> DemandQueries:
    """One variant's demand from the source the spec names; `share` is its part of the route's
    traffic (its weight / 100), for an edge that counts the whole route only."""
    if window_seconds < 1:
        raise ValueError(f"window_seconds must be at least 1, not {window_seconds}")
    window = f"{window_seconds}s"
    source = isvc.spec.demand_source()
    if source == "nginx":
        refused = series.matcher(series.NGINX_STATUS, series.BUSY_STATUS)
        requests, rejected = _nginx(isvc, variant, window), _nginx(isvc, variant, window, refused)
    elif source == "envoy-gateway":
        refused = series.matcher(series.ENVOY_CODE_CLASS, series.ENVOY_SERVER_ERRORS)
        requests, rejected = _envoy_gateway(isvc, share, window), _envoy_gateway(isvc, share, window, refused)
    elif source == "istio":
        refused = series.matcher(series.ISTIO_RESPONSE_CODE, series.BUSY_STATUS)
        requests, rejected = _istio(isvc, variant, window), _istio(isvc, variant, window, refused)
    elif source == "promql":
        demand = isvc.spec.autoscaling.demand
        requests = _template(demand.query, isvc, variant, window)
        rejected = demand.rejected_query and _template(demand.rejected_query, isvc, variant, window)
    else:
        return _triton(isvc, variant, window)
    return DemandQueries(source, True, requests, rejected)
