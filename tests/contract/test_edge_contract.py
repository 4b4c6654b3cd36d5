"""Contract with the edges Unbusy reads demand from: the metric and label names in series.py,
and the names render/edge.py selects a variant by, are the ones the projects' own source
uses, at the versions pinned in testbed/versions.env.

- ingress-nginx (k8s.io/ingress-nginx): the request counter, its labels, and how a request is
  labelled: the `ingress` and `service` of the nginx location that took it (the primary
  Ingress's), `canary` the upstream of the canary backend it went to, named upstreamName;
- Envoy Gateway (github.com/envoyproxy/gateway): the Envoy cluster of an HTTPRoute rule, with
  every weighted backend a locality of it, from its translator's own test data; Envoy's cluster
  stats as its Grafana dashboards query them (Envoy itself is C++, not a Go module);
- Istio (istio.io/istio): istio_requests_total and its labels as Istio's telemetry
  integration test queries them, the reporters as its dashboards add them up;
- Traefik (github.com/traefik/traefik/v3, the testbed's proxy): the service request counter,
  its labels and defaults, counted per server of a load-balancer service under its qualified
  name; the names its Kubernetes Gateway provider gives each backendRef of an HTTPRoute rule,
  from its provider's own test fixtures and expected configurations.

The modules are fetched by the testbed's own client (tests/go_modules.py). Where they cannot
be fetched (no Go, no network) the tests skip; with CI=true they fail, as CI runs everything.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from builders import isvc

from go_modules import ModuleSource, ModuleUnavailable, module_source, pinned_versions
from missing import require
from unbusy import series
from unbusy.render import routing
from unbusy.render.edge import demand_queries

pytestmark = pytest.mark.contract

INGRESS_NGINX, ENVOY_GATEWAY, ISTIO = "k8s.io/ingress-nginx", "github.com/envoyproxy/gateway", "istio.io/istio"
TRAEFIK = "github.com/traefik/traefik/v3"
PINS = {
    INGRESS_NGINX: "INGRESS_NGINX_VERSION",
    ENVOY_GATEWAY: "ENVOY_GATEWAY_VERSION",
    ISTIO: "ISTIO_VERSION",
    TRAEFIK: "TRAEFIK_VERSION",
}
GATEWAY = {"host": "resnet.example.com", "provider": "gateway", "gateway": {"name": "edge"}}
SOURCE_SPECS = {
    "nginx": {"routing": {"host": "resnet.example.com"}},
    "envoy-gateway": {"routing": GATEWAY, "autoscaling": {"demand": {"source": "envoy-gateway"}}},
    "istio": {"routing": GATEWAY, "autoscaling": {"demand": {"source": "istio"}}},
    "traefik": {"routing": GATEWAY, "autoscaling": {"demand": {"source": "traefik"}}},
}


def fetch(module: str) -> ModuleSource:
    pins = pinned_versions()
    if PINS[module] not in pins:
        require(f"{PINS[module]} is not pinned in testbed/versions.env")
    version = pins[PINS[module]]
    try:
        return module_source(module, version)
    except ModuleUnavailable as error:
        require(f"cannot fetch {module}@{version}: {error}")


@pytest.fixture(scope="session")
def ingress_nginx() -> ModuleSource:
    return fetch(INGRESS_NGINX)


@pytest.fixture(scope="session")
def envoy_gateway() -> ModuleSource:
    return fetch(ENVOY_GATEWAY)


@pytest.fixture(scope="session")
def istio() -> ModuleSource:
    return fetch(ISTIO)


@pytest.fixture(scope="session")
def traefik() -> ModuleSource:
    return fetch(TRAEFIK)


def found(pattern: str, text: str, what: str) -> re.Match[str]:
    match = re.search(pattern, text, re.DOTALL)
    assert match, f"not found in the source: {what} ({pattern})"
    return match


def go_strings(text: str) -> list[str]:
    return re.findall(r'"([^"]*)"', text)


# --- ingress-nginx -------------------------------------------------------------------------

COLLECTORS = "internal/ingress/metric/collectors"


def nginx_request_labels(source: ModuleSource) -> frozenset[str]:
    """Every label of nginx_ingress_controller_requests with the controller's default flags:
    the request tags, `host` (--metrics-per-host, on by default) and the collector's constant labels."""
    socket = source.read(f"{COLLECTORS}/socket.go")
    tags = go_strings(found(r"var requestTags = \[\]string\{(.*?)\}", socket, "requestTags").group(1))
    found(r'if metricsPerHost \{\s*requestTags = append\(requestTags, "host"\)', socket, "the host label")
    const = found(r"constLabels := prometheus\.Labels\{(.*?)\}", socket, "the constant labels").group(1)
    flags = source.read("pkg/flags/flags.go")
    found(r'flags\.Bool\("metrics-per-host", true,', flags, "--metrics-per-host defaults to true")
    return frozenset(tags) | {"host"} | frozenset(re.findall(r'"(\w+)":', const))


