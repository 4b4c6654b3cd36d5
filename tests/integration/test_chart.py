"""The Helm chart: lint, schema-valid output, a real install, and least-privilege RBAC.

The install runs in the testbed, where kwok plays the operator's pods (no image runs there):
it proves the chart installs and that the ServiceAccount it creates can do exactly what the
operator does (operator/unbusy/kube, operator/unbusy/controller, and kopf's own needs) --
asked of the real API server's authorizer with `kubectl auth can-i --as`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest
import test_promtool
import yaml

from chart_rules import operator_rule_groups, rule_file
from schemas import validate
from unbusy.demo.processes import free_port

if TYPE_CHECKING:
    from conftest import Testbed

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CHART = ROOT / "charts" / "unbusy"
RELEASE = "unbusy"
KUBE_VERSION = "1.37.0"
EVERYTHING_ON = [
    *("--set", "metrics.serviceMonitor.enabled=true"),
    *("--set", "metrics.prometheusRule.enabled=true"),
    *("--set", "dashboard.enabled=true"),
]

# (verb, resource, subresource): what the operator does in a namespace it watches.
NAMESPACED_NEEDS = [
    *[(verb, "inferenceservices.serving.unbusy.dev", "") for verb in ("get", "list", "watch", "patch")],
    ("patch", "inferenceservices.serving.unbusy.dev", "status"),
    *[
        (verb, resource, "")
        for resource in (
            "configmaps",
            "services",
            "deployments.apps",
            "poddisruptionbudgets.policy",
            "horizontalpodautoscalers.autoscaling",
            "scaledobjects.keda.sh",
            "ingresses.networking.k8s.io",
            "networkpolicies.networking.k8s.io",
            "httproutes.gateway.networking.k8s.io",
            "inferencepools.inference.networking.k8s.io",
            "servicemonitors.monitoring.coreos.com",
            "podmonitors.monitoring.coreos.com",
            "prometheusrules.monitoring.coreos.com",
        )
        for verb in ("list", "create", "patch", "delete")
    ],
    ("watch", "deployments.apps", ""),
    ("get", "deployments.apps", "scale"),
    ("patch", "deployments.apps", "scale"),
    ("list", "pods", ""),
    *[(verb, resource, "") for resource in ("events", "events.events.k8s.io") for verb in ("create", "patch")],
]
CLUSTER_NEEDS = [
    *[(verb, "customresourcedefinitions.apiextensions.k8s.io", "") for verb in ("get", "list", "watch")],
    *[(verb, "nodes", "") for verb in ("list", "watch")],  # replicas on a lost node (controller/nodes.py)
]
# kopf lists and watches namespaces only when given some (never cluster-wide).
NAMESPACE_SCAN = [("list", "namespaces", ""), ("watch", "namespaces", "")]

# A sample of what it must not do, anywhere.
FORBIDDEN = [
    ("get", "secrets", ""),
    ("list", "secrets", ""),
    ("watch", "secrets", ""),
    ("*", "pods", ""),
    ("delete", "pods", ""),
    ("create", "pods", ""),
    ("create", "pods", "exec"),
    ("get", "deployments.apps", ""),  # it lists them, never gets one by name
    ("update", "deployments.apps", ""),
    ("delete", "inferenceservices.serving.unbusy.dev", ""),
    ("create", "inferenceservices.serving.unbusy.dev", ""),
    ("create", "serviceaccounts", "token"),
    ("create", "roles.rbac.authorization.k8s.io", ""),
    ("create", "rolebindings.rbac.authorization.k8s.io", ""),
]
FORBIDDEN_CLUSTER = [
    ("delete", "nodes", ""),
    ("create", "clusterroles.rbac.authorization.k8s.io", ""),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ""),
    ("bind", "clusterroles.rbac.authorization.k8s.io", ""),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", ""),
    ("patch", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("delete", "namespaces", ""),
    ("create", "namespaces", ""),
    ("impersonate", "serviceaccounts", ""),
    ("create", "clusterkopfpeerings.kopf.dev", ""),
]


def helm(testbed: Testbed, *args: str, timeout: float = 120) -> str:
    proc = subprocess.run(
        [str(testbed.helm), "--kubeconfig", str(testbed.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}"
    return proc.stdout


def template(testbed: Testbed, *values: str) -> list[dict[str, Any]]:
    out = helm(
        testbed, "template", RELEASE, str(CHART), "-n", "ops", "--include-crds", "--kube-version", KUBE_VERSION, *values
    )
    return [doc for doc in yaml.safe_load_all(out) if doc]


def can_i(testbed: Testbed, sa: str, verb: str, resource: str, sub: str, namespace: str | None) -> bool:
    args = ["auth", "can-i", verb, resource, "--as", sa]
    args += [f"--subresource={sub}"] if sub else []
    args += ["-n", namespace] if namespace else []
    proc = testbed.kubectl(*args, check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {proc.stderr}{proc.stdout}"
    return answer == "yes"


def wrong_answers(testbed: Testbed, sa: str, checks: list[tuple], namespace: str | None, expect: bool) -> list[str]:
    """The checks whose answer is not `expect` (asked in parallel: each is one kubectl run)."""
    where = f" in {namespace}" if namespace else " cluster-wide"
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda check: can_i(testbed, sa, *check, namespace), checks))
    return [
        f"{verb} {resource}{'/' + sub if sub else ''}{where}: expected {'yes' if expect else 'no'}"
        for (verb, resource, sub), answer in zip(checks, answers, strict=True)
        if answer != expect
    ]


# --- static: lint and schema ---------------------------------------------------------------


def test_helm_lint(testbed: Testbed):
    helm(testbed, "lint", "--strict", str(CHART))
    helm(testbed, "lint", "--strict", str(CHART), *EVERYTHING_ON, "--set", "watchNamespaces={a,b}")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("logFormat=xml", "/logFormat"),
        ("logLevel=verbose", "/logLevel"),
        ("watchNamespaces={Team_A}", "/watchNamespaces/0"),
        ("replicaCount=-1", "/replicaCount"),
    ],
)
def test_values_schema_names_the_bad_value(testbed: Testbed, value: str, message: str):
    command = [str(testbed.helm), "template", RELEASE, str(CHART), "--set", value]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "values",
    [[], EVERYTHING_ON, [*EVERYTHING_ON, "--set", "watchNamespaces={ml,vision}"]],
    ids=["defaults", "everything-on", "namespaced"],
)
def test_template_output_is_schema_valid(testbed: Testbed, values: list[str]):
    docs = template(testbed, *values)
    crds = {
        (f"{d['spec']['group']}/{v['name']}", d["spec"]["names"]["kind"]): v["schema"]["openAPIV3Schema"]
        for d in docs
        if d["kind"] == "CustomResourceDefinition"
        for v in d["spec"]["versions"]
    }
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        if key in crds:  # the chart's own CRDs (kopf peering objects)
            jsonschema.validate(doc, crds[key])
        else:
            validate(doc)
    kinds = sorted({d["kind"] for d in docs})
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "ClusterRole", "Service"} <= set(kinds)
    if values:
        assert {"ServiceMonitor", "PrometheusRule", "ConfigMap"} <= set(kinds)


def test_operator_pod_is_locked_down(testbed: Testbed):
    (deployment,) = [d for d in template(testbed) if d["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "--peering=unbusy" in container["args"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {e["name"] for e in container["env"]} >= {"UNBUSY_PROMETHEUS_URL", "POD_NAME"}
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_each_replica_gets_its_own_peering_priority(testbed: Testbed, tmp_path: Path):
    """kopf pauses every peer when two share a priority: the pod's shell line derives one per pod."""
    (deployment,) = [d for d in template(testbed) if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    stub = tmp_path / "unbusy"
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    stub.chmod(0o755)
    priorities = set()
    for pod in ("unbusy-6d4f9c7b8-x2k4p", "unbusy-6d4f9c7b8-q8w7e"):
        env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "POD_NAME": pod}
        proc = subprocess.run(container["command"] + container["args"], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        argv = proc.stdout.splitlines()
        assert argv[0] == "run"
        assert argv[2:] == container["args"]
        flag, _, priority = argv[1].partition("=")
        assert flag == "--priority" and priority.isdigit(), argv
        priorities.add(priority)
    assert len(priorities) == 2


@pytest.mark.parametrize("values", [[], ["--set", "watchNamespaces={ml,vision}"]], ids=["clusterwide", "namespaced"])
def test_rules_have_no_wildcards_and_no_secrets(testbed: Testbed, values: list[str]):
    roles = [d for d in template(testbed, *values) if d["kind"] in ("ClusterRole", "Role")]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{role['kind']} {role['metadata']['name']}: wildcard in {rule}"
            assert "secrets" not in rule["resources"]


def _grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """Rules flattened to (verb, resource.group, subresource, resourceName or "")."""
    return {
        (verb, f"{resource.split('/')[0]}.{group}".rstrip("."), resource.partition("/")[2], name)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        for name in rule.get("resourceNames") or [""]
    }


def _needs(checks: list[tuple[str, str, str]]) -> set[tuple[str, str, str, str]]:
    return {(verb, resource, sub, "") for verb, resource, sub in checks}


def test_rules_grant_exactly_the_needs(testbed: Testbed):
    """Nothing more than the operator needs: the rendered rules, flattened, are the needs above."""
    peer = "unbusy"
    docs = template(testbed)
    (cluster_role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    assert _grants(cluster_role["rules"]) == _needs(NAMESPACED_NEEDS + CLUSTER_NEEDS) | {
        ("list", "clusterkopfpeerings.kopf.dev", "", ""),
        ("watch", "clusterkopfpeerings.kopf.dev", "", ""),
        ("get", "clusterkopfpeerings.kopf.dev", "", peer),
        ("patch", "clusterkopfpeerings.kopf.dev", "", peer),
    }

    docs = template(testbed, "--set", "watchNamespaces={ml}")
    (cluster_role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    (role,) = [d for d in docs if d["kind"] == "Role"]
    assert _grants(cluster_role["rules"]) == _needs(CLUSTER_NEEDS + NAMESPACE_SCAN)
    assert _grants(role["rules"]) == _needs(NAMESPACED_NEEDS) | {
        ("list", "kopfpeerings.kopf.dev", "", ""),
        ("watch", "kopfpeerings.kopf.dev", "", ""),
        ("get", "kopfpeerings.kopf.dev", "", peer),
        ("patch", "kopfpeerings.kopf.dev", "", peer),
    }


# --- installed: the API server's authorizer decides ----------------------------------------


def install(testbed: Testbed, namespace: str, *values: str) -> str:
    """Install the chart; returns the ServiceAccount's user name."""
    helm(
        testbed,
        "install",
        RELEASE,
        str(CHART),
        "-n",
        namespace,
        "--set",
        f"peering.name={namespace}",  # ClusterKopfPeering is cluster-scoped: one per test
        *values,
        "--wait",
        "--timeout",
        "60s",
        timeout=120,
    )
    return f"system:serviceaccount:{namespace}:{RELEASE}"


@pytest.fixture
def uninstall(testbed: Testbed):
    installed: list[str] = []
    yield installed.append
    for namespace in installed:
        helm(testbed, "uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "60s")


def test_install_clusterwide_grants_exactly_what_the_operator_needs(testbed: Testbed, namespace: str, uninstall):
    uninstall(namespace)
    # The API server's own Pod Security admission rejects operator pods that are not locked down.
    testbed.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    sa = install(testbed, namespace, *EVERYTHING_ON)
    deployment = testbed.kubectl_json("get", "deployment", RELEASE, "-n", namespace)
    assert deployment["status"].get("readyReplicas") == 2
    peering = testbed.kubectl_json("get", "clusterkopfpeerings.kopf.dev", namespace)
    assert peering["metadata"]["name"] == namespace
    testbed.kubectl("get", "servicemonitor", RELEASE, "-n", namespace)
    dashboard = testbed.kubectl_json("get", "configmap", f"{RELEASE}-dashboard", "-n", namespace)
    json.loads(dashboard["data"]["unbusy-fleet.json"])

    wrong = []
    for where in (namespace, "default"):  # cluster-wide: any namespace
        wrong += wrong_answers(testbed, sa, NAMESPACED_NEEDS, where, expect=True)
        wrong += wrong_answers(testbed, sa, FORBIDDEN, where, expect=False)
    wrong += wrong_answers(testbed, sa, CLUSTER_NEEDS, None, expect=True)
    wrong += wrong_answers(testbed, sa, FORBIDDEN_CLUSTER + NAMESPACE_SCAN, None, expect=False)
    # Peering: its own object only, beyond watching them all.
    wrong += wrong_answers(
        testbed,
        sa,
        [("list", "clusterkopfpeerings.kopf.dev", ""), ("watch", "clusterkopfpeerings.kopf.dev", "")],
        None,
        expect=True,
    )
    wrong += wrong_answers(
        testbed,
        sa,
        [
            ("get", f"clusterkopfpeerings.kopf.dev/{namespace}", ""),
            ("patch", f"clusterkopfpeerings.kopf.dev/{namespace}", ""),
        ],
        None,
        expect=True,
    )
    wrong += wrong_answers(
        testbed, sa, [("patch", "clusterkopfpeerings.kopf.dev/someone-else", "")], None, expect=False
    )
    assert not wrong, "\n".join(wrong)


def test_install_namespaced_grants_nothing_outside_its_namespaces(testbed: Testbed, namespace: str, uninstall):
    uninstall(namespace)
    sa = install(testbed, namespace, "--set", f"watchNamespaces={{{namespace}}}", "--set", "replicaCount=1")
    testbed.kubectl("get", "kopfpeerings.kopf.dev", namespace, "-n", namespace)

    wrong = wrong_answers(testbed, sa, NAMESPACED_NEEDS, namespace, expect=True)
    wrong += wrong_answers(testbed, sa, [("patch", f"kopfpeerings.kopf.dev/{namespace}", "")], namespace, expect=True)
    wrong += wrong_answers(testbed, sa, FORBIDDEN, namespace, expect=False)
    wrong += wrong_answers(testbed, sa, CLUSTER_NEEDS + NAMESPACE_SCAN, None, expect=True)
    wrong += wrong_answers(testbed, sa, FORBIDDEN_CLUSTER, None, expect=False)
    # Another namespace: nothing at all.
    wrong += wrong_answers(testbed, sa, NAMESPACED_NEEDS[:8], "default", expect=False)
    assert not wrong, "\n".join(wrong)


# --- the real operator, with nothing but the chart's ServiceAccount -------------------------


def service_account_kubeconfig(testbed: Testbed, namespace: str, path: Path) -> Path:
    """A kubeconfig for the testbed that authenticates as the chart's ServiceAccount."""
    token = testbed.kubectl("create", "token", RELEASE, "-n", namespace, "--duration=10m").stdout.strip()
    cluster = testbed.kubectl_json("config", "view", "--raw", "--minify", "--flatten")["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testbed", "cluster": cluster}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "testbed", "user": "operator"}}],
        "current-context": "operator",
    }
    path.write_text(json.dumps(config))
    return path


