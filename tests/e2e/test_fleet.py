"""A fleet at rest, as bench/reconcile.py measures it at 1,000, here at 200 (about 2 minutes):
200 InferenceServices in operator mode, a real Prometheus with no series of them. Every tick of
the scaling loop queries Prometheus once per metric for the whole fleet, not once per
InferenceService, and the operator writes nothing to the API server while nothing changes:
neither its own client (unbusy_api_writes_total) nor kopf's (the API server's count of writes to
InferenceServices; other kinds are left out because other tests' namespaces may still be going
away). The replicas are held at zero (minReplicas 0), so no pod needs a fake GPU of its own.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
import yaml
from builders import manifest

from fleet_measure import api_writes, described, queries_answered
from polling import eventually
from unbusy.demo.processes import OperatorProcess, Prometheus

pytestmark = pytest.mark.e2e

COUNT = 200
INTERVAL_S = 15
# Per tick: the six per-pod queries and ingress-nginx's request counter, whatever COUNT is.
QUERIES_PER_TICK = 7
OWN_WRITES = "unbusy_api_writes_total"


def test_a_fleet_at_rest_queries_once_per_metric_and_writes_nothing(
    testbed, crd, namespace, prometheus_binary, tmp_path
):
    prometheus = Prometheus(prometheus_binary, tmp_path, []).start()
    args = ("--prometheus-url", prometheus.url, "--namespace", namespace)
    operator = OperatorProcess(testbed.kubeconfig, tmp_path / "operator.log", *args).start()
    try:
        autoscaling = {"mode": "operator", "minReplicas": 0, "maxReplicas": 2, "intervalSeconds": INTERVAL_S}
        services = [
            manifest({"autoscaling": autoscaling, "routing": {"host": f"m{i}.example.com"}}, f"m{i:03d}", namespace)
            for i in range(COUNT)
        ]
        testbed.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(services))

        def settled() -> int:
            """Ready, and ticked by the scaling loop once."""
            items = testbed.kubectl_json("get", "infsvc", "-n", namespace)["items"]
            conditions = [{c["type"]: c for c in i.get("status", {}).get("conditions", [])} for i in items]
            return sum(c.get("Ready", {}).get("status") == "True" and "ScalingActive" in c for c in conditions)

        eventually(
            lambda: settled() == COUNT,
            300,
            every=2,
            describe=lambda: f"{settled()} settled; {operator.log.read_text()[-3000:]}",
        )

        def rolled_out() -> int:
            """Deployments whose controller has caught up: their last status changes are behind us."""
            items = testbed.kubectl_json("get", "deployments", "-n", namespace)["items"]
            return sum(d.get("status", {}).get("observedGeneration") == d["metadata"]["generation"] for d in items)

        eventually(lambda: rolled_out() == COUNT, 300, every=2, describe=lambda: f"{rolled_out()} rolled out")

        def metrics() -> str:
            return testbed.kubectl("get", "--raw", "/metrics").stdout

        time.sleep(INTERVAL_S)  # the status refreshes of those last Deployment events land
        queries, writes, ours = queries_answered(prometheus.url), api_writes(metrics), operator.metric(OWN_WRITES)
        time.sleep(2 * INTERVAL_S)
        ticks = 3  # at most: two intervals are two or three wall-clock slots
        asked = queries_answered(prometheus.url) - queries
        assert QUERIES_PER_TICK <= asked <= ticks * QUERIES_PER_TICK, f"{asked} queries in two intervals"
        # PATCH, PUT, APPLY: what kopf and the operator write to an InferenceService (a DELETE
        # comes from the namespace controller, emptying another test's namespace).
        changed = api_writes(metrics) - writes
        at_rest = Counter({k: v for k, v in changed.items() if k.startswith("inferenceservices") and "DELETE" not in k})
        assert not at_rest, f"writes to InferenceServices with nothing changed: {described(at_rest)}"
        assert operator.metric(OWN_WRITES) == ours
        # While the operator runs, so that it takes kopf's finalizer off each of them.
        testbed.kubectl("delete", "infsvc", "--all", "-n", namespace, "--timeout=180s", timeout=200)
    finally:
        operator.stop()
        prometheus.stop()
