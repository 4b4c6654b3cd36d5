"""The Helm chart's generated files are what their sources make of them, byte for byte."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import yaml

from missing import require

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "unbusy"
CRD = "serving.unbusy.dev_inferenceservices.yaml"


def _dashboard_script():
    spec = importlib.util.spec_from_file_location("chart_dashboard", ROOT / "charts" / "dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chart_crd_is_a_copy_of_the_generated_one():
    assert (CHART / "crds" / CRD).read_bytes() == (ROOT / "crds" / CRD).read_bytes(), (
        "charts/unbusy/crds is stale: run `make crds` (charts/sync-crds.sh)"
    )


def test_sync_script_copies_the_crd():
    assert f"crds/{CRD} charts/unbusy/crds/{CRD}" in (ROOT / "charts" / "sync-crds.sh").read_text()


def test_kopf_peering_crds_match_what_kopf_watches():
    from kopf._cogs.structs import references

    crds = {
        d["spec"]["names"]["plural"]: d
        for d in yaml.safe_load_all((CHART / "crds" / "kopf.dev_peerings.yaml").read_text())
    }
    for selector, scope in (
        (references.CLUSTER_PEERINGS_K, "Cluster"),
        (references.NAMESPACED_PEERINGS_K, "Namespaced"),
    ):
        crd = crds[selector.any_name]
        assert (crd["spec"]["group"], crd["spec"]["versions"][0]["name"]) == (selector.group, selector.version)
        assert crd["spec"]["scope"] == scope


def test_dashboard_is_what_the_script_writes():
    script = _dashboard_script()
    assert script.OUT.read_text() == script.text(), "run `.venv/bin/python charts/dashboard.py`"
    doc = json.loads(script.OUT.read_text())
    titles = " ".join(p["title"] for p in doc["panels"]).lower()
    for topic in ("request rate", "p99", "queue depth", "gpu utilisation", "desired", "scaling", "rejected"):
        assert topic in titles


def test_dashboard_plots_metrics_the_operator_exports():
    script = _dashboard_script()
    source = "\n".join(p.read_text() for p in (ROOT / "operator" / "unbusy").rglob("*.py"))
    text = script.OUT.read_text()
    for name in script.OPERATOR_METRICS:
        assert f'"{name}"' in source, f"{name}: no such metric in operator/unbusy"
        assert name in text


def test_dashboard_queries_parse(tmp_path):
    promtool = shutil.which("promtool")
    if not promtool:
        require("promtool not found: `make promtool` installs it (Debian package prometheus)")
    script = _dashboard_script()
    queries = [t["expr"] for p in script.dashboard()["panels"] for t in p["targets"]]
    # Grafana fills in $__rate_interval; promtool needs a real range.
    rules = [
        {"record": f"unbusy:chart_dashboard:{i}", "expr": q.replace(script.RATE_WINDOW, "5m")}
        for i, q in enumerate(queries)
    ]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", "rules.yaml"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
