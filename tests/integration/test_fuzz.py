"""Generated InferenceServices (tests/fuzz_specs.py), valid and invalid, through the real API server
and the operator, in one batch: every invalid one is refused at admission naming the broken field,
or admitted and reported by the operator as InvalidSpec naming it; every valid one is admitted and
reconciled; the operator neither crashes nor loops, and a good InferenceService created after the
batch is served as usual. bench/fuzz.py runs it with 1,000 cases."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import Phase, given, settings
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from test_operator import condition, manifest, operator, wait_ready  # noqa: F401  (operator: a fixture)

from fuzz_specs import API_CASES, Case, cases
from polling import eventually
from unbusy.api import GROUP, PLURAL, VERSION, SpecError, load
from unbusy.kube.client import connect
from unbusy.render import render_all

pytestmark = pytest.mark.integration

# Degraded reasons a valid spec must not end with: every child applied, nothing found wrong.
FAILED = ("ReconcileFailed", "InvalidSpec")
RECONCILES = "unbusy_reconcile_duration_seconds_count"
QUIET_S = 12  # a window longer than the operator's resync (5 s) in which a loop would show


def draw(count: int) -> list[Case]:
    """`count` cases from the strategies, each under its own name (fz<i>) in one namespace."""
    drawn: list[Case] = []

    @settings(max_examples=count, phases=[Phase.generate], database=None, deadline=None)
    @given(cases(idle=True))
    def collect(case: Case) -> None:
        drawn.append(case)

    collect()
    return [Case({**c.manifest, "metadata": {"name": f"fz{i}"}}, c.field, c.why) for i, c in enumerate(drawn)]


def create(api: client.CustomObjectsApi, namespace: str, case: Case) -> str | None:
    """Create as kubectl does (unknown fields refused, not pruned); the API server's refusal, if any."""
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, case.manifest, field_validation="Strict")
    except ApiException as refused:
        if refused.status not in (400, 422):
            raise
        return json.loads(refused.body)["message"]
    return None


def local_problems(case: Case, namespace: str) -> list[str]:
    """What the operator's own validation and rendering (the same as `unbusy render`'s) find in the case."""
    try:
        render_all(load({**case.manifest, "metadata": {**case.manifest["metadata"], "namespace": namespace}}))
    except SpecError as error:
        return error.problems
    return []


def test_generated_specs_are_refused_naming_the_field_or_reconciled(testbed, operator, namespace):  # noqa: F811
    batch = draw(API_CASES)
    assert len(batch) >= API_CASES * 0.9, f"hypothesis drew only {len(batch)} distinct cases"
    api = client.CustomObjectsApi(connect(str(testbed.kubeconfig)).client)
    admitted: dict[str, Case] = {}
    for case in batch:
        refusal = create(api, namespace, case)
        if refusal is None:
            admitted[case.name] = case
            continue
        assert case.field is not None, f"a valid spec refused at admission: {refusal}\n{case.manifest}"
        assert case.field in refusal, f"{case.why}: the refusal names another field: {refusal}"
        assert local_problems(case, namespace), f"{case.why}: kubectl refuses it but `unbusy render` takes it"
    invalid = {name: case for name, case in admitted.items() if case.field is not None}
    for case in admitted.values():
        problems = local_problems(case, namespace)
        assert bool(problems) == (case.field is not None), f"{case.why}: admitted, and locally {problems or 'valid'}"

    def settled() -> list[str]:
        """Names of admitted cases whose status is not yet what it must become."""
        items = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        statuses = {item["metadata"]["name"]: item.get("status") or {} for item in items}
        waiting = []
        for name, case in admitted.items():
            status, ready = statuses.get(name, {}), condition(statuses.get(name, {}), "Ready")
            if name in invalid:
                named = ready.get("reason") == "InvalidSpec" and case.field in ready.get("message", "")
                waiting += [] if named else [f"{name} ({case.why}): {ready or 'no status'}"]
            elif status.get("observedGeneration") != 1 or condition(status, "Degraded").get("reason") in FAILED:
                waiting.append(f"{name} (valid): {condition(status, 'Degraded') or 'no status'}")
        return waiting

    eventually(lambda: not settled(), timeout=60 + 0.5 * len(admitted), every=2, describe=lambda: str(settled()[:5]))

    # Then quiet: the reconciles still queued finish, and no handler runs again and again on any of them.
    def quiet() -> bool:
        before = operator.metric(RECONCILES)
        time.sleep(QUIET_S)
        return operator.metric(RECONCILES) == before

    eventually(quiet, timeout=120 + 0.2 * len(admitted), every=0)
    assert operator.process.poll() is None

    # And the operator still serves a good InferenceService created after the batch.
    testbed.apply(manifest("after-fuzz"), namespace)
    assert wait_ready(testbed, namespace, "after-fuzz")["readyReplicas"] == 1
    print(
        f"{len(batch)} cases: {len(batch) - len(admitted)} refused at admission, {len(invalid)} InvalidSpec, "
        f"{len(admitted) - len(invalid)} valid and reconciled"
    )
