"""Reconcile benchmark: N InferenceServices created at once, until all are Ready, beside a plain
`kubectl apply --server-side` of the same pre-rendered children (from `unbusy render`) on the
same testbed in the same run; then the fleet at rest.

    .venv/bin/python bench/reconcile.py --count 100     # smoke run
    .venv/bin/python bench/reconcile.py --count 1000    # full run

The InferenceServices scale in operator mode (--mode) against a real Prometheus of their own
that has no series of them, so every scaling tick runs its queries and holds. Prints both times
and their ratio, the operator's peak RSS; over a steady window of --steady-seconds: the
operator's CPU, the queries Prometheus answered per scaling interval (its own
prometheus_http_requests_total) and the API server's write requests (its own
apiserver_request_total, by resource and verb); and the write requests the API server counted
while a restarted operator resumed every object and ran a full status resync and scaling ticks
with nothing changed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "tests"), str(ROOT / "tests" / "unit")]

from builders import CRD  # noqa: E402

from fleet_measure import api_writes, cpu_seconds, described, peak_rss_mib, queries_answered  # noqa: E402
from unbusy.api import load  # noqa: E402
from unbusy.demo.processes import OperatorProcess, Prometheus  # noqa: E402
from unbusy.render import render_all  # noqa: E402

# testbed/up.sh honours TESTBED_STATE_DIR (and TESTBED_*_PORT): a second testbed beside the first.
KUBECONFIG = Path(os.environ.get("TESTBED_STATE_DIR", ROOT / ".testbed")) / "kubeconfig"
BENCH_NODES = 4  # fake nodes with room for a thousand GPU pods, for both sides alike
INTERVAL_S = 15  # the scaling interval of every InferenceService (the spec's default)
# The operator's own count of its write calls (kube/client.py): the API server's counts above
# include every other component's (the controllers' and the scheduler's Events).
OWN_WRITES = "unbusy_api_writes_total"
RESYNC_S = 60  # the operator's status resync (unbusy run's default)


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
    return yaml.safe_dump_all(nodes)


def inference_service(name: str, namespace: str, mode: str) -> dict:
    return {
        "apiVersion": "serving.unbusy.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": "resnet50", "repository": "s3://models/vision"},
            "gpu": {"count": 1, "product": "H100-80GB"},
            "autoscaling": {"mode": mode, "minReplicas": 1, "maxReplicas": 4, "intervalSeconds": INTERVAL_S},
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


def apiserver_metrics() -> str:
    return kubectl("get", "--raw", "/metrics")


def ready_count(namespace: str) -> int:
    items = json.loads(kubectl("get", "infsvc", "-n", namespace, "-o", "json"))["items"]
    return sum(
        any(c["type"] == "Ready" and c["status"] == "True" for c in i.get("status", {}).get("conditions", []))
        for i in items
    )


def available_count(namespace: str) -> int:
    items = json.loads(kubectl("get", "deployments", "-n", namespace, "-o", "json"))["items"]
    return sum((d.get("status", {}).get("availableReplicas") or 0) >= 1 for d in items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--mode", choices=["operator", "none"], default="operator", help="spec.autoscaling.mode")
    parser.add_argument("--steady-seconds", type=float, default=4 * INTERVAL_S)
    args = parser.parse_args()
    n, mode = args.count, args.mode
    prometheus_binary = shutil.which("prometheus")
    if prometheus_binary is None:
        raise SystemExit("prometheus not installed (Debian package `prometheus`; `make promtool` installs it)")

    subprocess.run([str(ROOT / "testbed" / "up.sh")], check=True, stdout=subprocess.DEVNULL)
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    # Until the API server serves it: an operator started while its storage initialises gets 429s.
    kubectl("wait", "--for=condition=Established", "crd/inferenceservices.serving.unbusy.dev", "--timeout=60s")
    until(
        lambda: (
            subprocess.run(
                ["kubectl", "--kubeconfig", str(KUBECONFIG), "get", "infsvc", "-A"], capture_output=True
            ).returncode
            == 0
        ),
        60,
    )
    kubectl("apply", "-f", "-", stdin=bench_nodes())
    for namespace in ("bench-operator", "bench-plain"):
        kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=true", "--timeout=600s")
        kubectl("create", "namespace", namespace)

    # Baseline: the same children, pre-rendered, applied in one go by kubectl.
    services = [inference_service(f"m{i:04d}", "bench-plain", mode) for i in range(n)]
    children = [m for s in services for m in render_all(load(s))]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as rendered:
        yaml.safe_dump_all(children, rendered)
        start = time.monotonic()
        kubectl("apply", "--server-side", "-f", rendered.name)
        plain = time.monotonic() - start + until(lambda: available_count("bench-plain") >= n, args.timeout)
    # Gone before the operator starts: its Deployments carry Unbusy's labels, so a cluster-wide
    # operator would list and watch them as its own (with them there, 1,000 peaked at 206.4 MiB;
    # without, 159.7 MiB).
    kubectl("delete", "namespace", "bench-plain", "--wait=true", f"--timeout={int(args.timeout)}s")

    # Unbusy: the InferenceServices, reconciled by the operator, until each reports Ready.
    with tempfile.TemporaryDirectory() as tmp:
        prometheus = Prometheus(prometheus_binary, Path(tmp), []).start()
        operator = OperatorProcess(KUBECONFIG, Path(tmp) / "operator.log", "--prometheus-url", prometheus.url)
        operator.start()
        try:
            manifests = yaml.safe_dump_all([inference_service(f"m{i:04d}", "bench-operator", mode) for i in range(n)])
            start = time.monotonic()
            kubectl("apply", "--server-side", "-f", "-", stdin=manifests)
            unbusy = time.monotonic() - start + until(lambda: ready_count("bench-operator") >= n, args.timeout)

            # At rest: every scaling tick and status resync has nothing to change.
            time.sleep(INTERVAL_S)
            pid = operator.process.pid
            cpu, queries, writes = cpu_seconds(pid), queries_answered(prometheus.url), api_writes(apiserver_metrics)
            own_writes = operator.metric(OWN_WRITES)
            time.sleep(args.steady_seconds)
            own_writes = operator.metric(OWN_WRITES) - own_writes
            steady_cpu = (cpu_seconds(pid) - cpu) / args.steady_seconds
            per_interval = (queries_answered(prometheus.url) - queries) / (args.steady_seconds / INTERVAL_S)
            steady_writes = api_writes(apiserver_metrics) - writes
            rss = peak_rss_mib(pid)

            # A restart resumes every object, then a whole status resync and scaling ticks follow.
            operator.stop()
            writes = api_writes(apiserver_metrics)
            operator.start()
            until(lambda: operator.metric("unbusy_reconcile_duration_seconds_count") >= n, args.timeout)
            time.sleep(RESYNC_S)
            resync_writes = api_writes(apiserver_metrics) - writes
            resumed_rss = peak_rss_mib(operator.process.pid)
            # While the operator runs, so that it takes kopf's finalizer off each of them.
            kubectl("delete", "infsvc", "--all", "-n", "bench-operator", f"--timeout={int(args.timeout)}s")
        finally:
            operator.stop()
            prometheus.stop()

    print(f"InferenceServices: {n} (autoscaling.mode {mode}, every {INTERVAL_S} s)")
    print(f"kubectl apply --server-side of pre-rendered children, until available: {plain:8.1f} s")
    print(f"unbusy: create until every InferenceService reports Ready:            {unbusy:8.1f} s")
    print(f"ratio unbusy / kubectl:                                               {unbusy / plain:8.2f}")
    print(
        f"operator peak RSS (create, then {args.steady_seconds:.0f} s at rest):                         {rss:8.1f} MiB"
    )
    print(
        f"operator peak RSS after a restart (resume of {n}, {RESYNC_S} s of resync):           {resumed_rss:8.1f} MiB"
    )
    print(f"operator CPU at rest (cores):                                         {steady_cpu:8.3f}")
    print(f"Prometheus queries per scaling interval, at rest:                     {per_interval:8.1f}")
    print(
        f"API writes at rest ({args.steady_seconds:.0f} s): {sum(steady_writes.values())} "
        f"({described(steady_writes)}), of which the operator's own: {own_writes:.0f}"
    )
    print(
        f"API writes, restart + resume + {RESYNC_S} s of resync and ticks, nothing changed: "
        f"{sum(resync_writes.values())} ({described(resync_writes)})"
    )
    kubectl("delete", "namespace", "bench-operator", "--wait=false")


if __name__ == "__main__":
    main()
