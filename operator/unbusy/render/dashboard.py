"""A Grafana dashboard of one InferenceService, as a ConfigMap for Grafana's dashboard sidecar.

Panels that an alert watches plot the alert's own query (render/alerts.py) with its threshold
drawn as a line, so the graph and the page agree.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from unbusy import series
from unbusy.api import InferenceService
from unbusy.api.alerts import AlertRule
from unbusy.render import alerts, meta, monitors

# The label Grafana's sidecar (kube-prometheus-stack, grafana chart) watches for by default.
SIDECAR_LABEL = "grafana_dashboard"
# Grafana picks a rate window that suits the zoom level and scrape interval.
RATE_WINDOW = "$__rate_interval"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
WIDTH, HEIGHT = 12, 8


def _target(ref: str, expr: str, legend: str) -> dict[str, Any]:
    return {"refId": ref, "expr": expr, "legendFormat": legend, "datasource": DATASOURCE}


def _panel(title: str, unit: str, targets: list[tuple[str, str]], rule: AlertRule | None = None) -> dict[str, Any]:
    """A time-series panel; `rule`, when enabled, draws its threshold as a red line."""
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if rule is not None and rule.enabled:
        steps.append({"color": "red", "value": rule.threshold})
    return {
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "thresholds": {"mode": "absolute", "steps": steps},
                "custom": {"thresholdsStyle": {"mode": "line" if len(steps) > 1 else "off"}},
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [_target(chr(ord("A") + i), expr, legend) for i, (expr, legend) in enumerate(targets)],
    }


def _rate_by_variant(metric: str, where: series.Scope, *extra: str) -> str:
    return alerts.aggregate("sum", f"rate({metric}{where.triton(*extra)}[{RATE_WINDOW}])", (series.VARIANT,))


def llm_panels(isvc: InferenceService) -> list[dict[str, Any]]:
    """An LLM's panels: tokens, TTFT and TPOT against their SLOs, batch and KV cache, token capacity;
    each the query its alert reads (render/alerts.py), where the engine reports or Unbusy infers it."""
    signals, llm, spec = alerts.llm_signals_of(isvc), isvc.spec.model.llm, isvc.spec.alerts
    if signals is None or llm is None:
        return []
    inferred = " (inferred)"
    found = [
        _panel(
            "Tokens per second per pod",
            "short",
            [(signals.prompt_tokens_per_pod, "{{pod}} prompt"), (signals.output_tokens_per_pod, "{{pod}} output")],
        ),
        _panel(
            "Time to first token p99",
            "s",
            [(signals.ttft_p99_seconds, "{{variant}}")],
            spec.ttft_p99.rule(llm.slo.ttft_p99_ms / 1000),
        ),
    ]
    if signals.tpot_p99_seconds is not None:
        slo = None if llm.slo.tpot_p99_ms is None else spec.tpot_p99.rule(llm.slo.tpot_p99_ms / 1000)
        found.append(_panel("Time per output token p99", "s", [(signals.tpot_p99_seconds, "{{variant}}")], slo))
    batch = [
        (query, f"{{{{pod}}}} {what}" + (inferred if field in signals.inferred else ""))
        for field, query, what in (
            ("running_per_pod", signals.running_per_pod, "running"),
            ("waiting_per_pod", signals.waiting_per_pod, "waiting"),
        )
        if query is not None
    ]
    found.append(_panel("Requests running and waiting per pod", "short", batch))
    if signals.kv_used_per_pod is not None:
        legend = "{{pod}}" + (inferred if "kv_used_per_pod" in signals.inferred else "")
        found.append(
            _panel(
                "KV cache used per pod",
                "percent",
                [(f"100 * ({signals.kv_used_per_pod})", legend)],
                spec.kv_cache_percent,
            )
        )
    found.append(
        _panel(
            "Token capacity used per pod",
            "percent",
            [(f"100 * ({signals.work_per_pod})", "{{pod}}")],
            spec.token_capacity_percent,
        )
    )
    return found


def panels(isvc: InferenceService) -> list[dict[str, Any]]:
    where, spec = meta.series_scope(isvc), isvc.spec.alerts
    llm = isvc.spec.model.llm is not None
    # A MIG slice has no DCGM_FI_DEV_GPU_UTIL; spec.gpu.migProfile set is exactly the MIG case.
    mig = isvc.spec.gpu.mig_profile is not None
    by_deployment = (series.DEPLOYMENT,)
    rejected = series.matcher(series.REASON, series.REJECTED)
    busy = alerts.busy_rate_query(isvc)
    return [
        _panel(
            "Request rate",
            "reqps",
            [
                (_rate_by_variant(series.REQUEST_SUCCESS, where), "{{variant}} succeeded"),
                (_rate_by_variant(series.REQUEST_FAILURE, where), "{{variant}} failed"),
            ],
        ),
        # An LLM's request p99 is a whole generation, and its backend queues nothing in Triton:
        # its own panels (llm_panels) take their place.
        *(
            []
            if llm
            else [
                _panel(
                    "P99 latency",
                    "s",
                    [(alerts.p99_latency_query(where), "{{variant}}")],
                    spec.p99_latency_seconds,
                ),
                _panel(
                    "Queue depth per pod", "short", [(alerts.queue_depth_query(where), "{{pod}}")], spec.queue_depth
                ),
            ]
        ),
        *llm_panels(isvc),
        _panel(
            "GPU utilisation per pod",
            "percent",
            [(alerts.gpu_utilization_query(where, mig), "{{pod}}")],
            spec.gpu_utilization_percent,
        ),
        _panel(
            "Replicas",
            "short",
            [
                (
                    alerts.aggregate("sum", series.DEPLOYMENT_REPLICAS_AVAILABLE + where.deployment(), by_deployment),
                    "{{deployment}} available",
                ),
                (
                    alerts.aggregate("sum", series.DEPLOYMENT_REPLICAS_SPEC + where.deployment(), by_deployment),
                    "{{deployment}} desired",
                ),
            ],
        ),
        _panel(
            "Rejected requests (queue full, HTTP 503)",
            "reqps",
            [(_rate_by_variant(series.REQUEST_FAILURE, where, rejected), "{{variant}}")],
        ),
        _panel(
            "GPU memory used per pod",
            "percent",
            [(alerts.gpu_memory_query(where), "{{pod}}")],
            spec.gpu_memory_percent,
        ),
        *(
            [_panel("Busy rate at the edge (HTTP 503)", "percent", [(busy, "refused")], spec.busy_rate_percent)]
            if busy
            else []
        ),
    ]


def laid_out(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two panels a row, ids in order."""
    return [
        {"id": i + 1, "gridPos": {"h": HEIGHT, "w": WIDTH, "x": (i % 2) * WIDTH, "y": (i // 2) * HEIGHT}} | panel
        for i, panel in enumerate(panels)
    ]


def uid(isvc: InferenceService) -> str:
    """Stable across re-renders (Grafana keeps one dashboard per uid) and within its 40 characters."""
    digest = hashlib.sha256(f"{isvc.metadata.namespace}/{isvc.metadata.name}".encode()).hexdigest()
    return f"unbusy-{digest[:24]}"


DATASOURCE_VARIABLE = {
    "name": "datasource",
    "label": "Data source",
    "type": "datasource",
    "query": "prometheus",
    "current": {},
    "hide": 0,
    "options": [],
    "refresh": 1,
    "regex": "",
}


def frame(uid: str, title: str, panels: list[dict[str, Any]], variables: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """A Grafana dashboard around `panels`, picking its Prometheus data source (and `variables`)."""
    return {
        "uid": uid,
        "title": title,
        "tags": ["unbusy", "triton"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "templating": {"list": [DATASOURCE_VARIABLE, *variables]},
        "panels": laid_out(panels),
    }


def dashboard(isvc: InferenceService) -> dict[str, Any]:
    return frame(uid(isvc), f"Unbusy / {isvc.metadata.namespace} / {isvc.metadata.name}", panels(isvc))


def file_name(isvc: InferenceService) -> str:
    # The sidecar writes every dashboard into one folder by key: the namespace keeps two
    # InferenceServices of the same name in different namespaces from overwriting each other.
    return f"unbusy-{isvc.metadata.namespace}-{isvc.metadata.name}.json"


def render(isvc: InferenceService) -> list[dict[str, Any]]:
    if not isvc.spec.monitoring.grafana_dashboard:
        return []
    metadata = monitors.metadata(isvc, f"{isvc.metadata.name}-dashboard")
    # Default value of the sidecar label; monitoring.labels may set another the sidecar expects.
    metadata["labels"] = {SIDECAR_LABEL: "1"} | metadata["labels"]
    document = json.dumps(dashboard(isvc), sort_keys=True, indent=2)
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {file_name(isvc): document}}]
