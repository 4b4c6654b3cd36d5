"""Status patches and Events on the InferenceService."""

from __future__ import annotations

from typing import Any

from kubernetes.dynamic.exceptions import NotFoundError

from unbusy import timestamps
from unbusy.api import API_VERSION, KIND
from unbusy.kube.client import CountingClient, plain


def patch_status(
    api: CountingClient, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
) -> dict[str, Any]:
    """A merge patch of the status; with resource_version, only while the object is still at it
    (else the API server answers 409 and this raises ConflictError)."""
    resource = api.resources.get(api_version=API_VERSION, kind=KIND)
    body: dict[str, Any] = {"status": status}
    if resource_version is not None:
        body["metadata"] = {"resourceVersion": resource_version}
    return api.patch(
        resource.status,
        name=name,
        namespace=namespace,
        body=body,
        content_type="application/merge-patch+json",
        serializer=plain,
    )


def patch_inference_service(api: CountingClient, body: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A merge patch of the InferenceService's metadata or spec, only while it is still the version
    `body` is (else ConflictError); returns the object as patched."""
    resource = api.resources.get(api_version=API_VERSION, kind=KIND)
    meta = body["metadata"]
    patch = {**patch, "metadata": {**patch.get("metadata", {}), "resourceVersion": meta["resourceVersion"]}}
    return api.patch(
        resource,
        name=meta["name"],
        namespace=meta["namespace"],
        body=patch,
        content_type="application/merge-patch+json",
        serializer=plain,
    )


def publish_status(
    api: CountingClient, body: dict[str, Any], status: dict[str, Any], *, guarded: bool = False
) -> dict[str, Any] | None:
    """Patch the status only when it differs: a resync with nothing new writes nothing.
    Returns the object as patched, None when nothing was written.

    guarded: only while the object is still the version `body` is, so a status computed from
    older reads can never overwrite one computed from newer reads (ConflictError instead).
    """
    current = body.get("status") or {}
    if current | status == current:
        return None
    meta = body["metadata"]
    version = meta["resourceVersion"] if guarded else None
    return patch_status(api, meta["namespace"], meta["name"], status, version)


def event(api: CountingClient, involved: dict[str, Any], kind: str, reason: str, message: str) -> None:
    """A core/v1 Event on the InferenceService (`kubectl describe` shows it)."""
    now = timestamps.now()
    meta = involved["metadata"]
    events = api.resources.get(api_version="v1", kind="Event")
    body = {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "type": kind,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "unbusy"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "reportingComponent": "unbusy",
        "reportingInstance": "unbusy",
    }
    api.create(events, body=body, namespace=meta["namespace"], serializer=plain)


def get_inference_service(api: CountingClient, namespace: str, name: str) -> dict[str, Any] | None:
    resource = api.resources.get(api_version=API_VERSION, kind=KIND)
    try:
        return api.get(resource, name=name, namespace=namespace, serializer=plain)
    except NotFoundError:
        return None
