"""Isolation of Triton: the NetworkPolicy, Triton's admin APIs closed to the network, the
restricted pod security context, and spec values that reach a command only as arguments."""

from __future__ import annotations

import ast
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from builders import isvc

import schemas
from unbusy.render import deployment, render_all
from unbusy.render.network_policy import NAMESPACE_NAME_LABEL

# Arguments a shell would run or split if it ever saw them as script text.
HOSTILE_ARGS = ["--log-verbose=1; touch pwned", "$(touch pwned)", "`touch pwned`", "a b\nc", "'\"", "*", "$key"]
MANAGED_CONFIG = {
    "model": {"name": "resnet50", "repository": "s3://models/vision", "config": {"backend": "onnxruntime"}}
}


def only(manifests: list[dict], kind: str) -> dict:
    (found,) = [m for m in manifests if m["kind"] == kind]
    return found


def container(manifests: list[dict]) -> dict:
    return only(manifests, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def namespaces(rule: dict) -> list[str]:
    return [peer["namespaceSelector"]["matchLabels"][NAMESPACE_NAME_LABEL] for peer in rule["from"]]


# --- the NetworkPolicy ---------------------------------------------------------------------


def test_by_default_only_ingress_nginx_the_operator_and_prometheus_reach_triton():
    policy = only(render_all(isvc({})), "NetworkPolicy")
    schemas.validate(policy)
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"serving.unbusy.dev/inferenceservice": "resnet"}}
    assert spec["policyTypes"] == ["Ingress"]
    serving, metrics = spec["ingress"]
    assert namespaces(serving) == ["ingress-nginx", "unbusy-system"]
    assert [p["port"] for p in serving["ports"]] == ["http", "grpc"]
    assert namespaces(metrics) == ["monitoring"]
    assert [p["port"] for p in metrics["ports"]] == ["metrics"]


def test_peers_are_configurable_down_to_pod_labels():
    gateway = {"namespace": "envoy-gateway-system", "podLabels": {"app.kubernetes.io/name": "envoy"}}
    prometheus = {"namespace": "observability", "podLabels": {"app.kubernetes.io/name": "prometheus"}}
    policy = only(render_all(isvc({"networkPolicy": {"serving": [gateway], "metrics": [prometheus]}})), "NetworkPolicy")
    schemas.validate(policy)
    serving, metrics = policy["spec"]["ingress"]
    assert serving["from"] == [
        {
            "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "envoy-gateway-system"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "envoy"}},
        }
    ]
    assert namespaces(metrics) == ["observability"]


def test_no_peers_admits_nobody_not_everybody():
    # An ingress rule without `from` admits every source: an empty list must drop the rule.
    policy = only(render_all(isvc({"networkPolicy": {"serving": [], "metrics": []}})), "NetworkPolicy")
    assert policy["spec"]["ingress"] == [] and policy["spec"]["policyTypes"] == ["Ingress"]
    assert not [m for m in render_all(isvc({"networkPolicy": {"enabled": False}})) if m["kind"] == "NetworkPolicy"]


# --- Triton's admin APIs and the pod's privileges -----------------------------------------------


def test_triton_restricts_its_admin_apis_on_http_and_grpc():
    script = container(render_all(isvc({})))["command"][2]
    restricted = "model-repository,model-config,shared-memory,trace,logging:unbusy-admin-key=$key"
    assert f"--http-restricted-api={restricted}" in script
    assert f"--grpc-restricted-protocol={restricted}" in script


@pytest.mark.parametrize("spec", [{}, MANAGED_CONFIG], ids=["repository-config", "managed-config"])
def test_the_pod_meets_the_restricted_pod_security_standard(spec):
    manifests = render_all(isvc(spec))
    pod = only(manifests, "Deployment")["spec"]["template"]["spec"]
    security = container(manifests)["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] and security["runAsNonRoot"] and security["runAsUser"] != 0
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    # Volume types the restricted level allows, and no host namespaces.
    assert {key for volume in pod["volumes"] for key in volume if key != "name"} <= {
        "emptyDir",
        "configMap",
        "persistentVolumeClaim",
    }
    assert not any(pod.get(key) for key in ("hostNetwork", "hostPID", "hostIPC"))


# --- spec values reach commands as arguments only ----------------------------------------------


@pytest.fixture
def fake_tritonserver(tmp_path: Path) -> Path:
    """A `tritonserver` on PATH that writes its argv as JSON, as the real one would receive it."""
    binary = tmp_path / "bin" / "tritonserver"
    binary.parent.mkdir()
    binary.write_text(
        f"#!/usr/bin/env python3\nimport json, sys\njson.dump(sys.argv[1:], open({str(tmp_path / 'argv')!r}, 'w'))\n"
    )
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def test_hostile_triton_args_reach_tritonserver_verbatim(fake_tritonserver: Path):
    """The real entry point run by a real shell: extra args arrive one by one, unchanged, nothing
    in them runs; the key it draws is restricted on both protocols and left for the postStart hook."""
    rendered = container(render_all(isvc({"triton": {"args": HOSTILE_ARGS}})))
    shell, flag, script, name = rendered["command"]
    script = script.replace(deployment.ADMIN_KEY_DIR, str(fake_tritonserver))  # the pod's emptyDir, here
    env = dict(os.environ, PATH=f"{fake_tritonserver / 'bin'}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(
        [shell, flag, script, name, *rendered["args"]], env=env, cwd=fake_tritonserver, check=True, timeout=10
    )
    argv = json.loads((fake_tritonserver / "argv").read_text())
    key_file = fake_tritonserver / "admin-key"
    key = key_file.read_text()
    assert len(key) == 32 and set(key) <= set("0123456789abcdef")
    restricted = f"{','.join(deployment.RESTRICTED_APIS)}:{deployment.ADMIN_HEADER}={key}"
    assert argv[:2] == [f"--http-restricted-api={restricted}", f"--grpc-restricted-protocol={restricted}"]
    assert argv[2:] == rendered["args"] and argv[-len(HOSTILE_ARGS) :] == HOSTILE_ARGS
    assert not (fake_tritonserver / "pwned").exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600  # readable by Triton's user only


def test_the_load_hook_carries_the_model_name_as_data_only():
    hostile = 'x"); __import__("os").system("touch pwned"); ("'
    service = isvc(MANAGED_CONFIG)
    model = service.spec.model.model_copy(update={"name": hostile})
    service = service.model_copy(update={"spec": service.spec.model_copy(update={"model": model})})
    script = container(render_all(service))["lifecycle"]["postStart"]["exec"]["command"][2]
    tree = ast.parse(script)
    payloads = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    # The name is one value of the JSON literal the hook decodes, and no code of its own.
    assert [json.loads(p)[3] for p in payloads if p.startswith("[")] == [hostile]
    assert not any(isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "system" for node in ast.walk(tree))
