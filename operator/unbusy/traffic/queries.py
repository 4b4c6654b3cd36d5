"""The PromQL of a canary analysis: each metric a check can name, for one variant (the canary's
or the stable one's) over one window. Selectors come from series.py (escaped values); each
query returns one number, or nothing while the variant served no request in the window."""

from __future__ import annotations

from unbusy import series
from unbusy.api import InferenceService
from unbusy.render import meta
from unbusy.render.alerts import P99
from unbusy.render.edge import demand_queries


def _rate(metric: str, selector: str, window: str) -> str:
    return f"sum(rate({metric}{selector}[{window}]))"


def analysis_queries(isvc: InferenceService, variant: str, window_seconds: int) -> dict[str, list[str]]:
    """metric -> queries whose largest answer is its value (more than one: several sources of one metric)."""
    window = f"{window_seconds}s"
    scope = meta.series_scope(isvc, variant)
    triton = scope.triton(series.matcher(series.MODEL, isvc.spec.model.name))
    p99 = scope.triton(series.matcher(series.MODEL, isvc.spec.model.name), series.matcher(series.QUANTILE, P99))
    succeeded = _rate(series.REQUEST_SUCCESS, triton, window)
    failed = _rate(series.REQUEST_FAILURE, triton, window)
    # `> 0` leaves no sample (not NaN) for a window without requests: nothing to judge.
    answered = f"({succeeded} > 0)"
    errors = [f"100 * {failed} / (({succeeded} + {failed}) > 0)"]
    edge = demand_queries(isvc, variant, 1.0, window_seconds)
    if edge.measurable and edge.rejected:
        # The edge's refusals (no ready endpoint, a full queue) are errors the user saw.
        errors.append(f"100 * ({edge.rejected} or vector(0)) / ({edge.requests} > 0)")
    return {
        "p99LatencyMs": [f"max(max_over_time({series.REQUEST_SUMMARY_US}{p99}[{window}])) / 1000"],
        "errorRatePercent": errors,
        "queueTimeMs": [f"{_rate(series.QUEUE_DURATION_US, triton, window)} / {answered} / 1000"],
    }
