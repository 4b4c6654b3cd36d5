"""Write the chart's Grafana dashboard: the operator and every Triton fleet it runs.

    .venv/bin/python charts/dashboard.py        # writes charts/unbusy/dashboards/unbusy-fleet.json

The per-InferenceService dashboard (operator/unbusy/render/dashboard.py) is bound to one
InferenceService; this one covers all of them, picked with Grafana variables. Its queries are
the same functions the alerts and that dashboard use (render/alerts.py, series.py), over a
scope whose matchers are the variables, so a metric rename is still one edit.
tests/unit/test_chart_files.py fails when the committed file differs from what this writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from unbusy import series
from unbusy.render import alerts, routing
from unbusy.render.dashboard import DATASOURCE, RATE_WINDOW, _panel, frame

OUT = Path(__file__).resolve().parent / "unbusy" / "dashboards" / "unbusy-fleet.json"
UID = "unbusy-fleet"
# The chart's ServiceMonitor takes the job label from the metrics Service's app.kubernetes.io/name.
OPERATOR_JOB = series.selector(series.matcher("job", "unbusy"))
# The operator's own metrics (operator/unbusy/controller/metrics.py, kube/client.py).
RECONCILE_SECONDS = "unbusy_reconcile_duration_seconds"
CHILDREN_APPLIED = "unbusy_children_applied"
API_WRITES = "unbusy_api_writes"
SCALING_DECISIONS = "unbusy_scaling_decisions"
METRIC_READ_FAILURES = "unbusy_metric_read_failures"
OPERATOR_METRICS = (RECONCILE_SECONDS, CHILDREN_APPLIED, API_WRITES, SCALING_DECISIONS, METRIC_READ_FAILURES)
# A Deployment is <inferenceservice>-<variant>; its pods add -<hash>-<suffix>.
DEPLOYMENTS = "(?:$inferenceservice)-.+"


class FleetScope(series.Scope):
    """The series of every InferenceService the variables pick (regex matchers: multi-value, All)."""

    def _where(self) -> list[str]:
        return [series.matcher(series.NAMESPACE, "$namespace", "=~")]

    def triton(self, *extra: str) -> str:
        return series.selector(
            *self._where(), series.matcher(series.INFERENCE_SERVICE, "$inferenceservice", "=~"), *extra
        )

    def dcgm(self, *extra: str) -> str:
        return series.selector(*self._where(), series.matcher(series.POD, DEPLOYMENTS, "=~"), *extra)

    def deployment(self, *extra: str) -> str:
        return series.selector(*self._where(), series.matcher(series.DEPLOYMENT, DEPLOYMENTS, "=~"), *extra)


FLEET = FleetScope(namespace="$namespace", inference_service="$inferenceservice", deployments=())
BY_VARIANT = (series.NAMESPACE, series.INFERENCE_SERVICE, series.VARIANT)
BY_DEPLOYMENT = (series.NAMESPACE, series.DEPLOYMENT)
VARIANT_LEGEND = "{{namespace}}/{{inferenceservice}} {{variant}}"
DEPLOYMENT_LEGEND = "{{namespace}}/{{deployment}}"


def _operator_rate(metric: str, by: str) -> str:
    return alerts.aggregate("sum", f"rate({metric}{OPERATOR_JOB}[{RATE_WINDOW}])", (by,))


def _rate(metric: str, *extra: str) -> str:
    return alerts.aggregate("sum", f"rate({metric}{FLEET.triton(*extra)}[{RATE_WINDOW}])", BY_VARIANT)


def _busy_percent(metric: str, selectors: list[str], refused: str, by: tuple[str, ...]) -> str:
    """Refused requests in percent of all, of the series the selectors pick (disjoint: `or` is their union)."""

    def rate(*extra: str) -> str:
        return " or ".join(f"rate({metric}{series.selector(*s, *extra)}[{RATE_WINDOW}])" for s in selectors)

    return (
        f"100 * {alerts.aggregate('sum', rate(refused), by)} / clamp_min({alerts.aggregate('sum', rate(), by)}, 1e-9)"
    )


def edge_busy_rates() -> list[tuple[str, str]]:
    """Each edge's busy rate for the InferenceServices picked, as render/edge.py reads them: the
    primary Ingresses of ingress-nginx (the Ingress's namespace is exported_namespace without
    honorLabels), Envoy Gateway's cluster of each HTTPRoute rule, Istio's Services of the variants."""
    namespace, names = "$namespace", "$inferenceservice"
    ingress = series.matcher(series.NGINX_INGRESS, names, "=~")
    nginx = [
        (series.matcher(series.EXPORTED_NAMESPACE, namespace, "=~"), ingress),
        (series.matcher(series.NAMESPACE, namespace, "=~"), series.matcher(series.EXPORTED_NAMESPACE, ""), ingress),
    ]
    cluster = routing.envoy_gateway_cluster(f"(?:{namespace})", f"(?:{names})")
    envoy = [(series.matcher(series.ENVOY_CLUSTER, cluster, "=~"),)]
    istio = [
        (
            series.matcher(series.ISTIO_REPORTER, series.names_regex(series.ISTIO_CLIENT_REPORTERS), "=~"),
            series.matcher(series.ISTIO_SERVICE_NAMESPACE, namespace, "=~"),
            series.matcher(series.ISTIO_SERVICE, DEPLOYMENTS, "=~"),  # a variant's Service is named as its Deployment
        )
    ]
    busy = series.BUSY_STATUS
    return [
        (
            _busy_percent(
                series.NGINX_REQUESTS, nginx, series.matcher(series.NGINX_STATUS, busy), (series.NGINX_INGRESS,)
            ),
            "{{ingress}} (ingress-nginx)",
        ),
        (
            _busy_percent(
                series.ENVOY_UPSTREAM_RESPONSES,
                envoy,
                series.matcher(series.ENVOY_CODE_CLASS, series.ENVOY_SERVER_ERRORS),
                (series.ENVOY_CLUSTER,),
            ),
            "{{envoy_cluster_name}} (Envoy Gateway, 5xx)",
        ),
        (
            _busy_percent(
                series.ISTIO_REQUESTS,
                istio,
                series.matcher(series.ISTIO_RESPONSE_CODE, busy),
                (series.ISTIO_SERVICE_NAMESPACE, series.ISTIO_SERVICE),
            ),
            "{{destination_service_namespace}}/{{destination_service_name}} (Istio)",
        ),
    ]


def panels() -> list[dict[str, Any]]:
    rejected = series.matcher(series.REASON, series.REJECTED)
    # A MIG slice reports no DCGM_FI_DEV_GPU_UTIL, a whole GPU no per-slice engine activity.
    gpu_util = f"{alerts.gpu_utilization_query(FLEET, False)} or {alerts.gpu_utilization_query(FLEET, True)}"
    replicas = series.DEPLOYMENT_REPLICAS_SPEC + FLEET.deployment()
    return [
        _panel(
            "Request rate",
            "reqps",
            [
                (_rate(series.REQUEST_SUCCESS), f"{VARIANT_LEGEND} ok"),
                (_rate(series.REQUEST_FAILURE), f"{VARIANT_LEGEND} failed"),
            ],
        ),
        _panel("P99 latency", "s", [(alerts.p99_latency_query(FLEET, BY_VARIANT), VARIANT_LEGEND)]),
        _panel("Queue depth per replica", "short", [(alerts.queue_depth_query(FLEET), "{{variant}} {{pod}}")]),
        _panel("GPU utilisation per replica", "percent", [(gpu_util, "{{pod}}")]),
        _panel(
            "Replicas: available vs desired",
            "short",
            [
                (
                    alerts.aggregate("sum", series.DEPLOYMENT_REPLICAS_AVAILABLE + FLEET.deployment(), BY_DEPLOYMENT),
                    f"{DEPLOYMENT_LEGEND} available",
                ),
                (alerts.aggregate("sum", replicas, BY_DEPLOYMENT), f"{DEPLOYMENT_LEGEND} desired"),
            ],
        ),
        _panel(
            "Scaling decisions",
            "short",
            [
                (
                    alerts.aggregate(
                        "sum", f"increase({SCALING_DECISIONS}_total{OPERATOR_JOB}[{RATE_WINDOW}])", ("direction",)
                    ),
                    "operator: {{direction}}",
                ),
                (
                    alerts.aggregate("sum", f"changes({replicas}[{RATE_WINDOW}])", BY_DEPLOYMENT),
                    f"{DEPLOYMENT_LEGEND} desired replicas changed",
                ),
            ],
        ),
        _panel(
            "Rejected requests (queue full, HTTP 503)",
            "reqps",
            [(_rate(series.REQUEST_FAILURE, rejected), VARIANT_LEGEND)],
        ),
        _panel("GPU memory used per replica", "percent", [(alerts.gpu_memory_query(FLEET), "{{pod}}")]),
        _panel("Busy rate at the edge (HTTP 503)", "percent", edge_busy_rates()),
        _panel("Operator replicas up", "short", [(f"sum(up{OPERATOR_JOB})", "up")]),
        _panel(
            "Operator reconciles by result",
            "ops",
            [(_operator_rate(f"{RECONCILE_SECONDS}_count", "result"), "{{result}}")],
        ),
        _panel(
            "Prometheus reads failed (scaling loop)",
            "ops",
            [(f"sum(rate({METRIC_READ_FAILURES}_total{OPERATOR_JOB}[{RATE_WINDOW}]))", "failed reads")],
        ),
        _panel(
            "Operator reconcile duration (p99)",
            "s",
            [(f"histogram_quantile(0.99, {_operator_rate(f'{RECONCILE_SECONDS}_bucket', 'le')})", "p99")],
        ),
        _panel(
            "Operator writes: children applied and API calls",
            "ops",
            [
                (_operator_rate(f"{CHILDREN_APPLIED}_total", "kind"), "applied {{kind}}"),
                (_operator_rate(f"{API_WRITES}_total", "verb"), "API {{verb}}"),
            ],
        ),
    ]


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": name},
        "definition": query,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {},
        "options": [],
        "refresh": 2,
        "sort": 1,
        "hide": 0,
        "regex": "",
    }


def dashboard() -> dict[str, Any]:
    where_namespace = series.selector(series.matcher(series.NAMESPACE, "$namespace", "=~"))
    variables = [
        _variable("namespace", "Namespace", f"label_values({series.REQUEST_SUCCESS}, {series.NAMESPACE})"),
        _variable(
            "inferenceservice",
            "InferenceService",
            f"label_values({series.REQUEST_SUCCESS}{where_namespace}, {series.INFERENCE_SERVICE})",
        ),
    ]
    return frame(UID, "Unbusy / Triton fleet", panels(), variables)


def text() -> str:
    return json.dumps(dashboard(), sort_keys=True, indent=2) + "\n"


def main() -> int:
    OUT.write_text(text())
    print(OUT, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
