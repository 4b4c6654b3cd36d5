"""Fixtures of the closed loop: the testbed (tests/integration's own fixtures, re-exported),
a real Prometheus that the test can stop and start, the metrics emulator's pod lister, and
the operator started with --prometheus-url and watching one namespace only (so that it never
touches another test's InferenceServices, nor theirs this one).

Prometheus is Debian's `prometheus` package (`make promtool` installs it); where it is
missing the tests fail, saying so.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import kubernetes
import pytest
from builders import CRD

from chart_rules import operator_rule_groups, rule_file
from integration_fixtures import integration_conftest
from missing import require
from polling import eventually
from unbusy.api import load
from unbusy.api.spec import DEFAULT_VARIANT
from unbusy.demo import processes
from unbusy.demo.loop import ClosedLoop

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "serving.unbusy.dev", "v1alpha1", "inferenceservices"


_integration = integration_conftest()
testbed = _integration.testbed
namespace = _integration.namespace


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: closed loop with the testbed, a real Prometheus and the emulator")


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    binary = processes.prometheus_binary()
    if binary is None:
        require(processes.PROMETHEUS_MISSING)
    return binary


# --- the operator and the API server -----------------------------------------------------------


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


class Loop(ClosedLoop):
    """One InferenceService in the closed loop, and what a test reads and drives of it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        client = kubernetes.config.new_client_from_config(str(self.kubeconfig))
        self.apps, self.custom = kubernetes.client.AppsV1Api(client), kubernetes.client.CustomObjectsApi(client)

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
def closed_loop(testbed, crd, namespace, prometheus_binary, tmp_path) -> Iterator[Callable[..., Loop]]:
    """closed_loop(manifest, rps, **options): the emulator at `rps` for the manifest's InferenceService
    (split by the live Ingresses' weights with routing.provider nginx; ClosedLoop's options: an LLM's
    profile and mix, a serving profile, and proxy_metrics: the testbed's Traefik in front, its pods
    answering the real requests), a Prometheus scraping it, the operator reading that Prometheus, and the
    manifest applied."""
    started: list[Loop] = []

    def start(manifest: dict, rps: float, **options) -> Loop:
        body = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
        loop = Loop(testbed.kubeconfig, load(body), rps, tmp_path, prometheus_binary, **options)
        started.append(loop)
        loop.start()
        testbed.apply(body)
        return loop

    yield start
    for loop in started:
        # While the operator still runs, so that it takes its finalizer off.
        testbed.kubectl("delete", "infsvc", loop.name, "-n", namespace, "--timeout=30s", check=False, timeout=45)
        loop.stop()
        print(f"logs of {loop.name}: {tmp_path}")


@pytest.fixture
def operator_monitoring(testbed, prometheus_binary, tmp_path) -> Iterator[Callable[..., processes.Prometheus]]:
    """operator_monitoring(loop, *settings): a second Prometheus, the one that watches the operator:
    it scrapes the loop's operator and evaluates the chart's PrometheusRule for it, rendered by
    helm with metrics.prometheusRule.KEY=VALUE `settings`."""
    started: list[processes.Prometheus] = []

    def start(loop: Loop, *settings: str) -> processes.Prometheus:
        rules = rule_file(operator_rule_groups(testbed.helm, *settings))
        target = [f"127.0.0.1:{loop.operator.metrics_port}"]
        prometheus = processes.Prometheus(prometheus_binary, tmp_path / "monitoring", target, job="unbusy", rules=rules)
        started.append(prometheus)
        return prometheus.start()

    yield start
    for prometheus in started:
        prometheus.stop()
