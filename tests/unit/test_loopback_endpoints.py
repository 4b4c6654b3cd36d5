"""kube/loopback.py: the EndpointSlice the testbed's proxy reads for pods on loopback addresses."""

from __future__ import annotations

from unbusy.kube.loopback import PUBLISHER, SERVICE_NAME, loopback_slice

SERVICE = {
    "metadata": {"name": "resnet-main", "namespace": "ml", "uid": "u-1"},
    "spec": {
        "selector": {"app": "resnet"},
        "ports": [
            {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"},
            {"name": "metrics", "port": 8002, "targetPort": 9102},
        ],
    },
}


def pod(name: str, ip: str | None, ready: bool = True, deleting: bool = False) -> dict:
    metadata = {"name": name, "namespace": "ml"} | ({"deletionTimestamp": "2026-12-07T00:00:00Z"} if deleting else {})
    return {
        "metadata": metadata,
        "spec": {
            "nodeName": "kwok-h100-0",
            "containers": [{"name": "triton", "ports": [{"name": "http", "containerPort": 8000}]}],
        },
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_only_ready_live_pods_on_loopback_are_endpoints_and_named_ports_resolve():
    pods = [
        pod("b", "127.10.0.2"),
        pod("a", "127.10.0.1"),
        pod("starting", "127.10.0.3", ready=False),
        pod("leaving", "127.10.0.4", deleting=True),
        pod("elsewhere", "10.0.0.7"),  # never a target: it would lead off this machine
        pod("no-ip", None),
    ]
    slice_ = loopback_slice(SERVICE, pods)
    assert [e["addresses"] for e in slice_["endpoints"]] == [["127.10.0.1"], ["127.10.0.2"]]
    assert all(e["conditions"] == {"ready": True} for e in slice_["endpoints"])
    assert slice_["addressType"] == "FQDN"  # the API server refuses 127/8 in an IPv4 slice
    assert slice_["ports"] == [
        {"name": "http", "port": 8000, "protocol": "TCP"},
        {"name": "metrics", "port": 9102, "protocol": "TCP"},
    ]
    assert slice_["metadata"]["labels"] == {
        SERVICE_NAME: "resnet-main",
        "endpointslice.kubernetes.io/managed-by": PUBLISHER,
    }
    assert slice_["metadata"]["ownerReferences"][0]["uid"] == "u-1"  # goes with its Service
