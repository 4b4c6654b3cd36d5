"""`unbusy render`, `unbusy crd` and `unbusy demo` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import yaml
from builders import EXAMPLES, ROOT, example_documents, manifest


def unbusy(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "unbusy.cli", *args], input=stdin, capture_output=True, text=True, cwd=ROOT
    )


def test_render_prints_every_child_of_every_example():
    with_services = sorted({name for name, _ in example_documents()})
    result = unbusy("render", *(arg for path in EXAMPLES if path.name in with_services for arg in ("-f", str(path))))
    assert result.returncode == 0, result.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(result.stdout)}
    assert {"Deployment", "Service", "Ingress", "HTTPRoute", "HorizontalPodAutoscaler", "ConfigMap"} <= kinds


def test_bad_spec_names_the_field_without_a_traceback():
    bad = manifest({"variants": [{"name": "a", "weight": 60}, {"name": "b", "weight": 60}]})
    result = unbusy("render", "-f", "-", stdin=yaml.safe_dump(bad))
    assert result.returncode == 1
    assert result.stderr == "error: -: resnet: spec.variants: the weights must add up to 100\n"


def test_unreadable_input_is_one_line():
    result = unbusy("render", "-f", "/nonexistent.yaml")
    assert (result.returncode, result.stderr) == (1, "error: /nonexistent.yaml: No such file or directory\n")
    result = unbusy("render", "-f", "-", stdin="a: [")
    assert (
        result.returncode == 1
        and result.stderr.startswith("error: -: not valid YAML")
        and "Traceback" not in result.stderr
    )


def test_crd_command_prints_the_committed_crd():
    result = unbusy("crd")
    committed = (ROOT / "crds" / "serving.unbusy.dev_inferenceservices.yaml").read_text()
    assert result.returncode == 0 and result.stdout == committed


def test_version_is_the_distributions():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = unbusy("--version")
    assert (result.returncode, result.stdout) == (0, f"unbusy {version}\n")


def test_demo_of_a_service_without_a_fallback_names_the_field(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"  # never read: the spec is refused first
    result = unbusy(
        "demo", "-f", "-", "--kubeconfig", str(kubeconfig), "--workdir", str(tmp_path), stdin=yaml.safe_dump(manifest())
    )
    assert (result.returncode, result.stderr) == (
        1,
        "error: -: spec.fallback: the demo plays shedding to a fallback variant; declare one\n",
    )
