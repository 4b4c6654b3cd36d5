"""Leader failover: two operator replicas under kopf peering, the active one SIGKILLed (no
goodbye to its peers). The standby takes over once the active's peering record expires: within
the peering lifetime plus a few seconds of the kill (docs/operations.md states the bound)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fleet import Cluster, inference_service, ready, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

PEERING_CRDS = Path(__file__).resolve().parents[2] / "charts" / "unbusy" / "crds" / "kopf.dev_peerings.yaml"
LIFETIME_S = 10  # --peering-lifetime of both replicas (the chart's default is 60)
TAKEOVER_BOUND_S = LIFETIME_S + 5


def test_standby_takes_over_within_the_peering_lifetime(testbed, fleet_nodes, namespace, operators):
    testbed.kubectl("apply", "--server-side", "-f", str(PEERING_CRDS))
    testbed.wait("--for", "condition=Established", "crd/kopfpeerings.kopf.dev")
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "unbusy"}}
    testbed.apply(peering, namespace)
    peered = ("--peering", "unbusy", "--peering-lifetime", str(LIFETIME_S))
    active = operators(*peered, "--priority", "100").start()
    standby = operators(*peered, "--priority", "10").start()

    def peers() -> dict[int, dict]:
        """priority -> record of each replica in the peering object."""
        records = (testbed.kubectl_json("get", "kopfpeering", "unbusy", "-n", namespace).get("status") or {}).values()
        return {r["priority"]: r for r in records}

    wait_for(lambda: set(peers()) == {100, 10}, 30, every=0.5)  # the standby starts paused, and stays so
    cluster = Cluster.connect(testbed.kubeconfig, namespace)

    def service_ready(name: str) -> bool:
        return any(s["metadata"]["name"] == name and ready(s) for s in cluster.services())

    cluster.apply([inference_service("before", namespace, {})])
    wait_for(lambda: service_ready("before"), 60, every=0.5)
    # The paused standby wrote nothing: the active one reconciled it.
    assert "/before: applied" in active.log.read_text() and "/before:" not in standby.log.read_text()

    active.kill()
    killed = time.monotonic()
    cluster.apply([inference_service("after", namespace, {})])
    wait_for(
        lambda: any(d["metadata"]["name"] == "after-main" for d in cluster.items("apps/v1", "Deployment")), 60, 0.2
    )
    takeover = time.monotonic() - killed
    wait_for(lambda: service_ready("after"), 60, every=0.5)
    print(f"standby took over {takeover:.1f} s after the active replica's SIGKILL (lifetime {LIFETIME_S} s)")
    assert takeover <= TAKEOVER_BOUND_S
    assert "Resuming operations after the pause" in standby.log.read_text()
    wait_for(lambda: set(peers()) == {10}, 30, every=0.5)  # the dead one's record cleaned away
