"""The testbed itself: a real control plane whose fake GPU nodes schedule like real ones."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Testbed

pytestmark = pytest.mark.integration

MIG_NODE = "kwok-a100-mig-0"
MIG_RESOURCE = "nvidia.com/mig-1g.10gb"
MIG_SLICES = 7
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def mig_deployment(name: str, replicas: int) -> dict:
    """A Deployment whose pods each ask for one 1g.10gb MIG slice, as a Triton pod would."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "tolerations": [GPU_TOLERATION],
                    "containers": [
                        {
                            "name": "triton",
                            "image": "nvcr.io/nvidia/tritonserver:24.08-py3",
                            "resources": {
                                "requests": {"cpu": "1", "memory": "4Gi"},
                                "limits": {MIG_RESOURCE: "1"},
                            },
                        }
                    ],
                },
            },
        },
    }


def pods(testbed: Testbed, namespace: str, selector: str) -> list[dict]:
    return testbed.kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"]


def condition(pod: dict, kind: str) -> dict:
    return next((c for c in pod["status"].get("conditions", []) if c["type"] == kind), {})


def is_ready(pod: dict) -> bool:
    return pod["status"].get("phase") == "Running" and condition(pod, "Ready").get("status") == "True"


def wait_until(predicate, timeout: float = 60, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def test_server_is_the_pinned_kubernetes(testbed: Testbed) -> None:
    version = testbed.kubectl_json("version")["serverVersion"]["gitVersion"]
    versions = (Path(__file__).parents[2] / "testbed/versions.env").read_text()
    assert f"K8S_VERSION={version}" in versions


def test_fake_gpu_nodes_exist(testbed: Testbed) -> None:
    nodes = {n["metadata"]["name"]: n for n in testbed.kubectl_json("get", "nodes")["items"]}

    whole_gpu = [n for n in nodes.values() if n["status"]["allocatable"].get("nvidia.com/gpu") == "8"]
    assert len(whole_gpu) == 2
    assert {n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in whole_gpu} == {
        "zone-a",
        "zone-b",
    }

    mig = nodes[MIG_NODE]
    assert mig["status"]["allocatable"][MIG_RESOURCE] == str(MIG_SLICES)
    assert mig["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert mig["metadata"]["labels"]["nvidia.com/mig.strategy"] == "mixed"

    for node in [*whole_gpu, mig]:
        assert {
            "key": "nvidia.com/gpu",
            "value": "present",
            "effect": "NoSchedule",
        } in node["spec"]["taints"]
    for node in nodes.values():
        assert condition(node, "Ready").get("status") == "True", node["metadata"]["name"]


def test_rbac_is_enforced(testbed: Testbed) -> None:
    as_default_sa = ["--as", "system:serviceaccount:default:default"]
    denied = testbed.kubectl("auth", "can-i", "list", "pods", *as_default_sa, check=False)
    assert denied.stdout.strip() == "no"
    allowed = testbed.kubectl("auth", "can-i", "list", "pods")
    assert allowed.stdout.strip() == "yes"


def test_mig_pod_becomes_running_and_ready(testbed: Testbed, namespace: str) -> None:
    testbed.apply(mig_deployment("mig", replicas=1), namespace=namespace)
    testbed.wait("-n", namespace, "--for=condition=Available", "deployment/mig")

    [pod] = pods(testbed, namespace, "app=mig")
    assert pod["spec"]["nodeName"] == MIG_NODE
    assert is_ready(pod)
    # On the node's loopback /24 (nodes.yaml): a proxy's packets to it stay on this machine.
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network("127.10.2.0/24")


def test_eighth_mig_slice_stays_pending(testbed: Testbed, namespace: str) -> None:
    testbed.apply(mig_deployment("mig", replicas=MIG_SLICES + 1), namespace=namespace)

    def seven_ready_one_unschedulable() -> list[dict] | None:
        current = pods(testbed, namespace, "app=mig")
        ready = [p for p in current if is_ready(p)]
        pending = [
            p
            for p in current
            if p["status"].get("phase") == "Pending" and condition(p, "PodScheduled").get("reason") == "Unschedulable"
        ]
        return pending if len(ready) == MIG_SLICES and len(pending) == 1 else None

    [pending] = wait_until(seven_ready_one_unschedulable, what="7 Ready pods and 1 Unschedulable")
    assert MIG_RESOURCE in condition(pending, "PodScheduled")["message"]

    events = testbed.kubectl_json(
        "get", "events", "-n", namespace,
        "--field-selector", f"involvedObject.name={pending['metadata']['name']}",
    )["items"]  # fmt: skip
    assert any(e["reason"] == "FailedScheduling" for e in events)


def test_deleting_deployment_garbage_collects_pods(testbed: Testbed, namespace: str) -> None:
    testbed.apply(mig_deployment("gc", replicas=2), namespace=namespace)
    testbed.wait("-n", namespace, "--for=condition=Available", "deployment/gc")
    assert len(pods(testbed, namespace, "app=gc")) == 2

    # Background propagation: the API server deletes only the Deployment; the
    # controller manager's garbage collector must remove its ReplicaSet and pods.
    testbed.kubectl("delete", "-n", namespace, "deployment/gc", "--cascade=background")
    wait_until(
        lambda: (
            not pods(testbed, namespace, "app=gc")
            and not testbed.kubectl_json("get", "replicasets", "-n", namespace)["items"]
        ),
        what="ReplicaSet and pods garbage-collected",
    )
