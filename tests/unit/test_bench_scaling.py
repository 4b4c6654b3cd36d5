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
        [
            sys.executable,
            str(ROOT / "bench" / "scaling.py"),
            "--smoke",
            "--json",
            "--refusal-prices",
            "0",
            "--fixed-replicas",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = json.loads(done.stdout)
    assert [row["policy"] for row in rows] == [
        "unbusy",
        "unbusy+fallback",
        "unbusy, 0 GPU-s a refusal",
        "fixed 3",
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
    assert rows[3]["gpu_hours"] == 0.5  # 3 replicas x 600 s, scaling off


def test_under_each_table_the_first_refusals_leave_the_most_minutes_a_reacting_policy_keeps_in_the_slo():
    sys.path.insert(0, str(ROOT / "bench"))
    import scaling

    from unbusy.sim.stats import Minute, SimResult

    def result(refused: list[float]) -> SimResult:
        minutes = tuple(
            Minute(i, load_rps=100.0, replicas=2, ready=2, p99_ms=50.0, rejected=r, shed=0, within_slo=r <= 60)
            for i, r in enumerate(refused)
        )
        return SimResult(0.0, 50.0, 50.0, 100.0, 1.0, 0, minutes)

    # of 10 minutes of 6,000 requests, the first refusals are minutes 2-4; two of them refuse over 1%
    floor = result([0, 0, 600, 30, 120, 0, 0, 900, 0, 0])
    text = scaling.footer(floor, initial_replicas=2)
    assert "first refusals in a row: 1.250% of the requests, 2 of its minutes refusing over 1%" in text
    assert "starts at 2 replicas" in text and "at most 80.0% of the minutes within the SLO" in text


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


LLM_KEYS = {
    "policy",
    "trace",
    "mix",
    "refused_pct",
    "fallback_pct",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "tpot_p99_ms",
    "slo_minutes_pct",
    "gpu_hours",
    "prompt_tokens",
    "output_tokens",
    "preemptions",
    "gpu_hours_vs_oracle",
}


def test_an_llm_smoke_run_prints_every_policy_in_tokens(tmp_path):
    import yaml
    from test_llm_serving import PROFILE

    profile = tmp_path / "llm.yaml"
    profile.write_text(yaml.safe_dump(PROFILE.to_document()))
    command = [sys.executable, str(ROOT / "bench" / "scaling.py"), "--llm-profile", str(profile), "--smoke", "--json"]
    rows = json.loads(subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout)
    assert [row["policy"] for row in rows] == [
        "unbusy",
        "unbusy+profile",
        "hpa-gpu",
        "keda-waiting",
        "reactive-floor",
        "oracle",
    ]
    by = {row["policy"]: row for row in rows}
    assert all(set(row) == LLM_KEYS and row["mix"] == "conv" for row in rows)
    assert by["oracle"]["slo_minutes_pct"] == 100 and by["oracle"]["gpu_hours_vs_oracle"] == 1
    # A continuous-batching engine is busy at any load: an HPA on the GPU reading holds more than Unbusy.
    assert by["hpa-gpu"]["gpu_hours"] > by["unbusy"]["gpu_hours"]
