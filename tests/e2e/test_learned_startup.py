"""The start-up learned on the testbed (issue 23 part 2): pods that take START_S from creation to
Ready, and status.learned says so.

kwok readies a pod at once; a pod annotated kwok.x-k8s.io/status=custom (testbed/components.sh:
--disregard-status-with-annotation-selector) it leaves alone, and this test plays its kubelet:
it marks each such pod Ready START_S after its creation. The annotation goes on the main
Deployment's pod template with a field manager of the test's own, which the operator's
server-side apply leaves in place. Of the main variant's pods, the first is kwok's (Ready at
once); the rollout that the annotation starts and the scale-out to minReplicas 3 bring three
that take START_S: the median of the four is START_S.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import kubernetes
import pytest
from builders import ON_KWOK, manifest, small_model

from polling import Repeating
from unbusy.timestamps import stamp

if TYPE_CHECKING:
    from conftest import Loop

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NAME = "startup"
START_S = 20
CUSTOM = {"kwok.x-k8s.io/status": "custom"}


def service(min_replicas: int = 1) -> dict:
    return manifest(
        ON_KWOK
        | {
            "model": {
                "name": "resnet50",
                "repository": "s3://models/vision",
                "config": {"maxBatchSize": 8, "dynamicBatching": {"maxQueueSize": 64}},
                "serving": small_model().serving.to_wire(),
            },
            "autoscaling": {
                "mode": "operator",
                "minReplicas": min_replicas,
                "maxReplicas": 3,
                "intervalSeconds": 5,
                "targets": {"capacityUtilizationPercent": 80, "queueDepthPerReplica": 32, "gpuUtilizationPercent": 0},
            },
        },
        name=NAME,
    )


class Kubelet(Repeating):
    """Marks the custom-status pods of one Deployment Ready `delay` seconds after their creation."""

    def __init__(self, core: kubernetes.client.CoreV1Api, namespace: str, selector: str, delay: float) -> None:
        super().__init__(every=0.5)
        self.core, self.namespace, self.selector, self.delay = core, namespace, selector, delay
        self.readied: dict[str, float] = {}  # pod -> its start-up as set

    def step(self) -> None:
        for pod in self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).items:
            meta = pod.metadata
            if (meta.annotations or {}).get("kwok.x-k8s.io/status") != "custom" or meta.deletion_timestamp:
                continue
            if meta.name in self.readied or not pod.spec.node_name:
                continue
            age = time.time() - meta.creation_timestamp.timestamp()
            if age >= self.delay:
                self._ready(meta.name)
                self.readied[meta.name] = time.time() - meta.creation_timestamp.timestamp()

    def _ready(self, name: str) -> None:
        at = stamp(datetime.now(UTC))
        conditions = [
            {"type": kind, "status": "True", "lastTransitionTime": at}
            for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ]
        body = {"status": {"phase": "Running", "podIP": "10.0.0.200", "conditions": conditions, "startTime": at}}
        self.core.patch_namespaced_pod_status(name, self.namespace, body)


def test_the_start_up_from_creation_to_ready_is_learned_and_shown(closed_loop, testbed):
    loop: Loop = closed_loop(service(), 50.0)
    loop.eventually(lambda: loop.replicas("main") == (1, 1), 90)
    core = kubernetes.client.CoreV1Api(loop.apps.api_client)
    deployment = f"{NAME}-main"
    selector = f"serving.unbusy.dev/inferenceservice={NAME},serving.unbusy.dev/variant=main"
    try:
        with Kubelet(core, loop.namespace, selector, START_S) as kubelet:
            # A field manager of the test's own: the operator's apply leaves the annotation be.
            patch = {"spec": {"template": {"metadata": {"annotations": CUSTOM}}}}
            loop.apps.patch_namespaced_deployment(deployment, loop.namespace, patch, field_manager="startup-e2e")
            loop.eventually(lambda: len(kubelet.readied) == 1 and loop.replicas("main") == (1, 1), START_S + 60)
            testbed.apply({**service(min_replicas=3), "metadata": {"name": NAME, "namespace": loop.namespace}})
            loop.eventually(lambda: len(kubelet.readied) == 3 and loop.replicas("main") == (3, 3), START_S + 60)

            def learned() -> dict | None:
                entry = next((e for e in loop.status().get("learned", []) if e["variant"] == "main"), None)
                return entry if entry and (entry.get("startupSeconds") or 0) >= START_S - 2 else None

            entry = loop.eventually(learned, 30)
            print(f"start-ups set {kubelet.readied}, status.learned {entry}")
            assert START_S - 2 <= entry["startupSeconds"] <= START_S + 3, entry
            assert entry["startupUsed"] == "learned", entry
            # What the pods say: Ready START_S after their creation.
            for pod in core.list_namespaced_pod(loop.namespace, label_selector=selector).items:
                if pod.metadata.name in kubelet.readied:
                    ready = next(c for c in pod.status.conditions if c.type == "Ready")
                    took = ready.last_transition_time.timestamp() - pod.metadata.creation_timestamp.timestamp()
                    assert START_S - 1 <= took <= START_S + 2, (pod.metadata.name, took)
    finally:
        # kwok leaves these pods alone, their deletion too: back to kwok's pods, and ours go at once.
        undo = {"spec": {"template": {"metadata": {"annotations": {key: None for key in CUSTOM}}}}}
        loop.apps.patch_namespaced_deployment(deployment, loop.namespace, undo, field_manager="startup-e2e")
        for pod in core.list_namespaced_pod(loop.namespace, label_selector=selector).items:
            if (pod.metadata.annotations or {}).get("kwok.x-k8s.io/status") == "custom":
                core.delete_namespaced_pod(pod.metadata.name, loop.namespace, grace_period_seconds=0)
