"""Demand at the edge (render/edge.py): each source's queries select exactly one variant's
requests, refused ones included, evaluated by the real promtool over series labelled as each
proxy labels them, next to breaching series of other services."""

from __future__ import annotations

import pytest
import yaml
from builders import isvc
from test_promtool import promtool, run, text  # noqa: F401  (promtool is a fixture)

from unbusy import series
from unbusy.api import InferenceService
from unbusy.render import alerts
from unbusy.render.edge import DemandQueries, demand_queries

NGINX = {"routing": {"host": "resnet.example.com"}}
GATEWAY = {"host": "resnet.example.com", "provider": "gateway", "gateway": {"name": "edge"}}
TWO = {"variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]}
EVAL_AT = "5m"
STEPS = 40  # samples 15 s apart: "0+150x40" grows by 10 per second


def per_second(rps: float) -> str:
    return f"0+{rps * 15:g}x{STEPS}"


def evaluate(promtool: str, tmp_path, given: list[tuple[str, str]], checks: list[tuple[str, list[float]]]) -> None:  # noqa: F811
    """Each query must return exactly these values (no labels: every query is one sum), or nothing."""
    tests = {
        "rule_files": [],
        "tests": [
            {
                "interval": "15s",
                "input_series": [{"series": s, "values": v} for s, v in given],
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": EVAL_AT,
                        "exp_samples": [{"labels": "{}", "value": value} for value in expected],
                    }
                    for expr, expected in checks
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    run(promtool, "test", "rules", "test.yaml", cwd=tmp_path)


def demand(service: InferenceService, variant: str, share: float = 1.0) -> DemandQueries:
    return demand_queries(service, variant, share, window_seconds=60)


def checks(q: DemandQueries, requests: float, rejected: float) -> list[tuple[str, list[float]]]:
    return [(q.requests, [requests]), (q.rejected, [rejected])]


# --- ingress-nginx -------------------------------------------------------------------------

# Where the Ingress's namespace lands, by how Prometheus scrapes the controller (which runs in
# ingress-nginx, or in the service's own namespace); `ml` is replaced for the strangers.
SCRAPES = {
    "without honorLabels": {"namespace": "ingress-nginx", "exported_namespace": "ml"},
    "with honorLabels": {"namespace": "ml"},
    "controller beside the service": {"namespace": "ml", "exported_namespace": "ml"},
}


def nginx(scrape: dict[str, str], status: str, service: str, canary: str = "", ingress: str = "resnet") -> str:
    labels = {"status": status, "method": "POST", "path": "/", "ingress": ingress, "service": service}
    labels |= {"canary": canary, "host": "resnet.example.com", "controller_class": "k8s.io/ingress-nginx"}
    return text(series.NGINX_REQUESTS, scrape | labels)


@pytest.mark.parametrize("scrape", SCRAPES)
def test_nginx_reads_each_variant_behind_the_primary_or_the_canary_ingress(promtool, tmp_path, scrape):  # noqa: F811
    ours, theirs = SCRAPES[scrape], {k: "other" if v == "ml" else v for k, v in SCRAPES[scrape].items()}
    given = [
        # stable behind the primary Ingress: 10/s answered, 2/s refused, 1/s not found
        (nginx(ours, "200", "resnet-stable"), per_second(10)),
        (nginx(ours, "503", "resnet-stable"), per_second(2)),
        (nginx(ours, "404", "resnet-stable"), per_second(1)),
        # the canary Ingress's share: counted under the primary Ingress and Service, canary set
        (nginx(ours, "200", "resnet-stable", canary="ml-resnet-canary-http"), per_second(3)),
        (nginx(ours, "503", "resnet-stable", canary="ml-resnet-canary-http"), per_second(1)),
        # weights moved within the window: canary now primary, stable its canary
        (nginx(ours, "200", "resnet-canary"), per_second(2)),
        (nginx(ours, "200", "resnet-canary", canary="ml-resnet-stable-http"), per_second(1)),
        # strangers: the same names in another namespace, another InferenceService `resnet-canary`
        (nginx(theirs, "503", "resnet-stable"), per_second(100)),
        (nginx(theirs, "503", "resnet-stable", canary="other-resnet-canary-http"), per_second(100)),
        (nginx(ours, "503", "resnet-canary-main", ingress="resnet-canary"), per_second(100)),
    ]
    service = isvc(NGINX | TWO)
    stable, canary = demand(service, "stable"), demand(service, "canary")
    assert stable.source == "nginx" and stable.measurable
    evaluate(promtool, tmp_path, given, checks(stable, 14, 2) + checks(canary, 6, 1))


def test_no_series_yet_is_no_demand_not_zero(promtool, tmp_path):  # noqa: F811
    q = demand(isvc(NGINX), "main")
    stranger = (nginx(SCRAPES["with honorLabels"], "200", "other-main", ingress="other"), per_second(5))
    evaluate(promtool, tmp_path, [stranger], [(q.requests, []), (q.rejected, [])])


# --- Envoy Gateway -------------------------------------------------------------------------


def envoy(cluster: str, code_class: str) -> str:
    labels = {"envoy_cluster_name": cluster, "envoy_response_code_class": code_class, "namespace": "envoy-gateway"}
    return text(series.ENVOY_UPSTREAM_RESPONSES, labels)


def test_envoy_gateway_splits_the_route_rule_by_weight(promtool, tmp_path):  # noqa: F811
    service = isvc({"routing": GATEWAY, "autoscaling": {"demand": {"source": "envoy-gateway"}}} | TWO)
    rule = "httproute/ml/resnet/rule/0"
    given = [
        (envoy(rule, "2"), per_second(36)),
        (envoy(rule, "4"), per_second(2)),
        (envoy(rule, "5"), per_second(2)),
        (envoy("httproute/ml/resnet-a/rule/0", "5"), per_second(100)),
        (envoy("httproute/other/resnet/rule/0", "5"), per_second(100)),
        (envoy("httproute/ml/resnet/rule/1", "5"), per_second(100)),
    ]
    stable, canary = demand(service, "stable", 0.9), demand(service, "canary", 0.1)
    assert stable.source == "envoy-gateway" and stable.measurable
    evaluate(promtool, tmp_path, given, checks(stable, 36, 1.8) + checks(canary, 4, 0.2))


# --- Istio ---------------------------------------------------------------------------------


def istio(reporter: str, code: str, service: str = "resnet-main", namespace: str = "ml") -> str:
    labels = {"reporter": reporter, "response_code": code, "destination_service_name": service}
    labels |= {"destination_service_namespace": namespace, "source_workload": "istio-ingressgateway"}
    return text(series.ISTIO_REQUESTS, labels)


def test_istio_counts_each_request_once_before_the_server(promtool, tmp_path):  # noqa: F811
    service = isvc({"routing": GATEWAY, "autoscaling": {"demand": {"source": "istio"}}})
    given = [
        (istio("source", "200"), per_second(5)),
        (istio("source", "503"), per_second(1)),
        (istio("waypoint", "200"), per_second(2)),
        # the server's sidecar reports what reached it again
        (istio("destination", "200"), per_second(7)),
        (istio("source", "503", service="resnet-canary"), per_second(100)),
        (istio("source", "503", namespace="other"), per_second(100)),
    ]
    evaluate(promtool, tmp_path, given, checks(demand(service, "main"), 8, 1))


# --- Traefik -------------------------------------------------------------------------------

HASH = "799bcbf0c2317c5d1c93"  # Traefik's hash of the router's match rule: any 20 hex digits


def traefik(code: str, backend: str, index: int, entry_point: str = "web", route: str = "ml-resnet-gw-ml-edge") -> str:
    name = f"httproute-{route}-ep-{entry_point}-0-{HASH}-svc-{backend}-{index}@kubernetesgateway"
    labels = {"service": name, "code": code, "method": "POST", "protocol": "http", "namespace": "traefik"}
    return text(series.TRAEFIK_SERVICE_REQUESTS, labels)


def test_traefik_reads_each_variants_backend_of_the_route(promtool, tmp_path):  # noqa: F811
    service = isvc({"routing": GATEWAY, "autoscaling": {"demand": {"source": "traefik"}}} | TWO)
    given = [
        (traefik("200", "ml-resnet-stable", 0), per_second(10)),
        (traefik("503", "ml-resnet-stable", 0), per_second(2)),
        # the Gateway's second listener is a second router, and a removed variant moved stable's index
        (traefik("200", "ml-resnet-stable", 0, entry_point="websecure"), per_second(1)),
        (traefik("200", "ml-resnet-stable", 2), per_second(1)),
        (traefik("200", "ml-resnet-canary", 1), per_second(3)),
        (traefik("503", "ml-resnet-canary", 1), per_second(1)),
        # strangers: the route of InferenceService resnet-stable, another namespace, another Gateway,
        # a variant whose Service name extends stable's
        (traefik("503", "ml-resnet-stable-main", 0, route="ml-resnet-stable-gw-ml-edge"), per_second(100)),
        (traefik("503", "other-resnet-stable", 0, route="other-resnet-gw-other-edge"), per_second(100)),
        (traefik("503", "ml-resnet-stable", 0, route="ml-resnet-gw-ml-edge2"), per_second(100)),
        (traefik("503", "ml-resnet-stable-0", 3), per_second(100)),
    ]
    stable, canary = demand(service, "stable", 0.9), demand(service, "canary", 0.1)
    assert stable.source == "traefik" and stable.measurable
    evaluate(promtool, tmp_path, given, checks(stable, 14, 2) + checks(canary, 4, 1))


def test_traefik_reads_the_gateway_of_another_namespace(promtool, tmp_path):  # noqa: F811
    routed = GATEWAY | {"gateway": {"name": "edge", "namespace": "gateways"}}
    q = demand(isvc({"routing": routed, "autoscaling": {"demand": {"source": "traefik"}}}), "main")
    given = [
        (traefik("503", "ml-resnet-main", 0, route="ml-resnet-gw-gateways-edge"), per_second(2)),
        (traefik("503", "ml-resnet-main", 0), per_second(100)),
    ]
    evaluate(promtool, tmp_path, given, checks(q, 2, 2))


# --- Triton's own counters -----------------------------------------------------------------


def triton(metric: str, variant: str = "main", model: str = "resnet50", **extra: str) -> str:
    labels = {"namespace": "ml", "inferenceservice": "resnet", "variant": variant, "pod": "resnet-main-7d9f8-x2k4p"}
    return text(metric, labels | {"model": model, "version": "1"} | extra)


def test_without_an_edge_triton_sees_served_and_queue_timeouts_only(promtool, tmp_path):  # noqa: F811
    q = demand(isvc(), "main")
    assert (q.source, q.measurable) == ("triton", False)
    given = [
        (triton(series.REQUEST_SUCCESS), per_second(10)),
        (triton(series.REQUEST_FAILURE, reason=series.REJECTED), per_second(2)),
        (triton(series.REQUEST_FAILURE, reason="BACKEND"), per_second(1)),
        (triton(series.REQUEST_SUCCESS, variant="canary"), per_second(100)),
        (triton(series.REQUEST_SUCCESS, model="other"), per_second(100)),
    ]
    evaluate(promtool, tmp_path, given, checks(q, 12, 2))


# --- a user's PromQL -----------------------------------------------------------------------

TEMPLATE = "my_requests_total{ns=$namespace,isvc=$inferenceservice,variant=$variant,svc=$service}"
HOSTILE_NAMESPACE = 'ml"} or up{namespace="b'  # no spec can hold it; the template must stay safe anyway


def test_a_promql_template_gets_the_variants_values_as_quoted_strings(promtool, tmp_path):  # noqa: F811
    spec = {
        "source": "promql",
        "query": f"rate({TEMPLATE}[$window])",
        "rejectedQuery": f'rate({TEMPLATE[:-1]},code="503"}}[$window])',
    }
    service = isvc({"autoscaling": {"demand": spec}})
    service = service.model_copy(
        update={"metadata": service.metadata.model_copy(update={"namespace": HOSTILE_NAMESPACE})}
    )
    q = demand(service, "main")
    assert (q.source, q.measurable) == ("promql", True)
    assert HOSTILE_NAMESPACE not in q.requests and series.quote(HOSTILE_NAMESPACE) in q.requests
    assert "[60s]" in q.requests
    ours = {"ns": HOSTILE_NAMESPACE, "isvc": "resnet", "variant": "main", "svc": "resnet-main"}
    given = [
        # two series of ours: the loop reads their sum
        (text("my_requests_total", ours | {"code": "200"}), per_second(6)),
        (text("my_requests_total", ours | {"code": "503"}), per_second(2)),
        (text("my_requests_total", ours | {"ns": "ml", "code": "503"}), per_second(100)),
        (text("my_requests_total", ours | {"ns": "b", "code": "503"}), per_second(100)),
    ]
    evaluate(promtool, tmp_path, given, checks(q, 8, 2))


def test_a_promql_source_without_a_rejected_query_has_none():
    q = demand(isvc({"autoscaling": {"demand": {"source": "promql", "query": "sum(x{svc=$service})"}}}), "main")
    assert q.rejected is None and q.requests == 'sum(sum(x{svc="resnet-main"}))'


def test_rate_window_must_be_positive():
    with pytest.raises(ValueError, match="window_seconds"):
        demand_queries(isvc(NGINX), "main", 1.0, window_seconds=0)


# --- the busy rate: refused in percent of all, over the whole InferenceService --------------


def test_busy_rate_adds_up_the_variants_and_reads_0_without_traffic(promtool, tmp_path):  # noqa: F811
    query = alerts.busy_rate_query(isvc(NGINX | TWO))
    scrape = SCRAPES["without honorLabels"]
    busy = [
        (nginx(scrape, "200", "resnet-stable"), per_second(9)),
        (nginx(scrape, "503", "resnet-stable", canary="ml-resnet-canary-http"), per_second(1)),
    ]
    evaluate(promtool, tmp_path, busy, [(query, [10])])  # 1 of 10 requests a second refused, by the canary
    evaluate(promtool, tmp_path, [(nginx(scrape, "200", "resnet-stable"), f"0x{STEPS}")], [(query, [0])])


def test_busy_rate_needs_an_edge():
    assert alerts.busy_rate_query(isvc()) is None
    assert alerts.busy_rate_query(isvc({"autoscaling": {"demand": {"source": "promql", "query": "x"}}})) is None
    envoy_gateway = isvc({"routing": GATEWAY, "autoscaling": {"demand": {"source": "envoy-gateway"}}})
    assert series.ENVOY_UPSTREAM_RESPONSES in alerts.busy_rate_query(envoy_gateway)
