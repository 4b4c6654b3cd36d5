"""Server-side apply of an InferenceService's children, and pruning of the ones no longer wanted."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from kubernetes.dynamic.exceptions import DynamicApiError

from unbusy.kube.client import CountingClient, plain
from unbusy.render.meta import children_selector

FIELD_MANAGER = "unbusy"

# Every kind render may produce, in apply order.
CHILD_KINDS = [
    ("v1", "ConfigMap"),
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("networking.k8s.io/v1", "Ingress"),
    ("inference.networking.k8s.io/v1", "InferencePool"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
]


@dataclass(frozen=True)
class Owner:
    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    @property
    def selector(self) -> str:
        return children_selector(self.name)


@dataclass
class Outcome:
    applied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _key(kind: str, name: str) -> str:
    return f"{kind}/{name}"


def contains(live: Any, desired: Any) -> bool:
    """Whether every field we set holds in the live object (the server may add more, and
    drops empty lists and maps we send, as Kubernetes' omitempty does)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            contains(live[k], v) if k in live else v in ({}, [], None) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(map(contains, live, desired))
    return live == desired or str(live) == str(desired)


def owned_by(obj: dict[str, Any], owner: Owner) -> bool:
    return any(ref.get("uid") == owner.uid for ref in obj["metadata"].get("ownerReferences") or [])


def _missing_api(api_version: str, kind: str) -> str:
    return (
        f"{kind}: the {api_version} API is not served by this cluster; install its CRDs "
        "(Prometheus Operator for monitors and rules, Gateway API for HTTPRoute, its Inference Extension for "
        "InferencePool) or turn the feature off in the spec"
    )


def reason(error: DynamicApiError) -> str:
    """The API server's own message (it names the field), not the HTTP status line."""
    try:
        return json.loads(error.body).get("message", str(error.reason))
    except (TypeError, ValueError):
        return str(error.reason)


# Characters YAML does not allow raw (C1 controls, DEL, non-characters); JSON leaves them raw.
_NOT_YAML_PRINTABLE = re.compile("[\x7f-\x84\x86-\x9f\ufffe\uffff]")


def apply_patch(manifest: dict[str, Any]) -> bytes:
    """The body of a server-side apply, which the API server reads as YAML: JSON that this YAML parser
    takes whatever text the spec holds. The client's own JSON escapes a character beyond the BMP (an
    emoji in a Triton arg) as a surrogate pair, which it refuses ("found invalid Unicode character
    escape code"); so characters go as themselves, and those YAML forbids raw (DEL, C1 controls) as
    escapes, which both read alike."""
    text = json.dumps(manifest, ensure_ascii=False)
    return _NOT_YAML_PRINTABLE.sub(lambda char: f"\\u{ord(char.group()):04x}", text).encode()


class Children:
    """The children of one InferenceService, as the API server has them."""

    def __init__(self, api: CountingClient, owner: Owner):
        self.api = api
        self.owner = owner
        self.live: dict[str, dict[str, Any]] = {}
        self.served: dict[tuple[str, str], Any] = {}

    def load(self) -> None:
        """List every child kind once: one LIST per kind, instead of one GET per child."""
        for api_version, kind in CHILD_KINDS:
            resource = self.api.served(api_version, kind)
            if resource is None:
                continue  # an optional API (CRD) this cluster does not have
            self.served[(api_version, kind)] = resource
            listing = self.api.get(
                resource, namespace=self.owner.namespace, label_selector=self.owner.selector, serializer=plain
            )
            for item in listing["items"]:
                # List items carry no apiVersion/kind of their own.
                self.live[_key(kind, item["metadata"]["name"])] = {"apiVersion": api_version, "kind": kind, **item}

    def apply(self, manifests: list[dict[str, Any]], outcome: Outcome) -> None:
        for manifest in manifests:
            key = _key(manifest["kind"], manifest["metadata"]["name"])
            desired = {**manifest, "metadata": {**manifest["metadata"], "ownerReferences": [self.owner.reference()]}}
            live = self.live.get(key)
            if live is not None and contains(live, desired):
                outcome.unchanged.append(key)
                continue
            resource = self.served.get((manifest["apiVersion"], manifest["kind"]))
            if resource is None:
                outcome.errors.append(_missing_api(manifest["apiVersion"], manifest["kind"]))
                continue
            if live is not None and not owned_by(live, self.owner):
                outcome.errors.append(f"{key} exists and is not owned by this InferenceService; left alone")
                continue
            try:
                self.api.server_side_apply(
                    resource,
                    body=apply_patch(desired),
                    name=desired["metadata"]["name"],
                    namespace=desired["metadata"]["namespace"],
                    field_manager=FIELD_MANAGER,
                    force_conflicts=True,
                    serializer=plain,
                )
                outcome.applied.append(key)
            except DynamicApiError as error:
                if error.status and error.status >= 500:
                    raise
                outcome.errors.append(f"{key}: {reason(error)}")

    def prune(self, manifests: list[dict[str, Any]], outcome: Outcome) -> None:
        """Delete children the spec no longer asks for; only ones this InferenceService owns."""
        wanted = {_key(m["kind"], m["metadata"]["name"]) for m in manifests}
        for key, live in sorted(self.live.items()):
            if key in wanted or not owned_by(live, self.owner):
                continue
            resource = self.served[(live["apiVersion"], live["kind"])]
            try:
                self.api.delete(resource, name=live["metadata"]["name"], namespace=self.owner.namespace)
                outcome.pruned.append(key)
            except DynamicApiError as error:
                if error.status != 404:
                    outcome.errors.append(f"{key}: could not prune: {reason(error)}")


def reconcile(api: CountingClient, owner: Owner, manifests: list[dict[str, Any]]) -> Outcome:
    children = Children(api, owner)
    children.load()
    outcome = Outcome()
    children.apply(manifests, outcome)
    children.prune(manifests, outcome)
    return outcome
