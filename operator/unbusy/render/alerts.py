"""A PrometheusRule with the alerts of spec.alerts, about one InferenceService.

The queries are public functions without thresholds: the dashboard plots the very same ones,
so what a panel shows is what an alert fires on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from unbusy import series
from unbusy.api import InferenceService, SpecError
from unbusy.api.alerts import AlertRule
from unbusy.gpu.request import GpuRequest
from unbusy.llm_signals import Grouping, LlmSignals, llm_signals
from unbusy.render import edge, meta, monitors
from unbusy.series import number

# Window of the error-rate and busy-rate alerts: long enough that a handful of failures in a
# quiet minute do not page anyone, short enough that a queue overflowing under load is caught
# within minutes.
ERROR_RATE_WINDOW = "5m"
BUSY_RATE_WINDOW_S = 300
P99 = "0.99"
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def aggregate(op: str, expr: str, by: Sequence[str] = ()) -> str:
    return f"{op} by ({', '.join(by)}) ({expr})" if by else f"{op}({expr})"


# --- queries (shared with the dashboard) --------------------------------------------------


def p99_latency_query(where: series.Scope, by: Sequence[str] = (series.VARIANT,)) -> str:
    """P99 request latency in seconds of the slowest pod, per variant (Triton reports microseconds)."""
    summary = series.REQUEST_SUMMARY_US + where.triton(series.matcher(series.QUANTILE, P99))
    return f"{aggregate('max', summary, by)} / 1e6"


def error_rate_query(where: series.Scope, window: str = ERROR_RATE_WINDOW) -> str:
    """Failed requests in percent of all requests over `window`, per variant: a failing canary
    with a small share of the traffic must not hide behind the healthy variant."""
    by = (series.VARIANT,)
    failed = aggregate("sum", f"rate({series.REQUEST_FAILURE}{where.triton()}[{window}])", by)
    succeeded = aggregate("sum", f"rate({series.REQUEST_SUCCESS}{where.triton()}[{window}])", by)
    # Without traffic the ratio is 0/0; clamp_min keeps the denominator positive so a quiet
    # variant reads 0%, not NaN. `or failed`: failures without any success series still count.
    return f"100 * {failed} / clamp_min(({succeeded} + {failed}) or {failed}, 1e-9)"


def queue_depth_query(where: series.Scope) -> str:
    """Requests pending in Triton, per pod: one overloaded replica is enough to hurt."""
    return aggregate("max", series.PENDING_REQUESTS + where.triton(), (series.VARIANT, series.POD))


def gpu_memory_query(where: series.Scope) -> str:
    """GPU memory used in percent, of the fullest GPU of each pod."""
    return aggregate("max", series.gpu_memory_percent(where.dcgm()), (series.POD,))


def gpu_utilization_query(where: series.Scope, mig: bool) -> str:
    """GPU (or MIG slice) busy percent, of the busiest GPU of each pod."""
    return aggregate("max", series.gpu_utilization_percent(where.dcgm(), mig), (series.POD,))


def busy_rate_query(isvc: InferenceService) -> str | None:
    """Requests refused at the edge (HTTP 503) in percent of all it took, over the whole
    InferenceService: what its users feel. Triton's own failure count misses the requests it
    refuses for a full queue. None where the edge is not read (autoscaling.demand)."""
    variants = isvc.spec.effective_variants()
    demands = [edge.demand_queries(isvc, v.name, v.weight / 100, BUSY_RATE_WINDOW_S) for v in variants]
    if not all(d.measurable and d.rejected for d in demands):
        return None
    # A variant without series yet adds 0; without any traffic clamp_min keeps the ratio 0, not NaN.
    refused = " + ".join(f"({d.rejected} or vector(0))" for d in demands)
    offered = " + ".join(f"({d.requests} or vector(0))" for d in demands)
    return f"100 * ({refused}) / clamp_min({offered}, 1e-9)"


# The LLM signals as the alerts and the dashboard read them: over the window of the error rate,
# the p99s per variant, the per-pod values with their variant.
LLM_GROUPING = Grouping(pods=(series.VARIANT, series.POD), whole=(series.VARIANT,))


def llm_signals_of(isvc: InferenceService) -> LlmSignals | None:
    """The LLM signals of every variant of `isvc`; None for a model that is no LLM."""
    return llm_signals(isvc.spec.model, meta.series_scope(isvc), f"[{ERROR_RATE_WINDOW}]", LLM_GROUPING)


# --- rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    name: str
    rule: AlertRule
    query: str
    summary: str
    description: str


# Go templates Prometheus expands in annotations, per alert instance.
VALUE = "{{ $value | humanize }}"
DURATION = "{{ $value | humanizeDuration }}"
POD = "{{ $labels.pod }}"
VARIANT = "{{ $labels.variant }}"


def alerts(isvc: InferenceService, gpu: GpuRequest) -> list[Alert]:
    """Every alert the spec can ask for, enabled or not, in a fixed order; the busy rate only
    where the edge is read. An LLM's p99 and queue alerts are its own (llm_alerts)."""
    llm = isvc.spec.model.llm is not None
    return [
        alert
        for alert in _triton_alerts(isvc, gpu)
        if not (llm and alert.name in ("TritonP99LatencyHigh", "TritonQueueDepthHigh"))
    ] + llm_alerts(isvc)