def inference_services(namespace: str) -> list[dict[str, Any]]:
    """Every example's InferenceService, moved into `namespace`."""
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "InferenceService":
                doc["metadata"]["namespace"] = namespace
                found.append(doc)
    return found


def test_operator_works_with_only_the_charts_rbac(testbed: Testbed, namespace: str, uninstall, tmp_path: Path):
    """Least privilege is also enough: `unbusy run` as the chart's ServiceAccount, with peering,
    reconciles every example into every child kind without one Forbidden."""
    uninstall(namespace)
    # No operator pods (kwok would only pretend); this process is the operator.
    install(testbed, namespace, "--set", f"watchNamespaces={{{namespace}}}", "--set", "replicaCount=0")
    kubeconfig = service_account_kubeconfig(testbed, namespace, tmp_path / "kubeconfig")
    health, log = free_port(), tmp_path / "operator.log"
    command = [sys.executable, "-m", "unbusy.cli", "run", "--kubeconfig", str(kubeconfig)]
    command += ["--namespace", namespace, "--peering", namespace, "--priority", "1", "--log-level", "debug"]
    command += ["--metrics-port", str(free_port()), "--health-port", str(health)]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "operator"), KUBECONFIG=str(kubeconfig))
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"operator exited {process.returncode}:\n{log.read_text()[-3000:]}"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, f"operator not healthy:\n{log.read_text()[-3000:]}"
                time.sleep(0.3)
        services = inference_services(namespace)
        testbed.apply("\n---\n".join(yaml.safe_dump(doc) for doc in services))
        for doc in services:
            testbed.wait(
                f"inferenceservice/{doc['metadata']['name']}",
                "-n",
                namespace,
                "--for=jsonpath={.status.observedGeneration}=1",
                timeout=30,
            )
        # While it runs, it keeps itself alive in its peering object (and leaves on exit).
        peering = testbed.kubectl_json("get", "kopfpeerings.kopf.dev", namespace, "-n", namespace)
        assert peering.get("status"), "the operator did not keep itself alive in its KopfPeering"
    finally:
        process.terminate()
        try:  # a graceful stop is not what this test is about
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    text = log.read_text()
    assert "forbidden" not in text.lower(), [line for line in text.splitlines() if "orbidden" in line][:5]
    kinds = "deployments,services,configmaps,pdb,networkpolicies,hpa,scaledobjects,ingresses,httproutes"
    kinds += ",servicemonitors,podmonitors,prometheusrules"
    children = testbed.kubectl_json("get", kinds, "-n", namespace)["items"]
    assert {c["kind"] for c in children} == {
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "HorizontalPodAutoscaler",
        "ScaledObject",
        "Ingress",
        "HTTPRoute",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
    }
    events = testbed.kubectl_json("get", "events", "-n", namespace, "--field-selector", "reason=Reconciled")
    assert events["items"], "no Reconciled event: the operator could not post events"


