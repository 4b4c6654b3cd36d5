"""docs/api-reference.md: generated from the models, in sync with them, every field in it."""

from __future__ import annotations

import re

from builders import ROOT

from unbusy.api.crd import custom_resource_definition
from unbusy.api.reference import reference

REFERENCE = ROOT / "docs" / "api-reference.md"


def test_docs_folder_matches_the_models():
    assert REFERENCE.read_text() == reference(), "docs/api-reference.md is stale: run `make docs`"


def _fields(node: dict, path: str):
    for name, prop in node.get("properties", {}).items():
        yield f"{path}.{name}", name, prop
        yield from _fields(prop.get("items", prop.get("additionalProperties", prop)) or prop, f"{path}.{name}")


def test_every_field_rule_and_column_is_in_it():
    text = reference()
    schema = custom_resource_definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    rows = set(re.findall(r"^\| `([A-Za-z0-9]+)`", text, re.MULTILINE))
    for root in ("spec", "status"):
        missing = [path for path, name, _ in _fields(schema[root], root) if name not in rows]
        assert not missing, f"no row for {missing}"
    rules = [r["message"] for r in _rules(schema["spec"])]
    assert rules and all(" ".join(message.split()) in text for message in rules)
    assert "the weights must add up to 100" in text
    assert "| LAST-SCALING | 1 | `.status.lastScaling.reason` |" in text


def _rules(node: dict):
    yield from node.get("x-kubernetes-validations", [])
    for prop in node.get("properties", {}).values():
        yield from _rules(prop.get("items", prop))


def test_a_row_says_type_default_and_bounds():
    text = reference()
    assert (
        "| `maxBatchSize` | integer | `8` | 0 ≤ value ≤ 4096 | Largest batch Triton may form; 0 disables batching. |"
        in text
    )
    assert re.search(
        r"^\| `mode` \| string \| `operator` \| `operator` \\\| `hpa` \\\| `keda` \\\| `none` \|", text, re.M
    )
    # A type used in several places is listed once and linked: a variant's config is the model's.
    assert text.count("### spec.model.config\n") == 1 and "### spec.variants[].config\n" not in text