def llm_alerts(isvc: InferenceService) -> list[Alert]:
    """An LLM's alerts: TTFT and TPOT p99 over their SLOs, KV cache and token capacity per replica,
    each where the engine reports (or Unbusy infers) what it reads."""
    signals, llm = llm_signals_of(isvc), isvc.spec.model.llm
    if signals is None or llm is None:
        return []
    spec, who = isvc.spec.alerts, f"{isvc.metadata.namespace}/{isvc.metadata.name}"
    ttft_s = llm.slo.ttft_p99_ms / 1000
    found = [
        Alert(
            "LlmTtftP99High",
            spec.ttft_p99.rule(ttft_s),
            signals.ttft_p99_seconds,
            f"Time to first token of {who} is above its SLO ({number(ttft_s)}s p99)",
            f"1% of requests to variant {VARIANT} of {who} wait longer than {DURATION} for their first token "
            f"(spec.model.llm.slo.ttftP99Ms {number(llm.slo.ttft_p99_ms)}): prompts queue for prefill. "
            "Add replicas, or check that llm.capacity matches what a replica serves.",
        )
    ]
    if llm.slo.tpot_p99_ms is not None and signals.tpot_p99_seconds is not None:
        tpot_s = llm.slo.tpot_p99_ms / 1000
        found.append(
            Alert(
                "LlmTpotP99High",
                spec.tpot_p99.rule(tpot_s),
                signals.tpot_p99_seconds,
                f"Time per output token of {who} is above its SLO ({number(tpot_s)}s p99)",
                f"1% of output tokens of variant {VARIANT} of {who} take longer than {DURATION} "
                f"(spec.model.llm.slo.tpotP99Ms {number(llm.slo.tpot_p99_ms)}): the batch is too large for "
                "the GPU. Add replicas or lower the engine's batch limit.",
            )
        )
    if signals.kv_used_per_pod is not None:
        kv = spec.kv_cache_percent
        source = " (inferred from its token rates)" if "kv_used_per_pod" in signals.inferred else ""
        found.append(
            Alert(
                "LlmKvCacheHigh",
                kv,
                f"100 * ({signals.kv_used_per_pod})",
                f"KV cache of a replica of {who} is nearly full",
                f"Pod {POD} (variant {VARIANT}) uses {VALUE}% of its KV cache{source} "
                f"(threshold {number(kv.threshold)}%): new requests wait for prefill or running ones are "
                "preempted, and time to first token grows.",
            )
        )
    busy = spec.token_capacity_percent
    found.append(
        Alert(
            "LlmTokenCapacityHigh",
            busy,
            f"100 * ({signals.work_per_pod})",
            f"A replica of {who} serves nearly its token capacity",
            f"Pod {POD} (variant {VARIANT}) serves {VALUE}% of its capacity in tokens per second "
            f"(prompt/{number(llm.capacity.prompt_tokens_per_second)} + "
            f"output/{number(llm.capacity.output_tokens_per_second)} of spec.model.llm.capacity; threshold "
            f"{number(busy.threshold)}%).",
        )
    )
    return found


