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

PRINTER_COLUMNS = [
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Replicas", "type": "string", "description": "ready/desired", "jsonPath": ".status.replicaSummary"},
    {
        "name": "GPU",
        "type": "string",
        "description": "GPUs or MIG slice per replica",
        "jsonPath": ".status.gpu.summary",
    },
    {"name": "Weights", "type": "string", "description": "traffic split", "jsonPath": ".status.weights"},
    {"name": "URL", "type": "string", "jsonPath": ".status.url"},
    {
        "name": "Rollout",
        "type": "string",
        "description": "canary rollout phase and step",
        "jsonPath": ".status.rollout",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Last-Scaling",
        "type": "string",
        "priority": 1,
        "description": "the last scaling decision",
        "jsonPath": ".status.lastScaling.reason",
    },
]


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
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
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
