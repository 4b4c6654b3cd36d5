"""The chart's alert rules on the operator itself, as `helm template` renders them: for promtool
(tests/integration/test_chart.py) and for a real Prometheus in the closed loop (tests/e2e)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "unbusy"


def operator_rule_groups(helm: Path, *settings: str) -> list[dict[str, Any]]:
    """spec.groups of the chart's PrometheusRule, rendered with metrics.prometheusRule.KEY=VALUE `settings`."""
    values = ["--set", "metrics.prometheusRule.enabled=true"]
    for setting in settings:
        values += ["--set", f"metrics.prometheusRule.{setting}"]
    command = [str(helm), "template", "unbusy", str(CHART), *values, "--show-only", "templates/prometheusrule.yaml"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"{' '.join(command)}:\n{proc.stderr}"
    return yaml.safe_load(proc.stdout)["spec"]["groups"]


def rule_file(groups: list[dict[str, Any]]) -> str:
    """A Prometheus rule file (promtool, --config's rule_files) of these groups."""
    return yaml.safe_dump({"groups": groups}, sort_keys=False)
