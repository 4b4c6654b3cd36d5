"""One analysis of a canary: its measured values against spec.rollout.canary.checks (pure).

A check whose value could not be measured (Prometheus unreachable, no requests in the window)
gives no verdict: the rollout holds rather than promote a canary nobody has seen serve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from unbusy.api.rollout import RolloutCheck

UNITS = {"p99LatencyMs": "ms", "errorRatePercent": "%", "queueTimeMs": "ms"}


@dataclass(frozen=True)
class Measurement:
    """Each metric's value for the canary and for the stable version over the same window; None: not measured.
    `error` says why nothing could be read at all (Prometheus unreachable)."""

    canary: Mapping[str, float | None]
    stable: Mapping[str, float | None]
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    passed: bool | None  # None: no verdict, hold
    message: str


def _value(metric: str, value: float) -> str:
    return f"{value:.3g}{'' if UNITS[metric] == '%' else ' '}{UNITS[metric]}"


def _limit(check: RolloutCheck, stable: float | None) -> tuple[float | None, str]:
    """The value the canary may not exceed, and how it was set."""
    if check.max is not None:
        return check.max, "limit"
    if stable is None:
        return None, "stable unmeasured"
    limit = stable * check.max_ratio_to_stable
    return limit, f"{check.max_ratio_to_stable:g} x stable {_value(check.metric, stable)}"


def judge(checks: Sequence[RolloutCheck], measured: Measurement) -> Verdict:
    """Failed if any measured check fails; else no verdict if any is unmeasured; else passed."""
    if measured.error is not None:
        return Verdict(None, f"metrics unavailable ({measured.error}): holding")
    lines, failed, unmeasured = [], False, False
    for check in checks:
        value = measured.canary.get(check.metric)
        limit, basis = _limit(check, measured.stable.get(check.metric))
        if value is None or limit is None:
            unmeasured = True
            lines.append(f"{check.metric} not measured ({'no canary requests' if value is None else basis})")
            continue
        ok = value <= limit
        failed |= not ok
        sign = "<=" if ok else ">"
        lines.append(f"{check.metric} {_value(check.metric, value)} {sign} {_value(check.metric, limit)} ({basis})")
    detail = "; ".join(lines)
    if failed:
        return Verdict(False, f"failed: {detail}")
    if unmeasured:
        return Verdict(None, f"holding: {detail}")
    return Verdict(True, f"passed: {detail}")