def test_nginx_request_counter_and_its_labels(ingress_nginx):
    socket = ingress_nginx.read(f"{COLLECTORS}/socket.go")
    namespace = found(r'PrometheusNamespace = "(\w+)"', ingress_nginx.read(f"{COLLECTORS}/main.go"), "namespace")
    counter = found(
        r"requests: counterMetric\(\s*&prometheus\.CounterOpts\{\s*"
        r"Name:\s*\"(\w+)\",.*?Namespace:\s*PrometheusNamespace",
        socket,
        "the requests counter",
    )
    assert f"{namespace.group(1)}_{counter.group(1)}" == series.NGINX_REQUESTS
    ours = {series.NGINX_STATUS, series.NGINX_INGRESS, series.NGINX_SERVICE, series.NGINX_CANARY, series.NAMESPACE}
    assert ours <= nginx_request_labels(ingress_nginx)
    # Counted with these labels, taken from what nginx's Lua monitor sends for each request.
    counted = found(r"collectorLabels := prometheus\.Labels\{(.*?)\}", socket, "the counter's labels").group(1)
    assert ours <= set(re.findall(r'"(\w+)":', counted))
    found(r"sc\.requests\.GetMetricWith\(collectorLabels\)", socket, "the counter counts collectorLabels")
    # The status is the code (503), not its class: --report-status-classes is off by default.
    flags = ingress_nginx.read("pkg/flags/flags.go")
    found(r'flags\.Bool\("report-status-classes", false,', flags, "--report-status-classes defaults to false")


def test_nginx_labels_a_request_with_the_location_that_took_it(ingress_nginx):
    monitor = ingress_nginx.read("rootfs/etc/nginx/lua/monitor.lua")
    sent = dict(re.findall(r"(\w+) = ngx\.var\.(\w+)", monitor))
    assert sent[series.NGINX_INGRESS] == "ingress_name"
    assert sent[series.NGINX_SERVICE] == "service_name"
    assert sent[series.NGINX_CANARY] == "proxy_alternative_upstream_name"
    assert sent[series.NGINX_STATUS] == "status"
    assert sent[series.NAMESPACE] == "namespace"
    # Each location sets them from its own Ingress: the primary's, which canary Ingresses merge into.
    template = ingress_nginx.read("rootfs/etc/nginx/template/nginx.tmpl")
    location = found(r"location \{\{ \$path \}\} \{(.*?)proxy_alternative_upstream_name", template, "location").group(1)
    for variable, field in (("namespace", "Namespace"), ("ingress_name", "Rule"), ("service_name", "Service")):
        found(rf"set \${variable}\s+\{{\{{ \$ing\.{field} \| quote ?\}}\}};", location, f"${variable}")
    found(r'set \$proxy_alternative_upstream_name "";', template, "no canary unless the balancer picks one")
    info = ingress_nginx.read("internal/ingress/controller/template/template.go")
    found(r"Namespace:\s+ing\.GetNamespace\(\),\s+Rule:\s+ing\.GetName\(\),", info, "Rule is the Ingress's name")


