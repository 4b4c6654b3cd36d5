"""Read the policy's inputs from Prometheus (prometheus-api-client), one variant at a time."""

from __future__ import annotations

import math
from collections.abc import Mapping

from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException

from unbusy import series
from unbusy.render.edge import DemandQueries
from unbusy.scaling.demand import Demand
from unbusy.scaling.policy import ReplicaSample
from unbusy.scaling.promql import Queries


class SourceError(Exception):
    """Prometheus could not be read; the policy holds and says why."""


class PrometheusSource:
    def __init__(self, url: str, timeout_seconds: int = 5):
        self.url = url
        self.client = PrometheusConnect(url=url, disable_ssl=True, timeout=timeout_seconds)

    def _query(self, query: str) -> list[dict]:
        try:
            return self.client.custom_query(query)
        except PrometheusApiClientException as error:  # it answered, with an error (a bad query: 400)
            raise SourceError(f"Prometheus at {self.url} refused a query: {error}") from None
        except Exception as error:  # requests' errors: no answer at all
            raise SourceError(f"Prometheus at {self.url} unreachable: {error}") from None

    def _per_pod(self, query: str) -> dict[str, float]:
        return {r["metric"].get(series.POD, ""): float(r["value"][1]) for r in self._query(query)}

    def value(self, query: str) -> float | None:
        """The query's one value (its series summed); None where it has no series or no number (NaN)."""
        values = [float(r["value"][1]) for r in self._query(query)]
        total = sum(values)
        return None if not values or math.isnan(total) else total

    def demand(self, queries: DemandQueries) -> Demand | None:
        """The variant's offered load; None while the source has no series of it (not 0: a proxy
        exports a request counter only from its first request, and an unread edge is no idle one)."""
        rps = self._demand_total(queries, queries.requests, "query")
        if rps is None:
            return None
        # Refused requests get a series of their own at the first refusal: until then there were none.
        rejected = self._demand_total(queries, queries.rejected, "rejectedQuery") if queries.rejected else None
        return Demand(rps=rps, rejected_rps=rejected or 0.0, source=queries.source, measurable=queries.measurable)

    def _demand_total(self, queries: DemandQueries, query: str, field: str) -> float | None:
        try:
            return self.value(query)
        except SourceError as error:
            if queries.source != "promql":
                raise
            # The user's template: the error is theirs to fix, so it names the field.
            raise SourceError(f"spec.autoscaling.demand.{field}: {error}") from None

    def samples(self, queries: Queries, pods: Mapping[str, bool]) -> tuple[ReplicaSample, ...]:
        """One sample per live pod (pod name -> ready), joined by the `pod` label."""
        pending = self._per_pod(queries.pending_per_pod)
        gpu = self._per_pod(queries.gpu_utilization_per_pod)
        rate = self._per_pod(queries.request_rate_per_pod)
        waited = self._per_pod(queries.queue_time_ms_per_pod)
        served = self._per_pod(queries.served_rate_per_pod)
        least = self._per_pod(queries.least_pending_per_pod)
        return tuple(
            ReplicaSample(
                ready=ready,
                queue_depth=pending.get(pod),
                gpu_utilization=gpu.get(pod),
                request_rate=rate.get(pod),
                queue_time_ms=waited.get(pod),
                served_rate=served.get(pod),
                queue_depth_min=least.get(pod),
            )
            for pod, ready in sorted(pods.items())
        )
