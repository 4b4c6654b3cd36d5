"""spec.alerts: the Prometheus alert rules, each kind with its own default threshold."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, create_model

from unbusy.api.base import DURATION_PATTERN, ApiModel


class AlertRule(ApiModel):
    enabled: bool = Field(True, description="Render this alert.")
    threshold: float = Field(ge=0, description="Value beyond which the alert fires.")
    for_: str = Field(alias="for", pattern=DURATION_PATTERN, max_length=8, description="How long it must hold.")
    severity: Literal["info", "warning", "critical"] = Field("warning", description="severity label.")


def _alert(name: str, threshold: float, for_: str, severity: str = "warning") -> type[AlertRule]:
    """An AlertRule whose fields default to this alert's own thresholds (the seeds' values)."""
    return create_model(
        name,
        __base__=AlertRule,
        threshold=(float, Field(threshold, ge=0, description="Value beyond which the alert fires.")),
        for_=(
            str,
            Field(for_, alias="for", pattern=DURATION_PATTERN, max_length=8, description="How long it must hold."),
        ),
        severity=(Literal["info", "warning", "critical"], Field(severity, description="severity label.")),
    )


class SloAlert(ApiModel):
    """An alert whose threshold is an SLO of spec.model.llm."""

    enabled: bool = Field(True, description="Render this alert (LLMs only).")
    for_: str = Field(alias="for", pattern=DURATION_PATTERN, max_length=8, description="How long it must hold.")
    severity: Literal["info", "warning", "critical"] = Field(description="severity label.")

    def rule(self, threshold: float) -> AlertRule:
        return AlertRule(enabled=self.enabled, threshold=threshold, for_=self.for_, severity=self.severity)


def _slo_alert(name: str, for_: str, severity: str) -> type[SloAlert]:
    """A SloAlert whose fields default to this alert's own."""
    return create_model(
        name,
        __base__=SloAlert,
        for_=(
            str,
            Field(for_, alias="for", pattern=DURATION_PATTERN, max_length=8, description="How long it must hold."),
        ),
        severity=(Literal["info", "warning", "critical"], Field(severity, description="severity label.")),
    )


TtftAlert = _slo_alert("TtftAlert", "5m", "critical")
TpotAlert = _slo_alert("TpotAlert", "5m", "warning")
KvCacheAlert = _alert("KvCacheAlert", 90, "5m")
TokenCapacityAlert = _alert("TokenCapacityAlert", 90, "10m")
P99LatencyAlert = _alert("P99LatencyAlert", 1.0, "5m", "critical")
GpuMemoryAlert = _alert("GpuMemoryAlert", 90, "3m")
ErrorRateAlert = _alert("ErrorRateAlert", 5, "5m", "critical")
QueueDepthAlert = _alert("QueueDepthAlert", 50, "2m")
GpuUtilizationAlert = _alert("GpuUtilizationAlert", 90, "5m")
BusyRateAlert = _alert("BusyRateAlert", 1, "5m")


class Alerts(ApiModel):
    enabled: bool = Field(True, description="Render a PrometheusRule with the alerts below.")
    p99_latency_seconds: P99LatencyAlert = Field(
        default_factory=P99LatencyAlert, description="P99 request latency above threshold seconds."
    )
    gpu_memory_percent: GpuMemoryAlert = Field(
        default_factory=GpuMemoryAlert, description="GPU framebuffer used above threshold percent."
    )
    error_rate_percent: ErrorRateAlert = Field(
        default_factory=ErrorRateAlert, description="Failed requests above threshold percent."
    )
    queue_depth: QueueDepthAlert = Field(
        default_factory=QueueDepthAlert, description="Pending requests on one replica above threshold."
    )
    gpu_utilization_percent: GpuUtilizationAlert = Field(
        default_factory=GpuUtilizationAlert, description="GPU utilisation above threshold percent."
    )
    busy_rate_percent: BusyRateAlert = Field(
        default_factory=BusyRateAlert,
        description="Requests refused with HTTP 503 at the edge (autoscaling.demand) above threshold percent "
        "of all; not rendered where the edge is not read (source triton).",
    )
    ttft_p99: TtftAlert = Field(
        default_factory=TtftAlert,
        description="LLMs: time to first token, p99 of a variant, above spec.model.llm.slo.ttftP99Ms. "
        "p99LatencySeconds and queueDepth are not rendered for an LLM (a whole generation takes seconds; "
        "its backend queues nothing in Triton).",
    )
    tpot_p99: TpotAlert = Field(
        default_factory=TpotAlert,
        description="LLMs: time per output token, p99 of a variant, above spec.model.llm.slo.tpotP99Ms, where "
        "that is set and the engine reports it (vllm, python).",
    )
    kv_cache_percent: KvCacheAlert = Field(
        default_factory=KvCacheAlert,
        description="LLMs: KV cache of a replica used above threshold percent: new requests wait or are "
        "preempted. Reported by tensorrtllm and python engines, inferred for vllm where llm.kvCacheTokens is set.",
    )
    token_capacity_percent: TokenCapacityAlert = Field(
        default_factory=TokenCapacityAlert,
        description="LLMs: tokens per second a replica serves above threshold percent of its capacity "
        "(prompt/promptTokensPerSecond + output/outputTokensPerSecond of spec.model.llm.capacity).",
    )
    runbook_base_url: str = Field(
        "https://unbusy.dev/runbooks", max_length=512, description="runbook_url is this plus /<AlertName>."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on every alert (e.g. team).")
