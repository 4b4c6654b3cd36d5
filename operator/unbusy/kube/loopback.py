"""The testbed's EndpointSlices for pods on loopback addresses: what a proxy in front reads.

The testbed's kwok pods have addresses on 127.0.0.0/8 (testbed/nodes.yaml), so that a proxy's
packets to them stay on this machine. The API server refuses such an address in an IPv4
EndpointSlice ("may not be in the loopback range"), so the controller manager's slice of every
Service stays empty. This writes, for one Service, the slice it would have written, typed FQDN:
the API server takes a dotted quad as a name, and a proxy (Traefik's Gateway API provider reads
any slice labelled with the Service's name) dials it as written. Only loopback addresses go in:
the slice can never point a proxy off this machine. Its owner is the Service, so it goes with it.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from kubernetes.dynamic.exceptions import NotFoundError

from unbusy.kube.client import CountingClient, plain
from unbusy.kube.observe import _items, _pod
from unbusy.render.meta import children_selector, label_selector

SERVICE_NAME = "kubernetes.io/service-name"  # the label every EndpointSlice of a Service carries
SLICE_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
PUBLISHER = "testbed.unbusy.dev"


def _loopback(ip: str | None) -> bool:
    try:
        return ip is not None and ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def _ports(service: dict[str, Any], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Service's ports as the slice names them, a named targetPort resolved on the pods' containers."""
    named = {
        p["name"]: p["containerPort"] for pod in pods for c in pod["spec"]["containers"] for p in c.get("ports", [])
    }
    ports = []
    for port in service["spec"].get("ports", []):
        target = port.get("targetPort", port["port"])
        number = named.get(target) if isinstance(target, str) else target
        if number is not None:
            ports.append({"name": port.get("name", ""), "port": number, "protocol": port.get("protocol", "TCP")})
    return ports


def loopback_slice(service: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any]:
    """The FQDN EndpointSlice of `service` for its selected `pods` that are Ready and on loopback."""
    meta = service["metadata"]
    ready = [p for p in pods if _pod(p).ready and not _pod(p).deleting and _loopback(p.get("status", {}).get("podIP"))]
    endpoints = [
        {
            "addresses": [p["status"]["podIP"]],
            "conditions": {"ready": True},
            "nodeName": p["spec"].get("nodeName"),
            "targetRef": {"kind": "Pod", "name": p["metadata"]["name"], "namespace": meta["namespace"]},
        }
        for p in sorted(ready, key=lambda p: p["metadata"]["name"])
    ]
    owner = {"apiVersion": "v1", "kind": "Service", "name": meta["name"], "uid": meta["uid"], "controller": True}
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{meta['name']}-loopback",
            "namespace": meta["namespace"],
            "labels": {SERVICE_NAME: meta["name"], SLICE_MANAGED_BY: PUBLISHER},
            "ownerReferences": [owner],
        },
        "addressType": "FQDN",
        "ports": _ports(service, ready),
        "endpoints": endpoints,
    }


def publish_loopback_endpoints(api: CountingClient, namespace: str, name: str) -> None:
    """The loopback EndpointSlice of each Service of the InferenceService `name`, written where it changed."""
    slices = api.resources.get(api_version="discovery.k8s.io/v1", kind="EndpointSlice")
    for service in _items(api, "v1", "Service", namespace, children_selector(name)):
        selector = service["spec"].get("selector")
        if not selector:
            continue
        pods = list(_items(api, "v1", "Pod", namespace, label_selector(selector)))
        wanted = loopback_slice(service, pods)
        try:
            current = api.get(slices, name=wanted["metadata"]["name"], namespace=namespace, serializer=plain)
        except NotFoundError:
            api.create(slices, body=wanted, namespace=namespace)
            continue
        if (current.get("endpoints") or [], current.get("ports") or []) != (wanted["endpoints"], wanted["ports"]):
            wanted["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            api.replace(slices, body=wanted, namespace=namespace)
