"""Read the policy's inputs from Prometheus (prometheus-api-client), one variant at a time."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_api_client import PrometheusConnect

from unbusy import series
from unbusy.scaling.policy import ReplicaSample
from unbusy.scaling.promql import Queries


class SourceError(Exception):
    """Prometheus could not be read; the policy holds and says why."""


class PrometheusSource:
    def __init__(self, url: str, timeout_seconds: int = 5):
        self.url = url
        self.client = PrometheusConnect(url=url, disable_ssl=True, timeout=timeout_seconds)

    def _per_pod(self, query: str) -> dict[str, float]:
        try:
            result = self.client.custom_query(query)
        except Exception as error:  # the client raises requests' and its own errors alike
            raise SourceError(f"Prometheus at {self.url} unreachable: {error}") from None
        return {r["metric"].get(series.POD, ""): float(r["value"][1]) for r in result}

    def samples(self, queries: Queries, pods: Mapping[str, bool]) -> tuple[ReplicaSample, ...]:
        """One sample per live pod (pod name -> ready), joined by the `pod` label."""
        pending = self._per_pod(queries.pending_per_pod)
        gpu = self._per_pod(queries.gpu_utilization_per_pod)
        rate = self._per_pod(queries.request_rate_per_pod)
        waited = self._per_pod(queries.queue_time_ms_per_pod)
        return tuple(
            ReplicaSample(
                ready=ready,
                queue_depth=pending.get(pod),
                gpu_utilization=gpu.get(pod),
                request_rate=rate.get(pod),
                queue_time_ms=waited.get(pod),
            )
            for pod, ready in sorted(pods.items())
        )
