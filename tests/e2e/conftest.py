"""Fixtures of the closed loop: the testbed (tests/integration's own fixtures, re-exported),
a real Prometheus that the test can stop and start, the metrics emulator's pod lister, and
the operator started with --prometheus-url and watching one namespace only (so that it never
touches another test's InferenceServices, nor theirs this one).

Prometheus is Debian's `prometheus` package (`make promtool` installs it); where it is
missing the tests fail, saying so.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import kubernetes
import pytest
from operator_process import CRD, OperatorProcess

from missing import require
from polling import eventually
from prometheus_process import Prometheus
from unbusy.api import load
from unbusy.api.spec import DEFAULT_VARIANT
from unbusy.render.meta import INFERENCE_SERVICE, VARIANT
from unbusy.render.routing import NGINX
from unbusy.sim.emulator import Emulator, PodLister, WeightLister
from unbusy.sim.model import from_service

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "serving.unbusy.dev", "v1alpha1", "inferenceservices"


def _load_integration_fixtures():
    """tests/integration/conftest.py by path: two conftest modules cannot both be `conftest`."""
    path = ROOT / "tests" / "integration" / "conftest.py"
    spec = importlib.util.spec_from_file_location("unbusy_integration_conftest", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_integration = _load_integration_fixtures()
testbed = _integration.testbed
namespace = _integration.namespace


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: closed loop with the testbed, a real Prometheus and the emulator")


# --- Prometheus ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    binary = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if binary is None:
        reason = "prometheus not installed (Debian package `prometheus`; `make promtool` installs it)"
        require(reason)
    return binary


# --- the operator and the API server -----------------------------------------------------------


class ClosedLoopOperator(OperatorProcess):
    """`unbusy run` with --prometheus-url, watching one namespace."""

    def __init__(self, kubeconfig: Path, log: Path, prometheus_url: str, namespace: str):
        super().__init__(kubeconfig, log)
        self.prometheus_url, self.namespace = prometheus_url, namespace

    def start(self) -> ClosedLoopOperator:
        command = [sys.executable, "-m", "unbusy.cli", "run", "--kubeconfig", str(self.kubeconfig)]
        command += ["--prometheus-url", self.prometheus_url, "--namespace", self.namespace]
        command += ["--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port)]
        env = dict(os.environ, PYTHONPATH=str(ROOT / "operator"))
        with self.log.open("a") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        self._wait_healthy()
        return self


def _check_node_leases(kubeconfig: Path) -> None:
    """kwok must renew node leases: without them the node lifecycle controller finds every fake
    node's heartbeat stale within a minute, marks all pods Ready=False, and kwok's pod-ready
    stage (Pending pods only) never readies them again -- a closed loop cannot run on that."""
    client = kubernetes.config.new_client_from_config(str(kubeconfig))
    leases = kubernetes.client.CoordinationV1Api(client).list_namespaced_lease("kube-node-lease").items
    if not any(lease.metadata.name.startswith("kwok-h100") for lease in leases):
        pytest.fail(
            "testbed: kwok renews no node leases (kube-node-lease is empty), so pods turn NotReady "
            "within a minute for good; start kwok with --node-lease-duration-seconds (testbed/up.sh)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def crd(testbed) -> None:
    _check_node_leases(testbed.kubeconfig)
    testbed.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    testbed.wait("--for", "condition=Established", "crd/inferenceservices.serving.unbusy.dev")


def pod_lister(kubeconfig: Path, namespace: str, inference_service: str) -> PodLister:
    """{pod: (variant, ready)} of an InferenceService's live pods, read from the API server."""
    api = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(kubeconfig)))

    def ready(pod) -> bool:
        return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or ())

    def pods() -> dict[str, tuple[str, bool]]:
        selected = f"{INFERENCE_SERVICE}={inference_service}"
        items = api.list_namespaced_pod(namespace, label_selector=selected, _request_timeout=5).items
        return {
            p.metadata.name: (p.metadata.labels.get(VARIANT, ""), ready(p))
            for p in items
            if p.metadata.deletion_timestamp is None
        }

    return pods


def ingress_weights(kubeconfig: Path, namespace: str, inference_service: str) -> WeightLister:
    """{variant: weight} as ingress-nginx splits traffic by the live Ingresses the operator rendered:
    the canary Ingress's variant takes its canary-weight, the primary's the rest."""
    api = kubernetes.client.NetworkingV1Api(kubernetes.config.new_client_from_config(str(kubeconfig)))

    def weights() -> dict[str, int]:
        selected = f"{INFERENCE_SERVICE}={inference_service}"
        items = api.list_namespaced_ingress(namespace, label_selector=selected, _request_timeout=5).items
        canary = {
            i.metadata.labels[VARIANT]: int(i.metadata.annotations[f"{NGINX}/canary-weight"])
            for i in items
            if (i.metadata.annotations or {}).get(f"{NGINX}/canary") == "true"
        }
        primary = {
            i.metadata.labels[VARIANT]: 100 - sum(canary.values())
            for i in items
            if i.metadata.labels[VARIANT] not in canary
        }
        return primary | canary

    return weights


