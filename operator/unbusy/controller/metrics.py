"""The operator's own Prometheus metrics (served by `unbusy run` on --metrics-port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Histogram(
    "unbusy_reconcile_duration_seconds",
    "Time of one reconcile of one InferenceService, by result (changed, unchanged, invalid, failed).",
    ["result"],
)
CHILDREN_APPLIED = Counter("unbusy_children_applied", "Child objects written by server-side apply.", ["kind"])
CHILDREN_PRUNED = Counter(
    "unbusy_children_pruned", "Child objects deleted because the spec no longer asks for them.", ["kind"]
)
SCALING_DECISIONS = Counter(
    "unbusy_scaling_decisions", "Replica changes the scaling loop made, by direction.", ["direction"]
)
METRIC_READ_FAILURES = Counter("unbusy_metric_read_failures", "Prometheus reads that failed in the scaling loop.")
FALLBACK_WEIGHT = Gauge(
    "unbusy_fallback_weight_percent",
    "Traffic, in percent of all, moved from a variant to spec.fallback's variant (0: none).",
    ["namespace", "inferenceservice", "variant"],
)
