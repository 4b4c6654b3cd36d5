"""Reconcile benchmark: N InferenceServices created at once, until all are Ready, beside a plain
`kubectl apply --server-side` of the same pre-rendered children (from `unbusy render`) on the
same testbed in the same run.

    .venv/bin/python bench/reconcile.py --count 100     # smoke run
    .venv/bin/python bench/reconcile.py --count 1000    # full run

Prints both times and their ratio, the operator's peak RSS, and the API writes the operator
makes in a resync with nothing changed (a restart resumes every object).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "tests"), str(ROOT / "tests" / "unit")]

from builders import CRD  # noqa: E402

from unbusy.api import load  # noqa: E402
from unbusy.demo.processes import OperatorProcess  # noqa: E402
from unbusy.render import render_all  # noqa: E402

# testbed/up.sh honours TESTBED_STATE_DIR (and TESTBED_*_PORT): a second testbed beside the first.
KUBECONFIG = Path(os.environ.get("TESTBED_STATE_DIR", ROOT / ".testbed")) / "kubeconfig"
BENCH_NODES = 4  # fake nodes with room for a thousand GPU pods, for both sides alike


def kubectl(*args: str, stdin: str | None = None) -> str:
    command = ["kubectl", "--kubeconfig", str(KUBECONFIG), *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, check=True).stdout


def bench_nodes() -> str:
    nodes = []
    for i in range(BENCH_NODES):
        nodes.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": f"bench-h100-{i}",
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {
                        "type": "kwok",
                        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                        "topology.kubernetes.io/zone": f"zone-{'ab'[i % 2]}",
                    },
                },
                "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
                "status": {
                    "allocatable": {"cpu": "4000", "memory": "16Ti", "pods": "1000", "nvidia.com/gpu": "1000"},
                    "capacity": {"cpu": "4000", "memory": "16Ti", "pods": "1000", "nvidia.com/gpu": "1000"},
                },
            }
        )
    return "\n---\n".join(json.dumps(n) for n in nodes)


def inference_service(name: str, namespace: str) -> dict:
    return {
        "apiVersion": "serving.unbusy.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": "resnet50", "repository": "s3://models/vision"},
            "gpu": {"count": 1, "product": "H100-80GB"},
            "autoscaling": {"mode": "none"},
            "routing": {"host": f"{name}.example.com"},
            "triton": {"resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}}},
        },
    }


def until(check, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(1)
    raise SystemExit(f"not done within {timeout}s")


def ready_count(namespace: str) -> int:
    items = json.loads(kubectl("get", "infsvc", "-n", namespace, "-o", "json"))["items"]
    return sum(
        any(c["type"] == "Ready" and c["status"] == "True" for c in i.get("status", {}).get("conditions", []))
        for i in items
    )


def available_count(namespace: str) -> int:
    items = json.loads(kubectl("get", "deployments", "-n", namespace, "-o", "json"))["items"]
    return sum((d.get("status", {}).get("availableReplicas") or 0) >= 1 for d in items)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    n = args.count

    subprocess.run([str(ROOT / "testbed" / "up.sh")], check=True, stdout=subprocess.DEVNULL)
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kubectl("apply", "-f", "-", stdin=bench_nodes())
    for namespace in ("bench-operator", "bench-plain"):
        kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=true", "--timeout=600s")
        kubectl("create", "namespace", namespace)

    # Baseline: the same children, pre-rendered, applied in one go by kubectl.
    services = [inference_service(f"m{i:04d}", "bench-plain") for i in range(n)]
    children = [m for s in services for m in render_all(load(s))]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as rendered:
        yaml.safe_dump_all(children, rendered)
        start = time.monotonic()
        kubectl("apply", "--server-side", "-f", rendered.name)
        plain = time.monotonic() - start + until(lambda: available_count("bench-plain") >= n, args.timeout)

    # Unbusy: the InferenceServices, reconciled by the operator, until each reports Ready.
    with tempfile.TemporaryDirectory() as tmp:
        operator = OperatorProcess(KUBECONFIG, Path(tmp) / "operator.log").start()
        try:
            manifests = "\n---\n".join(json.dumps(inference_service(f"m{i:04d}", "bench-operator")) for i in range(n))
            start = time.monotonic()
            kubectl("apply", "--server-side", "-f", "-", stdin=manifests)
            unbusy = time.monotonic() - start + until(lambda: ready_count("bench-operator") >= n, args.timeout)
            rss = peak_rss_mib(operator.process.pid)

            operator.stop()
            operator.start()
            until(lambda: operator.metric("unbusy_reconcile_duration_seconds_count") >= n, args.timeout)
            resync_writes = operator.metric("unbusy_api_writes_total")
            # While the operator runs, so that it takes kopf's finalizer off each of them.
            kubectl("delete", "infsvc", "--all", "-n", "bench-operator", f"--timeout={int(args.timeout)}s")
        finally:
            operator.stop()

    print(f"InferenceServices: {n}")
    print(f"kubectl apply --server-side of pre-rendered children, until available: {plain:8.1f} s")
    print(f"unbusy: create until every InferenceService reports Ready:            {unbusy:8.1f} s")
    print(f"ratio unbusy / kubectl:                                               {unbusy / plain:8.2f}")
    print(f"operator peak RSS:                                                    {rss:8.1f} MiB")
    print(f"API writes in a resync with no change (after a restart):              {resync_writes:8.0f}")
    for namespace in ("bench-operator", "bench-plain"):
        kubectl("delete", "namespace", namespace, "--wait=false")


if __name__ == "__main__":
    main()
