"""The control plane under the operator: the API server and etcd SIGKILLed and restarted mid-
reconcile (the operator recovers on its own, never restarted), and a kwok node deleted under
running replicas (the status says so at once; they are rescheduled; the status says why some wait
meanwhile)."""

from __future__ import annotations

import time

import pytest

from fleet import Cluster, Fleet, check, inference_service, kwok_nodes, node_manifests, ready, restart, wait_for
from unbusy.render.meta import INFERENCE_SERVICE

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

SERVICES = 40
SEED = 12


def test_operator_recovers_from_control_plane_restarts_on_its_own(testbed, fleet_nodes, namespace, operators):
    """The API server SIGKILLed while the fleet is created, etcd while it is scaled."""
    operator = operators().start()
    pid = operator.process.pid
    fleet = Fleet(Cluster.connect(testbed.kubeconfig, namespace), SERVICES, SEED)
    for component in ("kube-apiserver", "etcd"):
        result = fleet.trial(operator, fault=lambda c=component: restart(c), converge_timeout=300)
        print(f"{component:<14} restarted: {result.line()}")
        assert result.problems == [], component
    assert operator.process.poll() is None and operator.process.pid == pid  # never restarted


# Two nodes of 4 GPUs under 3 services of 2 replicas: whichever node goes, the other has room
# for exactly 2 of the 6 replicas fewer than there are, until a replacement node joins.
SMALL = "unbusy.dev/chaos-small"
SMALL_NODES = ["chaos-small-0", "chaos-small-1"]
REPLACEMENT = "chaos-small-2"
WHY = "replicas cannot be scheduled: no node has a free nvidia.com/gpu"
# From the node's deletion until every service with replicas on it says so (Kubernetes deletes
# those pods only 40-60 s later, which is what the status used to wait for). Seen: see README.
EXPLAINED_WITHIN_S = 5


@pytest.fixture
def small_nodes(testbed):
    testbed.kubectl("apply", "-f", "-", input=node_manifests(kwok_nodes(SMALL_NODES, gpus=4, label=SMALL)))
    testbed.wait("--for", "condition=Ready", "node", "-l", f"{SMALL}=true")
    yield
    testbed.kubectl("delete", "node", "-l", f"{SMALL}=true", "--wait=false")


def test_node_deleted_replicas_rescheduled_and_the_status_says_why_some_wait(
    testbed, small_nodes, namespace, operators
):
    operators().start()
    cluster = Cluster.connect(testbed.kubeconfig, namespace)
    spec = {"replicas": 2, "scheduling": {"nodeSelector": {SMALL: "true"}}}
    manifests = [inference_service(f"s{i}", namespace, spec) for i in range(3)]
    cluster.apply(manifests)
    wait_for(lambda: all(ready(s) for s in cluster.services()) and len(cluster.services()) == 3, 90, 0.5)
    before = cluster.children()

    def placed() -> dict[str, list[str]]:
        """node -> pods bound to it (not being deleted); '' for those still Pending."""
        pods: dict[str, list[str]] = {}
        for pod in cluster.items("v1", "Pod"):
            if pod["metadata"].get("deletionTimestamp") is None:
                pods.setdefault(pod["spec"].get("nodeName") or "", []).append(pod["metadata"]["name"])
        return pods

    lost = max(SMALL_NODES, key=lambda n: len(placed().get(n, [])))
    on_lost: dict[str, int] = {}  # service -> its replicas on the node to be deleted
    for pod in cluster.items("v1", "Pod", field_selector=f"spec.nodeName={lost}"):
        service = pod["metadata"]["labels"][INFERENCE_SERVICE]
        on_lost[service] = on_lost.get(service, 0) + 1
    deleted = time.monotonic()
    testbed.kubectl("delete", "node", lost)

    def ready_message(service: dict) -> str:
        return next(c["message"] for c in service["status"]["conditions"] if c["type"] == "Ready")

    def lost_explained() -> dict[str, str] | None:
        """Ready message of each service with replicas on the deleted node, once each says how many
        (and the others still read Ready); None before."""
        says = {s["metadata"]["name"]: None if ready(s) else ready_message(s) for s in cluster.services()}
        gone = f"on node {lost}, which is gone; waiting for Kubernetes to reschedule them"
        wanted = {name: f"{on_lost[name]} of 2 replicas of main {gone}" if name in on_lost else None for name in says}
        return {name: says[name] for name in on_lost} if says == wanted else None

    explained = wait_for(lost_explained, 60, every=0.2)
    explained_after = time.monotonic() - deleted
    print(f"the status explained the lost replicas {explained_after:.1f} s after the node was deleted:")
    print("\n".join(f"{name}: {message}" for name, message in explained.items()))
    assert explained_after <= EXPLAINED_WITHIN_S

    # The pods on the lost node are garbage-collected; 4 run on the other node, 2 cannot be placed.
    (kept,) = set(SMALL_NODES) - {lost}

    def interim() -> list[str] | None:
        """The Ready messages of the services left waiting, once the replicas are rescheduled and the
        status has caught up; None before."""
        pods = placed()
        rescheduled = lost not in pods and len(pods.get(kept, [])) == 4 and len(pods.get("", [])) == 2
        messages = [ready_message(s) for s in cluster.services() if not ready(s)]
        explained = sum(int(m.split(" of ")[0].rsplit(" ", 1)[-1]) for m in messages if WHY in m)
        return messages if rescheduled and explained == 2 and len(messages) == sum(WHY in m for m in messages) else None

    messages = wait_for(interim, 150, every=1)
    print(f"replicas rescheduled {time.monotonic() - deleted:.1f} s after the node was deleted; the status says:")
    print("\n".join(messages))

    testbed.kubectl("apply", "-f", "-", input=node_manifests(kwok_nodes([REPLACEMENT], gpus=4, label=SMALL)))
    replaced = time.monotonic()
    wait_for(lambda: all(ready(s) for s in cluster.services()), 90, 0.5)
    print(f"every replica ready again {time.monotonic() - replaced:.1f} s after a replacement node joined")
    assert check(cluster, manifests, before) == []
    assert "" not in placed()
