"""bench/scaling.py --smoke --json: every policy side by side, with `unbusy simulate --json`'s keys."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_the_frontier_rows_and_what_the_first_refusals_leave_of_the_slo_minutes():
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "scaling.py"),
            "--smoke",
            "--recurrence-seconds",
            "0",
            "--fixed-replicas",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    table = {
        cells[0]: cells[1:]
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| policy")
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }
    assert {"unbusy, recurrence 0 s", "fixed 3"} <= set(table)
    assert float(table["fixed 3"][4]) == 0.5  # 3 replicas x 600 s, scaling off
    # the first refusals of a policy that sees the present at once: minutes no reacting policy keeps in the SLO
    at_most = float(done.stdout.split("which so has at most ")[1].split("%")[0])
    assert float(table["reactive-floor"][3]) <= at_most < 100 == float(table["oracle"][3])


def test_gpu_hours_puts_every_replica_second_above_or_below_the_oracle_down_to_a_cause():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_hours.py"), "--smoke", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(done.stdout)
    counted, ran = found["counted_gpu_hours"], found["gpu_hours"]
    for name in ("unbusy", "oracle"):
        assert counted[name] == pytest.approx(ran[name], abs=0.01)  # the decided counts are what the engine held
    parts = sum(found["above"].values()) + sum(found["below"].values())
    assert parts == pytest.approx(counted["unbusy"] - counted["oracle"])
    assert all(value > 0 for value in found["above"].values()) and all(v < 0 for v in found["below"].values())
    assert len(found["minutes"]) == 10  # the smoke step's 600 s
