"""What a platform engineer reads with kubectl, from a real API server: `kubectl explain` text
for every field of an InferenceService, and `kubectl get infsvc` lines that fit 80 columns."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from polling import eventually
from unbusy.api.crd import custom_resource_definition

if TYPE_CHECKING:
    from conftest import Testbed

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TERMINAL_COLUMNS = 80
# metadata is the one field the CRD leaves undescribed: the API server describes it as ObjectMeta.
OBJECT_META = "Standard object's metadata."


def objects(schema: dict, path: str = "inferenceservice") -> Iterator[tuple[str, dict]]:
    """(kubectl explain path, schema) of every object with fields; explain looks through arrays."""
    node = schema.get("items", schema)
    if node.get("properties"):
        yield path, node
        for name, prop in node["properties"].items():
            yield from objects(prop, f"{path}.{name}")


def words(text: str) -> str:
    return " ".join(text.split())


def test_explain_prints_every_fields_description(testbed: Testbed, crd: None) -> None:
    schema = custom_resource_definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    # The API server publishes a CRD's OpenAPI a moment after it is established (or changed).
    spec_text = words(schema["properties"]["spec"]["description"])
    eventually(lambda: spec_text in words(testbed.kubectl("explain", "inferenceservice", check=False).stdout))
    missing = []
    for path, node in objects(schema):
        # kubectl explain prints the object's own description and each field's under FIELDS.
        shown = words(testbed.kubectl("explain", path).stdout)
        missing += [
            f"{path}.{name}"
            for name, prop in node["properties"].items()
            if words(prop.get("description", OBJECT_META)) not in shown
        ]
    assert not missing, f"kubectl explain does not show the description of {missing}"


def example(file: str) -> dict:
    [isvc] = [doc for doc in yaml.safe_load_all((EXAMPLES / file).read_text()) if doc["kind"] == "InferenceService"]
    isvc["metadata"].pop("namespace", None)  # into the test's own
    return isvc


# What the operator writes into status for each example: ready/desired, weights, GPU, URL,
# the last scaling decision (README's "What `kubectl get infsvc` shows").
STATUS = {
    "canary-nginx.yaml": ("True", "2/2", "stable=90,canary=10", "1x H100-80GB", "http://bert.example.com/"),
    "fallback-gateway.yaml": (
        "False",
        "0/3",
        "large=80,candidate=20,fallback=0",
        "2x H100-80GB",
        "http://chat.example.com/",
    ),
    "llm-mig-auto.yaml": ("True", "1/1", "main=100", "mig-1g.10gb", "http://llm.example.com/"),
    "resnet50-hpa.yaml": ("True", "12/12", "main=100", "1x H100-80GB", "https://resnet.example.com/"),
}
REASON = "demand 412 rps / (capacity 60 rps x 80%) = 9 replicas: 3 -> 7; step limit +4 or +100% per 15s"


@pytest.fixture
def listed(testbed: Testbed, crd: None, namespace: str) -> str:
    for file, (ready, replicas, weights, gpu, url) in STATUS.items():
        isvc = example(file)
        testbed.apply(isvc, namespace)
        status = {
            "conditions": [
                {"type": "Ready", "status": ready, "reason": "Test", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ],
            "replicaSummary": replicas,
            "weights": weights,
            "gpu": {"resourceName": "nvidia.com/gpu", "summary": gpu},
            "url": url,
            "lastScaling": {
                "time": "2026-01-01T00:00:00Z",
                "variant": "main",
                "fromReplicas": 3,
                "toReplicas": 7,
                "reason": REASON,
            },
        }
        name = isvc["metadata"]["name"]
        patch = json.dumps({"status": status})
        testbed.kubectl("patch", "infsvc", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", patch)
    return namespace


def test_get_fits_80_columns(testbed: Testbed, listed: str) -> None:
    lines = testbed.kubectl("get", "infsvc", "-n", listed).stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "REPLICAS", "WEIGHTS", "AGE"]
    assert len(lines) == 1 + len(STATUS)
    too_wide = [line for line in lines if len(line) > TERMINAL_COLUMNS]
    assert not too_wide, f"wider than {TERMINAL_COLUMNS} columns:\n" + "\n".join(too_wide)
    assert any(line.split()[1:4] == ["False", "0/3", "large=80,candidate=20,fallback=0"] for line in lines)


def test_get_wide_adds_gpu_url_rollout_and_the_last_scaling_decision_last(testbed: Testbed, listed: str) -> None:
    lines = testbed.kubectl("get", "infsvc", "-n", listed, "-o", "wide").stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "READY",
        "REPLICAS",
        "WEIGHTS",
        "AGE",
        "GPU",
        "URL",
        "ROLLOUT",
        "SCALED",
        "LAST-SCALING",
    ]
    mig = next(line for line in lines if line.startswith("llama-7b "))
    assert "mig-1g.10gb" in mig and "http://llm.example.com/" in mig and mig.endswith(REASON)
