"""Generate the InferenceService CustomResourceDefinition from the pydantic models."""

from __future__ import annotations

from typing import Any

from unbusy.api.base import CATEGORY, GROUP, KIND, PLURAL, SHORT_NAME, SINGULAR, VERSION
from unbusy.api.spec import InferenceServiceSpec
from unbusy.api.status import InferenceServiceStatus

# Keywords a structural schema keeps; pydantic's titles and the like are dropped.
_KEPT = {
    "type",
    "description",
    "default",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "format",
    "x-kubernetes-validations",
    "x-kubernetes-preserve-unknown-fields",
}

# `kubectl get infsvc` keeps to readiness, replicas and weights so that a line fits 80 columns;
# -o wide adds what is set once (GPU, URL), a canary rollout's step and the last scaling
# decision, whose reason, a sentence, comes last.
PRINTER_COLUMNS = [
    {
        "name": "Ready",
        "type": "string",
        "description": "the Ready condition",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Replicas", "type": "string", "description": "ready/desired", "jsonPath": ".status.replicaSummary"},
    {"name": "Weights", "type": "string", "description": "traffic split", "jsonPath": ".status.weights"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "GPU",
        "type": "string",
        "priority": 1,
        "description": "GPUs or MIG slice per replica",
        "jsonPath": ".status.gpu.summary",
    },
    {
        "name": "URL",
        "type": "string",
        "priority": 1,
        "description": "where clients reach it",
        "jsonPath": ".status.url",
    },
    {
        "name": "Rollout",
        "type": "string",
        "priority": 1,
        "description": "canary rollout phase and step",
        "jsonPath": ".status.rollout",
    },
    {
        "name": "Scaled",
        "type": "date",
        "priority": 1,
        "description": "time since the last scaling decision",
        "jsonPath": ".status.lastScaling.time",
    },
    {
        "name": "Last-Scaling",
        "type": "string",
        "priority": 1,
        "description": "the last scaling decision",
        "jsonPath": ".status.lastScaling.reason",
    },
]

# Kubernetes' own words for the fields every object has (`kubectl explain` shows them); the API
# server publishes ObjectMeta's for metadata and forbids a CRD to say more about it.
API_VERSION_TEXT = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should convert "
    "recognized schemas to the latest internal value, and may reject unrecognized values."
)
KIND_TEXT = (
    "Kind is a string value representing the REST resource this object represents. Servers may infer this "
    "from the endpoint the client submits requests to. Cannot be updated. In CamelCase."
)


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline $refs, fold Optional into plain types and keep only structural keywords."""
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        # Optional[X] arrives as anyOf [X, null]: the field is simply omitted when unset.
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"unsupported union in schema: {node}")
        rest = {k: v for k, v in node.items() if k not in ("anyOf", "default") or (k == "default" and v is not None)}
        return _structural({**options[0], **rest}, defs)
    if "const" in node:
        node = {**{k: v for k, v in node.items() if k != "const"}, "enum": [node["const"]]}

    out = {k: v for k, v in node.items() if k in _KEPT}
    # pydantic's gt/lt are JSON Schema 2020's numeric bounds; OpenAPI v3.0 (the CRD's) marks the
    # bound itself exclusive.
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if exclusive in node:
            out |= {bound: node[exclusive], exclusive: True}
    if node.get("type") == "object" or "properties" in node:
        out["type"] = "object"
        if "properties" in node:
            out["properties"] = {name: _structural(prop, defs) for name, prop in node["properties"].items()}
            if node.get("required"):
                out["required"] = sorted(node["required"])
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = _structural(extra, defs)
    elif node.get("type") == "array":
        out["items"] = _structural(node["items"], defs)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def openapi_schema(model: type) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(raw, raw.get("$defs", {}))


def custom_resource_definition() -> dict[str, Any]:
    spec_schema = openapi_schema(InferenceServiceSpec)
    status_schema = openapi_schema(InferenceServiceStatus)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": [SHORT_NAME],
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A Triton model served on GPUs, kept out of 'server busy' under load.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": API_VERSION_TEXT},
                                "kind": {"type": "string", "description": KIND_TEXT},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }
