"""Canary rollouts in the closed loop: a new model version runs beside the stable one behind
ingress-nginx's canary Ingress, the emulator splits its load by the live Ingresses' weights,
Prometheus scrapes it and the operator judges the canary on what it read.

- a good canary goes through every step and is promoted; the operator, killed at the second
  step, resumes there (same revision, never back to an earlier weight); a rollback to the first
  revision is one annotation and rolls out as a canary;
- a canary made bad in the emulator (p99 or errors) is rolled back within two analysis
  intervals of taking traffic, and the stable variant never has fewer ready replicas.

Measured times are printed (pytest -s) and attached to the report as user properties.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from builders import ON_KWOK, manifest

from polling import Repeating

if TYPE_CHECKING:
    from conftest import Loop  # the fixture's type; conftest is not importable at run time

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NAME = "bert"
RPS = 200.0
INTERVAL_S = 5
REPLICAS = 2
STEPS = [{"weight": 20, "pauseSeconds": 5}, {"weight": 50, "pauseSeconds": 10}, {"weight": 100, "pauseSeconds": 0}]


def service(failure_limit: int) -> dict:
    return manifest(
        ON_KWOK
        | {
            "model": {"name": "bert", "repository": "s3://models/nlp", "version": "1"},
            "autoscaling": {"mode": "operator", "minReplicas": REPLICAS, "maxReplicas": 4, "intervalSeconds": 5},
            "routing": {"host": "bert.example.com"},
            "rollout": {
                "canary": {
                    "steps": STEPS,
                    "analysisIntervalSeconds": INTERVAL_S,
                    "checks": [
                        {"metric": "p99LatencyMs", "maxRatioToStable": 3},
                        {"metric": "errorRatePercent", "max": 2},
                    ],
                    "failureLimit": failure_limit,
                }
            },
        },
        name=NAME,
    )


class StableWatch(Repeating):
    """Samples the stable Deployment's ready replicas every half second, to find its least."""

    def __init__(self, loop: Loop):
        super().__init__(every=0.5)
        self.loop, self.least = loop, REPLICAS

    def step(self) -> None:
        self.least = min(self.least, self.loop.replicas("main")[1])


def rollout(loop: Loop) -> dict:
    return next(iter(loop.status().get("rollouts") or []), {})


def new_version(testbed, loop: Loop) -> None:
    patch = '{"spec": {"model": {"version": "2"}}}'
    testbed.kubectl("patch", "infsvc", NAME, "-n", loop.namespace, "--type=merge", "-p", patch)


def served_version(testbed, loop: Loop) -> str:
    config = testbed.kubectl_json("get", "configmap", f"{NAME}-main-model", "-n", loop.namespace)
    return config["data"]["config.pbtxt"].split("versions: [")[1].split("]")[0]


def test_a_good_canary_is_promoted_through_every_step_and_resumes_after_a_restart(
    testbed, closed_loop, record_property
) -> None:
    loop: Loop = closed_loop(service(failure_limit=2), RPS)
    loop.eventually(lambda: loop.replicas("main") == (REPLICAS, REPLICAS), 90)
    loop.eventually(lambda: loop.status().get("revisions"), 30)
    with StableWatch(loop) as stable:
        started = time.monotonic()
        new_version(testbed, loop)
        at_second = loop.eventually(lambda: (r := rollout(loop)).get("step") == 1 and r, 120)
        assert at_second["revision"] == 2 and at_second["weight"] == 50, at_second

        loop.operator.kill()
        loop.operator.start()
        seen = []

        def promoted() -> bool:
            state = rollout(loop)
            seen.append((state.get("revision"), state.get("step"), state.get("weight")))
            return state.get("phase") == "Promoted"

        loop.eventually(promoted, 180)
        # Resumed where it was: the same revision, never an earlier step or weight.
        assert all(revision == 2 for revision, _, _ in seen), seen
        assert all(step >= 1 for _, step, weight in seen if weight), seen
        record_property("promoted_s", round(time.monotonic() - started, 1))
    assert stable.least >= REPLICAS, f"the stable variant dropped to {stable.least} ready replicas"
    assert served_version(testbed, loop) == "2"
    loop.eventually(lambda: loop.replicas("main-canary") == (0, 0), 30)  # the canary is gone
    # The condition is the status refresh's, written after the canary's Deployment goes: polled.
    loop.eventually(
        lambda: (
            (loop.condition("Progressing").get("status"), loop.condition("Progressing").get("reason"))
            == ("False", "RolloutPromoted")
        ),
        30,
    )
    assert [r["number"] for r in loop.status()["revisions"]] == [1, 2]
    events = testbed.kubectl(
        "get", "events", "-n", loop.namespace, "-o", "name", "--field-selector", "reason=RolloutStep"
    ).stdout.split()
    assert len(events) >= len(STEPS) - 1, events

    # Rollback to revision 1 is one annotation: its template is written back and rolls out as a canary.
    testbed.kubectl("annotate", "infsvc", NAME, "-n", loop.namespace, "serving.unbusy.dev/rollback-to=main=1")
    back = loop.eventually(lambda: (r := rollout(loop)).get("revision") == 3 and r, 30)
    assert back["template"]["modelVersion"] == "1" and back["phase"] == "Progressing", back
    variants = testbed.kubectl_json("get", "infsvc", NAME, "-n", loop.namespace)["spec"]["variants"]
    assert [(v["name"], v["modelVersion"]) for v in variants] == [("main", "1")], variants


@pytest.mark.parametrize(
    ("fault", "check"),
    [({"latency_ms": 400.0}, "p99LatencyMs"), ({"error_fraction": 0.2}, "errorRatePercent")],
    ids=["p99", "errors"],
)
def test_a_bad_canary_is_rolled_back_within_two_intervals(testbed, closed_loop, record_property, fault, check):
    loop: Loop = closed_loop(service(failure_limit=1), RPS)
    loop.eventually(lambda: loop.replicas("main") == (REPLICAS, REPLICAS), 90)
    loop.eventually(lambda: loop.status().get("revisions"), 30)
    loop.emulator.degrade("main-canary", **fault)
    with StableWatch(loop) as stable:
        new_version(testbed, loop)
        loop.eventually(lambda: rollout(loop).get("weight", 0) > 0, 120)
        taking = time.monotonic()
        failed = loop.eventually(lambda: (r := rollout(loop)).get("phase") == "Failed" and r, 4 * INTERVAL_S)
        elapsed = time.monotonic() - taking
        record_property("rolled_back_s", round(elapsed, 1))
        print(f"{check}: rolled back {elapsed:.1f}s after taking traffic: {failed['message']}")
    assert elapsed <= 2 * INTERVAL_S + 1, f"{elapsed:.1f}s: {failed['message']}"
    assert f"{check}" in failed["message"] and ">" in failed["message"], failed["message"]
    assert stable.least >= REPLICAS, f"the stable variant dropped to {stable.least} ready replicas"
    loop.eventually(lambda: loop.replicas("main-canary") == (0, 0), 30)
    assert served_version(testbed, loop) == "1"
    progressing = loop.condition("Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "RolloutFailed"), progressing
