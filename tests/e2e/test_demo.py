"""`make demo`'s playback in its short form (testbed/demo.sh --short, ~2.5 minutes), then
`make demo-down`: the summary it prints says the step scaled main out to maxReplicas, moved weight to
the fallback and back, and its numbers add up; afterwards none of its processes is left. Its load
goes through the testbed's Traefik, and the summary counts what the load generator received.

The testbed is the session's: the demo finds it running, so demo-down deletes the demo's
InferenceService and leaves the testbed up.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "testbed" / "demo.sh"
EXAMPLE = ROOT / "examples" / "fallback-step.yaml"


def _state_dir() -> Path:
    return Path(os.environ.get("TESTBED_STATE_DIR", ROOT / ".testbed"))


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _processes_naming(text: str) -> list[str]:
    """Command lines of live processes that contain `text`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args and _alive(int(cmdline.parent.name)):
            found.append(args)
    return found


def _number(text: str, label: str) -> int:
    match = re.search(rf"^  {label}\s+([\d,]+)", text, re.MULTILINE)
    assert match, f"no '{label}' line in:\n{text}"
    return int(match.group(1).replace(",", ""))


def test_the_demo_plays_a_step_through_the_fallback_and_demo_down_stops_everything(testbed):
    demo_dir = _state_dir() / "demo"
    try:
        played = subprocess.run(
            [str(DEMO), "--short"], capture_output=True, text=True, timeout=420, check=False, cwd=ROOT
        )
        out = played.stdout
        assert played.returncode == 0, f"{out[-4000:]}\n{played.stderr[-3000:]}"
        pids = {p.stem: int(p.read_text()) for p in (demo_dir / "pids").glob("*.pid")}
        assert set(pids) == {"player", "operator", "prometheus"} and all(map(_alive, pids.values())), pids
    finally:
        down = subprocess.run([str(DEMO), "down"], capture_output=True, text=True, timeout=180, check=False)
    assert down.returncode == 0, down.stdout + down.stderr

    summary = json.loads((demo_dir / "summary.json").read_text())
    spec = yaml.safe_load(EXAMPLE.read_text())["spec"]
    main, fallback = summary["variant"], summary["fallback"]
    assert (main, fallback) == ("main", spec["fallback"]["variant"])

    # What it printed is what it wrote, and the requests add up: each one answered by main or the
    # fallback, refused, failed, or in flight across the start or the end (at most a queue's worth
    # per replica).
    requests, rejected = _number(out, "requests"), _number(out, "503s")
    assert (requests, rejected) == (round(summary["requests"]), round(summary["rejected"])), out
    assert (
        f"{main} {round(summary['answered']):,}, {fallback} (fallback) {round(summary['fallback_answered']):,}" in out
    )
    queue = spec["model"]["config"]["dynamicBatching"]["maxQueueSize"]
    answered = summary["answered"] + summary["fallback_answered"]
    assert abs(summary["requests"] - answered - rejected - summary["failed"]) <= queue * 4
    assert summary["failed"] <= 0.001 * summary["requests"], summary["failed"]

    # Each phase offered its rate for its length (Poisson arrivals, counted each second: within 4
    # standard deviations).
    with (demo_dir / "timeline.csv").open() as timeline:
        rows = list(csv.DictReader(timeline))
    assert len(rows) == sum(p["seconds"] for p in summary["phases"])
    for phase in summary["phases"]:
        offered = sum(float(r["offered"]) for r in rows if r["phase"] == phase["name"])
        expected = phase["rps"] * phase["seconds"]
        assert abs(offered - expected) <= 4 * expected**0.5, phase
    before, step, after = summary["phases"]
    assert step["rps"] == 8 * before["rps"] and after["rps"] == before["rps"]

    # Scaled out to maxReplicas on the step, weight moved to the fallback and, after the step, back.
    start, most, _ = summary["replicas"]
    assert start < most == summary["max_replicas"] == spec["autoscaling"]["maxReplicas"], out
    scaled_out = [d for d in summary["decisions"] if re.match(rf"{main} \d+ -> {most}: ", d["text"])]
    assert scaled_out, summary["decisions"]
    assert 0 < summary["weight_max"] <= spec["fallback"]["maxPercent"], out
    assert summary["weight_end"] == 0 and summary["restored_at"] is not None, out
    assert before["seconds"] <= summary["shed_from"] < before["seconds"] + step["seconds"], out
    assert summary["restored_at"] > before["seconds"] + step["seconds"], out
    assert summary["fallback_answered"] > 0
    # 503s come with the step only, while the replicas and the routes catch up: by its last 5 s
    # main at maxReplicas and the fallback answer it.
    assert summary["rejected_by_phase"]["before"] == 0 and summary["rejected_by_phase"]["after"] == 0, out
    late = [r for r in rows if r["phase"] == "step"][-5:]
    assert sum(float(r["rejected"]) for r in late) < 0.01 * sum(float(r["offered"]) for r in late), late
    assert summary["p99_ms"]["all"] > 0
    assert (demo_dir / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for line in ("load step:", f"weight on {fallback}", "scaling decisions seen", f"{main} ready/desired"):
        assert line in out, out

    # demo-down: nothing of the demo is left, the InferenceService is gone, the session's testbed stays.
    assert not [pid for pid in pids.values() if _alive(pid)], pids
    assert _processes_naming(str(demo_dir)) == []
    gone = testbed.kubectl("get", "infsvc", "resnet50-step", "-n", "default", check=False)
    assert "NotFound" in gone.stderr, gone.stdout + gone.stderr
    assert subprocess.run([str(ROOT / "testbed" / "status.sh")], capture_output=True, check=False).returncode == 0