def test_nginx_canary_label_is_the_upstream_unbusy_names(ingress_nginx):
    balancer = ingress_nginx.read("rootfs/etc/nginx/lua/balancer.lua")
    found(
        r"local alternative_backend_name = balancer\.alternative_backends\[1\]\s+"
        r"ngx\.var\.proxy_alternative_upstream_name = alternative_backend_name",
        balancer,
        "the canary label is the alternative backend's name",
    )
    controller = ingress_nginx.read("internal/ingress/controller/controller.go")
    merge = found(r"func mergeAlternativeBackends\((.*?)\n}\n", controller, "mergeAlternativeBackends").group(1)
    found(r"upsName := upstreamName\(ing\.Namespace, path\.Backend\.Service\)", merge, "the canary's upstream name")
    util = ingress_nginx.read("internal/ingress/controller/util.go")
    by_port_name = found(
        r'if service\.Port\.Name != "" \{\s*'
        r'return fmt\.Sprintf\("([^"]+)", namespace, service\.Name, service\.Port\.Name\)',
        util,
        "upstreamName for a named port",
    ).group(1)
    service = isvc(
        SOURCE_SPECS["nginx"] | {"variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]}
    )
    (canary_ingress,) = (
        i for i in routing.nginx_ingresses(service, routing.RenderContext()) if "canary" in i["metadata"]["name"]
    )
    backend = canary_ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    # Go's %s, applied to what Unbusy renders, is the name the queries select on.
    go_named = by_port_name.replace("%s", "{}").format("ml", backend["name"], backend["port"]["name"])
    assert go_named == routing.nginx_upstream(service, "canary")


# --- Envoy Gateway -------------------------------------------------------------------------

TRANSLATOR = "internal/xds/translator/testdata"


def destinations(node: object) -> list[dict]:
    """Every route destination in an Envoy Gateway IR document."""
    if isinstance(node, dict):
        own = [node["destination"]] if isinstance(node.get("destination"), dict) else []
        return own + [d for value in node.values() for d in destinations(value)]
    if isinstance(node, list):
        return [d for item in node for d in destinations(item)]
    return []


def test_envoy_gateway_makes_one_cluster_of_a_weighted_route_rule(envoy_gateway):
    case = "internal/gatewayapi/testdata/httproute-rule-with-multiple-backends-and-weights"
    given = yaml.safe_load(envoy_gateway.read(f"{case}.in.yaml"))
    (route,) = given["httpRoutes"]
    (rule,) = route["spec"]["rules"]
    (destination,) = destinations(yaml.safe_load(envoy_gateway.read(f"{case}.out.yaml"))["xdsIR"])
    name = routing.envoy_gateway_cluster(route["metadata"]["namespace"], route["metadata"]["name"])
    assert destination["name"] == name
    weighted = {ref["name"] for ref in rule["backendRefs"] if ref.get("weight", 1) > 0}
    assert weighted <= {setting["metadata"]["name"] for setting in destination["settings"]}
    # The translator makes the destination one Envoy cluster, each backend a weighted locality.
    ir = yaml.safe_load(envoy_gateway.read(f"{TRANSLATOR}/in/xds-ir/http-route-weighted-backend.yaml"))
    (weighted_destination,) = destinations(ir)
    clusters = yaml.safe_load(envoy_gateway.read(f"{TRANSLATOR}/out/xds-ir/http-route-weighted-backend.clusters.yaml"))
    assert [c["name"] for c in clusters] == [weighted_destination["name"]]
    (assignment,) = yaml.safe_load(
        envoy_gateway.read(f"{TRANSLATOR}/out/xds-ir/http-route-weighted-backend.endpoints.yaml")
    )
    weights = sorted(locality["loadBalancingWeight"] for locality in assignment["endpoints"])
    assert weights == sorted(setting["weight"] for setting in weighted_destination["settings"])


# One label matcher of a selector: name, operator, and a double-quoted value with its escapes.
MATCHER = re.compile(r'\s*(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')


def selected_labels(expr: str, metric: str) -> dict[str, set[str]]:
    """Label name -> values (as written) of every selector of `metric` in a PromQL text. Values
    may hold braces (Grafana's ${variable}), so matchers are read one by one up to the closing brace."""
    labels: dict[str, set[str]] = {}
    for start in re.finditer(rf"\b{metric}\{{", expr):
        at = start.end()
        while (matcher := MATCHER.match(expr, at)) is not None:
            labels.setdefault(matcher.group(1), set()).add(matcher.group(3))
            at = matcher.end()
        assert expr[at] == "}", f"unreadable selector of {metric}: {expr[start.start() :]}"
    return labels


def test_envoy_cluster_stats_as_envoy_gateway_queries_them(envoy_gateway):
    board = json.loads(envoy_gateway.read("charts/gateway-addons-helm/dashboards/envoy-clusters.json"))
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", []) if "expr" in t]
    labels: dict[str, set[str]] = {}
    for expr in exprs:
        for name, values in selected_labels(expr, series.ENVOY_UPSTREAM_RESPONSES).items():
            labels.setdefault(name, set()).update(values)
    assert series.ENVOY_CLUSTER in labels and series.ENVOY_CODE_CLASS in labels
    assert series.ENVOY_SERVER_ERRORS in labels[series.ENVOY_CODE_CLASS]
    # Its clusters selected by route as Unbusy names them: <kind>route/<namespace>/<name>/rule/<index>.
    assert any(value.endswith("route/${namespace}/${resource}/rule/${rule}") for value in labels[series.ENVOY_CLUSTER])


# --- Istio ---------------------------------------------------------------------------------


def test_istio_requests_and_labels_as_its_telemetry_test_reads_them(istio):
    stats = istio.read("tests/integration/telemetry/api/stats_test.go")
    common = found(r"func BuildQueryCommon\((.*?)\n}\n", stats, "BuildQueryCommon").group(1)
    found(rf'sourceQuery\.Metric = "{series.ISTIO_REQUESTS}"', common, "the requests metric")
    found(rf'sourceQuery\.Labels\["{series.ISTIO_REPORTER}"\] = "source"', common, "the source reporter")
    labels = found(r"func buildQuery\((.*?)\n}\n", stats, "buildQuery").group(1)
    keys = set(re.findall(r'"(\w+)":', labels))
    assert {series.ISTIO_SERVICE, series.ISTIO_SERVICE_NAMESPACE, series.ISTIO_RESPONSE_CODE} <= keys
    # Istio's dashboards add up the reporters that see a request before the server does.
    queries = istio.read("manifests/addons/dashboards/lib/queries.libsonnet")
    reporters = found(rf"labels\('{series.ISTIO_REQUESTS}', \{{ reporter: '~([\w|]+)'", queries, "reporters")
    assert set(reporters.group(1).split("|")) == set(series.ISTIO_CLIENT_REPORTERS)


# --- Traefik -------------------------------------------------------------------------------

TRAEFIK_GATEWAY = "pkg/provider/kubernetes/gateway"


def traefik_service_labels(source: ModuleSource) -> frozenset[str]:
    """The labels of traefik_service_requests_total (without headerLabels, which a user adds)."""
    prometheus = source.read("pkg/observability/metrics/prometheus.go")
    opts = found(
        r"serviceReqs := newCounterWithHeadersFrom\(stdprometheus\.CounterOpts\{\s*Name:\s*serviceReqsTotalName,"
        r".*?\}, config\.HeaderLabels, \[\]string\{([^}]*)\}\)",
        prometheus,
        "the service requests counter",
    )
    return frozenset(go_strings(opts.group(1)))


def test_traefik_service_request_counter_and_its_labels(traefik):
    prometheus = traefik.read("pkg/observability/metrics/prometheus.go")
    prefix = found(r'MetricNamePrefix = "(\w+)"', prometheus, "the metric prefix").group(1)
    service = found(r'metricServicePrefix\s+= MetricNamePrefix \+ "(\w+)"', prometheus, "the service prefix").group(1)
    total = found(r'serviceReqsTotalName\s+= metricServicePrefix \+ "(\w+)"', prometheus, "the counter's name").group(1)
    assert prefix + service + total == series.TRAEFIK_SERVICE_REQUESTS
    assert {series.TRAEFIK_SERVICE, series.TRAEFIK_CODE} <= traefik_service_labels(traefik)
    # Service metrics are on by default (addServicesLabels).
    defaults = traefik.read("pkg/observability/types/metrics.go")
    set_defaults = found(r"func \(p \*Prometheus\) SetDefaults\(\) \{(.*?)\n}", defaults, "SetDefaults").group(1)
    found(r"p\.AddServicesLabels = true", set_defaults, "addServicesLabels defaults to true")
    # The code is the response's status (503), not its class.
    middleware = traefik.read("pkg/middlewares/metrics/metrics.go")
    found(r'labels = append\(labels, "code", strconv\.Itoa\(code\)\)', middleware, "code is the status")
    found(r'baseLabels:\s+\[\]string\{"service", serviceName\}', middleware, "the service label")


def test_traefik_counts_each_server_of_a_load_balancer_under_its_qualified_name(traefik):
    services = traefik.read("pkg/server/service/service.go")
    balancer = found(
        r"func \(m \*Manager\) getLoadBalancerServiceHandler\((.*?)\n}\n", services, "the load-balancer handler"
    ).group(1)
    found(r"for i, server := range shuffle\(service\.Servers, m\.rand\) \{", balancer, "one proxy per server")
    found(r"qualifiedSvcName := provider\.GetQualifiedName\(ctx, serviceName\)", balancer, "the qualified name")
    found(
        r"metricsMiddle\.ServiceMetricsHandler\(ctx, m\.observabilityMgr\.MetricsRegistry\(\), qualifiedSvcName\)",
        balancer,
        "the server's requests counted under it",
    )
    qualified = traefik.read("pkg/server/provider/provider.go")
    found(
        r"func MakeQualifiedName\(providerName, elementName string\) string \{\s*"
        r'return elementName \+ "@" \+ providerName',
        qualified,
        "<name>@<provider>",
    )
    gateway = traefik.read(f"{TRAEFIK_GATEWAY}/kubernetes.go")
    name = found(r'ProviderName = "(\w+)"', gateway, "the Gateway provider's name").group(1)
    assert name == routing.TRAEFIK_GATEWAY_PROVIDER


def test_traefik_names_backend_services_as_unbusy_selects_them(traefik):
    httproute = traefik.read(f"{TRAEFIK_GATEWAY}/httproute.go")
    found(
        r'serviceName := fmt\.Sprintf\("%s-svc-%s-%s-%d", routerName, namespace, backendRef\.Name, backendIndex\)',
        httproute,
        "a backendRef's service name",
    )
    kubernetes = traefik.read(f"{TRAEFIK_GATEWAY}/kubernetes.go")
    found(
        r'label := provider\.Normalize\(fmt\.Sprintf\("%s-%s-%s-gw-%s-%s-ep-%s-%d", kind, namespace, name, '
        r"gatewayNamespace, gatewayName, epName, ruleIndex\)\).*?"
        r'return fmt\.Sprintf\("%s-%\.10x", label, h\.Sum\(nil\)\)',
        kubernetes,
        "the router's name: a normalised label and 10 bytes of a hash in hex",
    )


def expected_load_balancers(source: ModuleSource, desc: str) -> list[str]:
    """The load-balancer services TestLoadHTTPRoutes expects for one of its cases."""
    tests = source.read(f"{TRAEFIK_GATEWAY}/kubernetes_test.go")
    case = found(rf'desc:\s+"{re.escape(desc)}",(.*?)\n\t\t\{{\n\t\t\tdesc:', tests, desc).group(1)
    return re.findall(r'"([^"]+)": \{\s*LoadBalancer: &dynamic\.ServersLoadBalancer\{', case)


@pytest.mark.parametrize(
    ("desc", "fixture"),
    [
        ("One HTTPRoute with one rule two targets", "one_rule_two_targets.yml"),
        ("Gateway with two listeners and one HTTPRoute", "with_two_listeners_one_httproute.yml"),
    ],
)
def test_traefik_backend_services_of_its_own_tests_match_each_backends_regex(traefik, desc, fixture):
    objects = list(yaml.safe_load_all(traefik.read(f"{TRAEFIK_GATEWAY}/fixtures/httproute/{fixture}")))
    (route,) = (o for o in objects if o and o["kind"] == "HTTPRoute")
    (gateway,) = (o for o in objects if o and o["kind"] == "Gateway")
    (rule,) = route["spec"]["rules"]
    namespace = route["metadata"]["namespace"]
    regexes = {
        ref["name"]: re.compile(
            routing.traefik_service_regex(
                namespace,
                route["metadata"]["name"],
                gateway["metadata"]["namespace"],
                gateway["metadata"]["name"],
                ref["name"],
            )
        )
        for ref in rule["backendRefs"]
    }
    services = [f"{name}@{routing.TRAEFIK_GATEWAY_PROVIDER}" for name in expected_load_balancers(traefik, desc)]
    assert services
    routers = len(services) // len(regexes)  # one per listener the route attaches to
    for backend, regex in regexes.items():
        ours = [s for s in services if regex.fullmatch(s)]
        assert len(ours) == routers, (backend, services)
        assert all(f"-svc-{namespace}-{backend}-" in s for s in ours)


# --- the queries use only what the contracts above check ------------------------------------


def test_demand_queries_select_only_the_checked_labels(ingress_nginx, traefik):
    checked = {
        "nginx": (series.NGINX_REQUESTS, nginx_request_labels(ingress_nginx) | {series.EXPORTED_NAMESPACE}),
        "envoy-gateway": (series.ENVOY_UPSTREAM_RESPONSES, {series.ENVOY_CLUSTER, series.ENVOY_CODE_CLASS}),
        "istio": (
            series.ISTIO_REQUESTS,
            {series.ISTIO_REPORTER, series.ISTIO_SERVICE, series.ISTIO_SERVICE_NAMESPACE, series.ISTIO_RESPONSE_CODE},
        ),
        "traefik": (series.TRAEFIK_SERVICE_REQUESTS, traefik_service_labels(traefik)),
    }
    for source, spec in SOURCE_SPECS.items():
        metric, allowed = checked[source]
        q = demand_queries(isvc(spec), "main", 1.0, 60)
        assert q.source == source
        for expr in (q.requests, q.rejected):
            used = selected_labels(expr, metric)
            assert used and set(used) <= allowed, (source, set(used) - allowed)
