"""The generated CRD: in sync with the models, structural, with CEL rules, subresources and columns."""

from __future__ import annotations

from pathlib import Path

import yaml

from unbusy.api.crd import custom_resource_definition

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "serving.unbusy.dev_inferenceservices.yaml"


def version() -> dict:
    return custom_resource_definition()["spec"]["versions"][0]


def spec_schema() -> dict:
    return version()["schema"]["openAPIV3Schema"]["properties"]["spec"]


def test_crds_folder_matches_the_models():
    committed = yaml.safe_load(CRD_FILE.read_text())
    assert committed == custom_resource_definition(), "crds/ is stale: run `make crds`"


def test_names():
    names = custom_resource_definition()["spec"]["names"]
    assert names["shortNames"] == ["infsvc"] and names["categories"] == ["unbusy"]
    assert custom_resource_definition()["metadata"]["name"] == "inferenceservices.serving.unbusy.dev"


def _walk(schema: dict, path: str = "spec"):
    yield path, schema
    for name, prop in schema.get("properties", {}).items():
        yield from _walk(prop, f"{path}.{name}")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


def test_schema_is_structural():
    for path, node in _walk(spec_schema()):
        assert "type" in node, f"{path} has no type"
        assert not {"$ref", "anyOf", "allOf", "title"} & node.keys(), f"{path} is not structural"


def test_every_field_has_a_description_for_kubectl_explain():
    """`kubectl explain inferenceservice.<path>` prints the field's description: the whole
    object (apiVersion, kind, spec, status) and every field under it has one."""
    root = version()["schema"]["openAPIV3Schema"]
    undocumented = [
        f"{path}.{name}"
        for path, node in _walk(root, "inferenceservice")
        for name, prop in node.get("properties", {}).items()
        if not prop.get("description", "").strip()
    ]
    # The API server describes metadata itself (ObjectMeta) and rejects a CRD that does.
    undocumented.remove("inferenceservice.metadata")
    assert root["description"] and not undocumented, f"no description: {undocumented}"


def test_defaults_enums_and_bounds_are_in_the_schema():
    props = spec_schema()["properties"]
    rollout = props["rollout"]["properties"]
    assert rollout["maxSurge"]["default"] == "25%" and rollout["maxUnavailable"]["default"] == "10%"
    assert props["autoscaling"]["properties"]["mode"]["enum"] == ["operator", "hpa", "keda", "none"]
    provider = props["routing"]["properties"]["provider"]
    assert provider["enum"] == ["gateway", "nginx"] and "default" not in provider  # inferred from routing.gateway
    assert props["variants"]["items"]["properties"]["weight"]["maximum"] == 100
    # A section left out still gets its nested defaults from the API server.
    assert props["alerts"]["default"]["p99LatencySeconds"] == {
        "enabled": True,
        "threshold": 1.0,
        "for": "5m",
        "severity": "critical",
    }


def _rules(node: dict) -> list[str]:
    return [rule["rule"] for rule in node.get("x-kubernetes-validations", [])]


def test_cel_rules_for_the_cross_field_checks():
    props = spec_schema()["properties"]
    spec_rules = " ".join(_rules(spec_schema()))
    assert ".sum() == 100" in spec_rules
    assert "exists_one" in spec_rules
    assert "'nginx'" in spec_rules and "size() <= 2" in spec_rules
    assert "self.minReplicas <= self.maxReplicas" in _rules(props["autoscaling"])
    assert "self.minReplicas <= self.maxReplicas" in " ".join(_rules(props["variants"]["items"]))
    assert "has(self.count) != has(self.migProfile)" in _rules(props["gpu"])
    assert "self.autoscaling.demand.source in ['nginx', 'envoy-gateway', 'istio', 'traefik']" in spec_rules
    demand = props["autoscaling"]["properties"]["demand"]
    assert "self.source == 'promql' ? has(self.query)" in " ".join(_rules(demand))
    sources = ["auto", "nginx", "envoy-gateway", "istio", "traefik", "promql", "triton"]
    assert demand["properties"]["source"]["enum"] == sources
    model = props["model"]
    assert "self.llm.engine == self.config.backend" in " ".join(_rules(model))
    llm = model["properties"]["llm"]
    assert llm["properties"]["engine"]["enum"] == ["vllm", "tensorrtllm", "python"]
    assert sorted(llm["required"]) == ["capacity", "slo"] and llm["properties"]["slo"]["required"] == ["ttftP99Ms"]
    assert llm["properties"]["kvCacheTokens"]["minimum"] == 256


def test_lists_and_strings_are_bounded_for_cel_cost():
    variants = spec_schema()["properties"]["variants"]
    assert variants["maxItems"] <= 8
    assert variants["items"]["properties"]["name"]["maxLength"] <= 63


def test_subresources_and_columns():
    v = version()
    assert v["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert v["subresources"]["status"] == {}
    columns = [(c["name"], c.get("priority", 0)) for c in v["additionalPrinterColumns"]]
    # What moves in `kubectl get`; what is set once and the last decision's reason with -o wide.
    assert columns == [
        ("Ready", 0),
        ("Replicas", 0),
        ("Weights", 0),
        ("Age", 0),
        ("GPU", 1),
        ("URL", 1),
        ("Rollout", 1),
        ("Scaled", 1),
        ("Last-Scaling", 1),
    ]