@dataclass
class Loop:
    """One InferenceService in the closed loop, and what a test reads and drives of it."""

    namespace: str
    name: str
    emulator: Emulator
    prometheus: Prometheus
    operator: ClosedLoopOperator
    apps: kubernetes.client.AppsV1Api
    custom: kubernetes.client.CustomObjectsApi

    def eventually(self, check: Callable[[], object], timeout: float) -> object:
        return eventually(check, timeout, describe=self.describe)

    def describe(self) -> str:
        """Where the loop stands, for a failure message."""
        try:
            status = self.status()
            queries = {}
            for query in ("nv_inference_pending_request_count", "DCGM_FI_DEV_GPU_UTIL"):
                url = f"{self.prometheus.url}/api/v1/query?query={query}"
                result = json.loads(urllib.request.urlopen(url, timeout=3).read())["data"]["result"]
                queries[query] = {r["metric"].get("pod"): r["value"][1] for r in result}
        except Exception as error:  # a description must not hide the failure it describes
            return f"(no description: {error})"
        return (
            f"replicas {self.replicas()}, emulator rejects {self.emulator.rejected_fraction(15):.1%}, "
            f"conditions {status.get('conditions')}, lastScaling {status.get('lastScaling')}, Prometheus {queries}"
        )

    def replicas(self, variant: str = DEFAULT_VARIANT) -> tuple[int, int]:
        """The variant Deployment's (desired, ready) replicas; (0, 0) until the operator creates it."""
        try:
            deployment = self.apps.read_namespaced_deployment(f"{self.name}-{variant}", self.namespace)
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return 0, 0
            raise
        return deployment.spec.replicas or 0, deployment.status.ready_replicas or 0

    def weights(self) -> dict[str, int]:
        """{variant: weight} as ingress-nginx splits traffic by the live Ingresses (what the emulator follows)."""
        return dict(self.emulator.list_weights())

    def status(self) -> dict:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
        return obj.get("status", {})

    def events(self, reason: str) -> list[str]:
        """The messages of the InferenceService's Events with this reason."""
        core = kubernetes.client.CoreV1Api(self.apps.api_client)
        selector = f"involvedObject.name={self.name},reason={reason}"
        return [e.message for e in core.list_namespaced_event(self.namespace, field_selector=selector).items]

    def condition(self, type_: str) -> dict:
        return next((c for c in self.status().get("conditions", []) if c["type"] == type_), {})


@pytest.fixture
def closed_loop(testbed, crd, namespace, prometheus_binary, tmp_path) -> Iterator[Callable[[dict, float], Loop]]:
    """closed_loop(manifest, rps): the emulator at `rps` for the manifest's InferenceService (split by
    the live Ingresses' weights with routing.provider nginx), a Prometheus scraping it, the operator
    reading that Prometheus, and the manifest applied."""
    started: list[Loop] = []

    def start(manifest: dict, rps: float) -> Loop:
        body = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
        isvc = load(body)
        name = isvc.metadata.name
        routed = isvc.spec.routing is not None and isvc.spec.routing.provider == "nginx"
        emulator = Emulator(
            pod_lister(testbed.kubeconfig, namespace, name),
            namespace=namespace,
            inference_service=name,
            model=isvc.spec.model.name,
            service=from_service(isvc),
            rps=rps,
            # Behind ingress-nginx, traffic follows the Ingresses' weights, and the edge is counted.
            isvc=isvc if routed else None,
            weights=ingress_weights(testbed.kubeconfig, namespace, name) if routed else None,
        ).start()
        prometheus = Prometheus(prometheus_binary, tmp_path, [emulator.address])
        operator = ClosedLoopOperator(testbed.kubeconfig, tmp_path / "operator.log", prometheus.url, namespace)
        client = kubernetes.config.new_client_from_config(str(testbed.kubeconfig))
        apps, custom = kubernetes.client.AppsV1Api(client), kubernetes.client.CustomObjectsApi(client)
        loop = Loop(namespace, name, emulator, prometheus, operator, apps, custom)
        started.append(loop)
        prometheus.start()
        operator.start()
        testbed.apply(body)
        return loop

    yield start
    for loop in started:
        # While the operator still runs, so that it takes its finalizer off.
        testbed.kubectl("delete", "infsvc", loop.name, "-n", namespace, "--timeout=30s", check=False, timeout=45)
        loop.operator.stop()
        loop.prometheus.stop()
        loop.emulator.stop()
        print(f"logs of {loop.name}: {tmp_path}")
