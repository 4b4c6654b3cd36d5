"""Fixtures of the chaos tests: the testbed (tests/integration's fixtures, re-exported), kwok
nodes of the chaos fleet's own, and the operator watching the test's namespace only (so that it
never touches another test's InferenceServices, nor theirs this one)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator

import pytest

from fleet import FLEET_NODES, NODE_LABEL, Cluster, kwok_nodes, node_manifests
from integration_fixtures import integration_conftest
from unbusy.demo.processes import OperatorProcess

_integration = integration_conftest()
testbed = _integration.testbed
crd = _integration.crd


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: kills and restarts the operator and the testbed's components")


@pytest.fixture
def namespace(testbed, request) -> Iterator[str]:
    """A fresh namespace per test, not waiting for its pods at the end: they hold GPUs of the chaos
    nodes only, which no other test uses (a fleet's 200 took 90 s to go)."""
    yield from _integration.fresh_namespace(testbed, request, free_gpus=False)


@pytest.fixture
def other_namespace(testbed, request) -> Iterator[str]:
    """A second one, for a test whose operator watches two (each part checks only its own)."""
    yield from _integration.fresh_namespace(testbed, request, free_gpus=False)


@pytest.fixture(scope="session")
def fleet_nodes(testbed) -> Iterator[None]:
    """Two big kwok GPU nodes that only the fleet's pods select; gone again after the session."""
    testbed.kubectl("apply", "-f", "-", input=node_manifests(kwok_nodes(FLEET_NODES, gpus=1000)))
    testbed.wait("--for", "condition=Ready", "node", "-l", f"{NODE_LABEL}=true")
    yield
    testbed.kubectl("delete", "node", "-l", f"{NODE_LABEL}=true", "--wait=false")


@pytest.fixture
def operators(testbed, crd, namespace, tmp_path) -> Iterator[Callable[..., OperatorProcess]]:
    """operators(*args): an operator (not started) watching the test's namespace, with more
    `unbusy run` options (another --namespace too). At the end they stop, and the InferenceServices
    of the namespaces they watched lose kopf's finalizers, so that the namespaces (deleted in the
    background) can go without an operator."""
    made: list[OperatorProcess] = []
    watched = {namespace}

    def make(*args: str) -> OperatorProcess:
        log = tmp_path / f"operator-{len(made)}.log"
        operator = OperatorProcess(testbed.kubeconfig, log, "--namespace", namespace, *args)
        made.append(operator)
        watched.update(value for option, value in itertools.pairwise(args) if option == "--namespace")
        return operator

    yield make
    started = time.monotonic()
    for operator in made:
        operator.stop()
    released = sum(Cluster.connect(testbed.kubeconfig, n).release() for n in watched)
    print(f"operators stopped, {released} InferenceServices released in {time.monotonic() - started:.1f} s")
    print(f"operator logs: {tmp_path}")
