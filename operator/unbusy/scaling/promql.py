"""The PromQL the scaling loop runs for one variant, one query per input of the policy.

Every selector comes from series.py, which escapes the values taken from the spec (namespace,
InferenceService and model name), so a spec cannot inject PromQL. Per-pod queries are
grouped `by (pod)` so that the loop can join them with the pods' readiness from the API server
(the policy averages GPU utilisation over ready pods only). The variant's demand, refused
requests included, is read at the edge (render/edge.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from unbusy import series
from unbusy.api import InferenceService
from unbusy.gpu.request import GpuRequest
from unbusy.render import meta
from unbusy.render.edge import DemandQueries, demand_queries


@dataclass(frozen=True)
class Queries:
    pending_total: str  # all requests pending in the variant: the queue-depth metric sums them
    pending_per_pod: str
    gpu_utilization_per_pod: str  # percent
    request_rate_per_pod: str  # requests per second arriving, answered or rejected
    queue_time_ms_per_pod: str  # mean wait in Triton's queue; no sample while a pod has no traffic
    served_rate_per_pod: str  # requests answered per second: a saturated pod's is its capacity
    least_pending_per_pod: str  # the least pending count over the rate window: saturated throughout?
    demand: DemandQueries  # offered load of the variant, refused requests included where the edge is read


def queries(scope: series.Scope, model: str, mig: bool, demand: DemandQueries, window_seconds: int = 60) -> Queries:
    """The queries of one scope (one variant) and model; `window_seconds` is the rate window."""
    if window_seconds < 1:
        raise ValueError(f"window_seconds must be at least 1, not {window_seconds}")
    window = f"[{window_seconds}s]"
    triton = scope.triton(series.matcher(series.MODEL, model))
    requests = scope.triton(
        series.matcher("__name__", series.names_regex([series.REQUEST_SUCCESS, series.REQUEST_FAILURE]), "=~"),
        series.matcher(series.MODEL, model),
    )
    waited = f"sum by ({series.POD}) (rate({series.QUEUE_DURATION_US}{triton}{window}))"
    # `> 0` drops idle pods instead of dividing by zero into NaN.
    answered = f"(sum by ({series.POD}) (rate({series.REQUEST_SUCCESS}{triton}{window})) > 0)"
    return Queries(
        pending_total=f"sum({series.PENDING_REQUESTS}{triton})",
        pending_per_pod=f"sum by ({series.POD}) ({series.PENDING_REQUESTS}{triton})",
        gpu_utilization_per_pod=f"avg by ({series.POD}) ({series.gpu_utilization_percent(scope.dcgm(), mig)})",
        request_rate_per_pod=f"sum by ({series.POD}) (rate({requests}{window}))",
        queue_time_ms_per_pod=f"{waited} / {answered} / 1000",
        served_rate_per_pod=f"sum by ({series.POD}) (rate({series.REQUEST_SUCCESS}{triton}{window}))",
        least_pending_per_pod=f"sum by ({series.POD}) (min_over_time({series.PENDING_REQUESTS}{triton}{window}))",
        demand=demand,
    )


def variant_queries(
    isvc: InferenceService, variant: str, gpu: GpuRequest, share: float, window_seconds: int = 60
) -> Queries:
    """The queries for one variant of an InferenceService; MIG slices read GR engine activity.
    `share` is the variant's part of the traffic (weight / 100), for an edge that counts the route only."""
    demand = demand_queries(isvc, variant, share, window_seconds)
    scope = meta.series_scope(isvc, variant)
    return queries(scope, isvc.spec.model.name, gpu.mig_profile is not None, demand, window_seconds)