# --- the operator's own alert rule, through promtool ---------------------------------------------

FAILURES = "unbusy_metric_read_failures_total"
promtool = test_promtool.promtool  # the fixture


@pytest.mark.parametrize(
    ("case", "failures", "fires"),
    [
        # One operator-mode service, a failed read per 30 s tick (2 a minute) all the time: held for good.
        ("every read fails", "0+2x40", True),
        # Prometheus came back after 5 minutes: the failures stop growing.
        ("a short outage", "0+2x5 10x35", False),
        ("no failures", "0x40", False),
        # The operator restarted (its counter starts again) while Prometheus stayed away.
        ("failing across a restart", "0+2x10 0+2x30", True),
    ],
)
def test_operator_alert_fires_while_prometheus_cannot_be_read(testbed, promtool, tmp_path, case, failures, fires):
    groups = operator_rule_groups(testbed.helm)
    (rule,) = groups[0]["rules"]
    (tmp_path / "rules.yaml").write_text(rule_file(groups))
    test_promtool.run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    labels = {"namespace": "unbusy-system", "job": "unbusy"}
    series = FAILURES + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    annotations = {k: v.replace("{{ $value | humanize }}", "2") for k, v in rule["annotations"].items()}
    fired = [{"exp_labels": labels | {"severity": "warning"}, "exp_annotations": annotations}] if fires else []
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": series, "values": failures}],
                "alert_rule_test": [
                    {"eval_time": "9m", "alertname": rule["alert"], "exp_alerts": []},  # still pending
                    {"eval_time": "30m", "alertname": rule["alert"], "exp_alerts": fired},
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test))
    test_promtool.run(promtool, "test", "rules", "test.yaml", cwd=tmp_path)
