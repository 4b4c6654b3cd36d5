"""spec.monitoring: how Prometheus discovers Triton's metrics, and the Grafana dashboard."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from unbusy.api.base import DURATION_PATTERN, ApiModel


class Monitoring(ApiModel):
    kind: Literal["ServiceMonitor", "PodMonitor", "none"] = Field(
        "ServiceMonitor", description="How Prometheus Operator discovers Triton's metrics port."
    )
    interval: str = Field("15s", pattern=DURATION_PATTERN, max_length=8, description="Scrape interval.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels on monitors and rules, for Prometheus' selectors (e.g. release)."
    )
    grafana_dashboard: bool = Field(False, description="Render a Grafana dashboard ConfigMap (sidecar label).")
