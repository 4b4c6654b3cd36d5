"""The PromQL the scaling loop runs for one variant, one query per input of the policy.

Every selector comes from series.py, which escapes the values taken from the spec (namespace,
InferenceService and model name), so a spec cannot inject PromQL. Per-pod queries are
grouped `by (pod)` so that the loop can join them with the pods' readiness from the API server
(the policy averages GPU utilisation over ready pods only). The variant's demand, refused
requests included, is read at the edge (render/edge.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from unbusy import series
from unbusy.api import InferenceService
from unbusy.gpu.request import GpuRequest
from unbusy.llm_signals import LlmSignals, llm_signals
from unbusy.render import meta
from unbusy.render.edge import RATE_WINDOW_S, DemandQueries, demand_queries


@dataclass(frozen=True)
class Queries:
    pending_total: str  # all requests pending in the variant: the queue-depth metric sums them
    pending_per_pod: str
    gpu_utilization_per_pod: str  # percent
    request_rate_per_pod: str  # requests per second arriving, answered or rejected
    queue_time_ms_per_pod: str  # mean wait in Triton's queue; no sample while a pod has no traffic
    served_rate_per_pod: str  # requests answered per second: a saturated pod's is its capacity
    least_pending_per_pod: str  # the least pending count over the rate window: saturated throughout?
    refused_rate_per_pod: str  # requests refused for a full queue per second
    batch_mean_per_pod: str  # inferences per execution: batches that ran full say saturated
    demand: DemandQueries  # offered load of the variant, refused requests included where the edge is read


@dataclass(frozen=True)
class PerPod:
    """Per-pod inputs of the policy, each query grouped `by` the labels that name a pod."""

    pending: str
    gpu_utilization: str  # percent
    request_rate: str
    queue_time_ms: str
    served_rate: str
    least_pending: str
    refused_rate: str
    batch_mean: str


def per_pod(
    triton: str, requests: str, refused: str, dcgm: str, mig: bool, by: str, dcgm_by: str, window: str
) -> PerPod:
    """The per-pod queries over Triton series `triton` (`requests`: its answered and failed
    counters; `refused`: its failures for a full queue), DCGM series `dcgm`, grouped `by` (DCGM's
    by `dcgm_by`), rates over `window`."""
    waited = f"sum by ({by}) (rate({series.QUEUE_DURATION_US}{triton}{window}))"
    # `> 0` drops idle pods instead of dividing by zero into NaN.
    answered = f"(sum by ({by}) (rate({series.REQUEST_SUCCESS}{triton}{window})) > 0)"
    return PerPod(
        pending=f"sum by ({by}) ({series.PENDING_REQUESTS}{triton})",
        gpu_utilization=f"avg by ({dcgm_by}) ({series.gpu_utilization_percent(dcgm, mig)})",
        request_rate=f"sum by ({by}) (rate({requests}{window}))",
        queue_time_ms=f"{waited} / {answered} / 1000",
        served_rate=f"sum by ({by}) (rate({series.REQUEST_SUCCESS}{triton}{window}))",
        least_pending=f"sum by ({by}) (min_over_time({series.PENDING_REQUESTS}{triton}{window}))",
        refused_rate=f"sum by ({by}) (rate({series.REQUEST_FAILURE}{refused}{window}))",
        batch_mean=f"sum by ({by}) (rate({series.INFERENCE_COUNT}{triton}{window}))"
        f" / (sum by ({by}) (rate({series.EXEC_COUNT}{triton}{window})) > 0)",
    )


def _window(window_seconds: int) -> str:
    if window_seconds < 1:
        raise ValueError(f"window_seconds must be at least 1, not {window_seconds}")
    return f"[{window_seconds}s]"


# Answered and failed requests: both counters, selected by name.
_REQUESTS = series.matcher("__name__", series.names_regex([series.REQUEST_SUCCESS, series.REQUEST_FAILURE]), "=~")
_REFUSED = series.matcher(series.REASON, series.REJECTED)


def queries(scope: series.Scope, model: str, mig: bool, demand: DemandQueries, window_seconds: int = 60) -> Queries:
    """The queries of one scope (one variant) and model; `window_seconds` is the rate window."""
    window = _window(window_seconds)
    triton = scope.triton(series.matcher(series.MODEL, model))
    requests = scope.triton(_REQUESTS, series.matcher(series.MODEL, model))
    refused = scope.triton(_REFUSED, series.matcher(series.MODEL, model))
    pods = per_pod(triton, requests, refused, scope.dcgm(), mig, series.POD, series.POD, window)
    return Queries(
        pending_total=scope.pending_total(model),
        pending_per_pod=pods.pending,
        gpu_utilization_per_pod=pods.gpu_utilization,
        request_rate_per_pod=pods.request_rate,
        queue_time_ms_per_pod=pods.queue_time_ms,
        served_rate_per_pod=pods.served_rate,
        least_pending_per_pod=pods.least_pending,
        refused_rate_per_pod=pods.refused_rate,
        batch_mean_per_pod=pods.batch_mean,
        demand=demand,
    )


# A fleet's per-pod series, grouped so that each row names its pod (pod names are unique within
# a namespace) and, for Triton's, the model it serves.
FLEET_TRITON_BY = (series.NAMESPACE, series.POD, series.MODEL)
FLEET_DCGM_BY = (series.NAMESPACE, series.POD)


def fleet_per_pod(namespaces: Iterable[str], mig: bool, window_seconds: int = 60) -> PerPod:
    """The per-pod queries of every InferenceService in `namespaces` at once: Triton's series of
    any InferenceService (its `inferenceservice` target label set), every GPU's there."""
    where = series.matcher(series.NAMESPACE, series.names_regex(namespaces), "=~")
    managed = series.matcher(series.INFERENCE_SERVICE, "", "!=")
    triton, requests = series.selector(where, managed), series.selector(_REQUESTS, where, managed)
    refused = series.selector(_REFUSED, where, managed)
    by, dcgm_by = ", ".join(FLEET_TRITON_BY), ", ".join(FLEET_DCGM_BY)
    return per_pod(triton, requests, refused, series.selector(where), mig, by, dcgm_by, _window(window_seconds))


def variant_queries(
    isvc: InferenceService, variant: str, gpu: GpuRequest, share: float, window_seconds: int = RATE_WINDOW_S
) -> Queries:
    """The queries for one variant of an InferenceService; MIG slices read GR engine activity.
    `share` is the variant's part of the traffic (weight / 100), for an edge that counts the route only."""
    demand = demand_queries(isvc, variant, share, window_seconds)
    scope = meta.series_scope(isvc, variant)
    return queries(scope, isvc.spec.model.name, gpu.mig_profile is not None, demand, window_seconds)


@dataclass(frozen=True)
class LlmQueries(LlmSignals):
    """The LLM signals of one variant (tokens, TTFT, TPOT, running, waiting, KV; per pod where
    grouped by pod) and its offered load at the edge."""

    demand: DemandQueries  # offered requests, refused ones included, where the edge is read


def llm_queries(isvc: InferenceService, variant: str, share: float, window_seconds: int = 60) -> LlmQueries | None:
    """The LLM queries of one variant for its engine (spec.model.llm); None for a model that is no LLM.
    `share` is the variant's part of the traffic, as for variant_queries."""
    signals = llm_signals(isvc.spec.model, meta.series_scope(isvc, variant), _window(window_seconds))
    if signals is None:
        return None
    return LlmQueries(**vars(signals), demand=demand_queries(isvc, variant, share, window_seconds))
