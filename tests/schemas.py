"""Validate rendered objects the way a real API server would: Kubernetes' own OpenAPI schema
for built-in kinds, and the CRDs' openAPIV3Schema for Prometheus Operator, Gateway API (and its Inference
Extension's InferencePool) and KEDA kinds."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource

from go_modules import pinned_versions

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES_VERSION = "1.37.0"  # the testbed's release; kubernetes-validate ships its schema
SHARED_CRDS = ROOT.parent / "shared" / "thirdparty-crds"
KEDA_CRD = "config/crd/bases/keda.sh_scaledobjects.yaml"
# CRDs committed as test data, each with its source and release noted at its top.
DATA_CRDS = ROOT / "tests" / "data" / "crds"


def _module_files(module: str, *globs: str) -> list[Path]:
    """CRD files from a Go module zip (the testbed's helper), cached under the system temp dir."""
    out = Path(tempfile.gettempdir()) / "unbusy-crds" / module.replace("/", "_")
    if not any(out.rglob("*.yaml")):
        subprocess.run([sys.executable, str(ROOT / "testbed" / "modfiles.py"), module, str(out), *globs], check=True)
    return sorted(out.rglob("*.yaml"))


def _crd_files() -> list[Path]:
    versions = pinned_versions()
    if SHARED_CRDS.is_dir():
        prometheus = sorted(SHARED_CRDS.glob("*.yaml"))
    else:
        po = "example/prometheus-operator-crd-full/monitoring.coreos.com"
        prometheus = _module_files(
            f"github.com/prometheus-operator/prometheus-operator@{versions['PROMETHEUS_OPERATOR_VERSION']}",
            *(f"{po}_{kind}.yaml" for kind in ("prometheusrules", "servicemonitors", "podmonitors")),
        )
    gateway = _module_files(f"sigs.k8s.io/gateway-api@{versions['GATEWAY_API_VERSION']}", "config/crd/standard/*.yaml")
    keda = _module_files(f"github.com/kedacore/keda/v2@{versions['KEDA_VERSION']}", KEDA_CRD)
    return prometheus + gateway + keda + sorted(DATA_CRDS.glob("*.yaml"))


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Reject unknown fields, as `kubectl apply` (strict field validation) does, instead of pruning them."""
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {name: _strict(prop) for name, prop in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = _strict(schema[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in schema:
            schema[key] = [_strict(option) for option in schema[key]]
    return schema


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every served version of the third-party CRDs."""
    schemas = {}
    for path in _crd_files():
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            for version in crd["spec"]["versions"]:
                key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                schemas[key] = _strict(version["schema"]["openAPIV3Schema"])
    return schemas


def validate(obj: dict[str, Any]) -> None:
    """Raise if `obj` is not a valid object of its kind."""
    key = (obj["apiVersion"], obj["kind"])
    if key in crd_schemas():
        # Not jsonschema.validate: it first checks the schema itself, and the CRDs carry Go
        # regexes (e.g. `^(?i)(abort|warn)?$`) that Python's re does not accept as written.
        schema = crd_schemas()[key]
        jsonschema.validators.validator_for(schema)(schema).validate(obj)
    else:
        builtin_validator(obj["apiVersion"], obj["kind"]).validate(obj)


@functools.cache
def builtin_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    """kubernetes-validate's strict schema of a built-in kind, loaded once: its validate() reads the
    schema and the shared definitions (megabytes of JSON) again on every call."""
    directory = f"kubernetes-json-schema/v{KUBERNETES_VERSION}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)  # as kubernetes-validate names files
    schema = schema_contents(f"{directory}/{kind.lower()}-{group_version}.json", KUBERNETES_VERSION)
    definitions = schema_contents(f"{directory}/_definitions.json", KUBERNETES_VERSION)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)