def _triton_alerts(isvc: InferenceService, gpu: GpuRequest) -> list[Alert]:
    spec, where = isvc.spec.alerts, meta.series_scope(isvc)
    who = f"{isvc.metadata.namespace}/{isvc.metadata.name}"
    p99, errors, queue = spec.p99_latency_seconds, spec.error_rate_percent, spec.queue_depth
    memory, busy = spec.gpu_memory_percent, spec.gpu_utilization_percent
    engine = f"Graphics engine activity of the MIG slice ({gpu.mig_profile})" if gpu.mig_profile else "GPU utilisation"
    return [
        Alert(
            "TritonP99LatencyHigh",
            p99,
            p99_latency_query(where),
            f"P99 latency of {who} is above {number(p99.threshold)}s",
            f"1% of requests to the slowest replica of variant {VARIANT} of {who} take longer than {DURATION} "
            f"(threshold {number(p99.threshold)}s).",
        ),
        Alert(
            "TritonErrorRateHigh",
            errors,
            error_rate_query(where),
            f"{who} fails more than {number(errors.threshold)}% of requests",
            f"{VALUE}% of requests to variant {VARIANT} of {who} failed over the last {ERROR_RATE_WINDOW} "
            f"(threshold {number(errors.threshold)}%). Failures with reason {series.REJECTED} mean Triton's "
            "queue was full (HTTP 503): add replicas or raise the queue size.",
        ),
        Alert(
            "TritonQueueDepthHigh",
            queue,
            queue_depth_query(where),
            f"Requests queue up on a replica of {who}",
            f"Pod {POD} (variant {VARIANT}) has {VALUE} requests pending in Triton "
            f"(threshold {number(queue.threshold)}); once its queue is full it rejects requests.",
        ),
        Alert(
            "GpuMemoryHigh",
            memory,
            gpu_memory_query(where),
            f"GPU memory of a replica of {who} is nearly full",
            f"GPU memory of pod {POD} is {VALUE}% used "
            f"(threshold {number(memory.threshold)}%); larger batches may fail with out-of-memory.",
        ),
        Alert(
            "GpuUtilizationHigh",
            busy,
            gpu_utilization_query(where, mig=gpu.mig_profile is not None),
            f"GPU of a replica of {who} is saturated",
            f"{engine} of pod {POD} is {VALUE}% "
            f"(threshold {number(busy.threshold)}%): requests will queue up unless replicas are added.",
        ),
        *_busy_rate_alert(isvc, who),
    ]


def _busy_rate_alert(isvc: InferenceService, who: str) -> list[Alert]:
    query = busy_rate_query(isvc)
    if query is None:
        return []
    refused, source = isvc.spec.alerts.busy_rate_percent, isvc.spec.demand_source()
    status = "5xx (Envoy counts code classes)" if source == "envoy-gateway" else series.BUSY_STATUS
    return [
        Alert(
            "ServerBusyRateHigh",
            refused,
            query,
            f"{who} refuses more than {number(refused.threshold)}% of requests (server busy)",
            f"{VALUE}% of requests to {who} were refused with HTTP {status} at the edge ({source}) over the last "
            f"{BUSY_RATE_WINDOW_S // 60}m (threshold {number(refused.threshold)}%): no replica could take them, "
            "Triton's queue was full or none was ready. Add replicas or capacity per replica.",
        )
    ]


def template_literal(value: str) -> str:
    """A label or annotation value that Prometheus shows as written: it expands both as Go templates,
    so a value containing '{{' would be run (or fail) instead; a quoted string is shown as is."""
    return "{{ " + json.dumps(value, ensure_ascii=False) + " }}" if "{{" in value else value


def extra_labels(isvc: InferenceService) -> dict[str, str]:
    """spec.alerts.labels, checked: a bad label name would make Prometheus reject every rule."""
    bad = sorted(k for k in isvc.spec.alerts.labels if not _LABEL_NAME.match(k) or k.startswith("__"))
    if bad:
        names = ", ".join(map(repr, bad))
        raise SpecError(
            [f"spec.alerts.labels: {names}: not Prometheus label names ([a-zA-Z_][a-zA-Z0-9_]*, no __ prefix)"]
        )
    return {key: template_literal(value) for key, value in isvc.spec.alerts.labels.items()}


def rule(isvc: InferenceService, alert: Alert) -> dict[str, Any]:
    # Ours win over spec.alerts.labels: routing by severity and by service must stay truthful.
    ours = {
        "severity": alert.rule.severity,
        series.INFERENCE_SERVICE: isvc.metadata.name,
        series.NAMESPACE: isvc.metadata.namespace,
    }
    return {
        "alert": alert.name,
        "expr": f"{alert.query} > {number(alert.rule.threshold)}",
        "for": alert.rule.for_,
        "labels": dict(sorted((extra_labels(isvc) | ours).items())),
        "annotations": {
            "summary": alert.summary,
            "description": alert.description,
            # The base URL is the user's: Prometheus must show it, not run a '{{' in it as a template.
            "runbook_url": template_literal(f"{isvc.spec.alerts.runbook_base_url.rstrip('/')}/{alert.name}"),
        },
    }


def group_name(isvc: InferenceService) -> str:
    return f"unbusy.{isvc.metadata.namespace}.{isvc.metadata.name}"


def render(isvc: InferenceService, gpu: GpuRequest) -> list[dict[str, Any]]:
    enabled = [alert for alert in alerts(isvc, gpu) if alert.rule.enabled]
    if not isvc.spec.alerts.enabled or not enabled:
        return []
    return [
        {
            "apiVersion": monitors.API_VERSION,
            "kind": "PrometheusRule",
            "metadata": monitors.metadata(isvc, f"{isvc.metadata.name}-alerts"),
            "spec": {"groups": [{"name": group_name(isvc), "rules": [rule(isvc, alert) for alert in enabled]}]},
        }
    ]
