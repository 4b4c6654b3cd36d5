"""bench/scaling.py --smoke --json: every policy side by side, with `unbusy simulate --json`'s keys."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"policy", "trace", "rejected_pct", "p50_ms", "p99_ms", "slo_minutes_pct", "gpu_hours", "fallback_pct"}


def test_smoke_run_prints_every_policy_with_finite_figures():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scaling.py"), "--smoke", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = json.loads(done.stdout)
    assert [row["policy"] for row in rows] == [
        "unbusy",
        "unbusy+fallback",
        "hpa-cpu",
        "keda-queue",
        "reactive-floor",
        "oracle",
    ]
    for row in rows:
        assert set(row) == KEYS
        assert row["trace"] == "smoke-step"
        assert all(isinstance(row[k], float | int) and math.isfinite(row[k]) for k in KEYS - {"policy", "trace"})
    oracle = rows[-1]
    assert oracle["rejected_pct"] == 0
    assert all(row["rejected_pct"] >= oracle["rejected_pct"] for row in rows)
