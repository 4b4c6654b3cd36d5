"""A fleet of InferenceServices under chaos: the specs a trial moves it through, the operator
SIGKILLed at a seeded moment of the reconcile, and the checks that it converged exactly.

Shared by tests/chaos (3 trials in `make test`) and bench/chaos.py (20 trials). A trial:

1. snapshot the UIDs of every child (and ReplicaSet) of the fleet;
2. apply the next spec to every InferenceService at once (create, scale, add a variant, back;
   every tenth is scaled to zero on purpose throughout);
3. SIGKILL the operator once a seeded number of those reconciles is done (so the kill lands
   mid-reconcile, never before or after it), snapshot the UIDs again, restart the operator
   (or, in place of the kill, restart the API server or etcd and leave the operator be);
4. wait until every InferenceService is Ready for its current generation, then check: exactly the
   children the specs render (no orphan, none missing, no duplicate pod or ReplicaSet), every child
   that existed before or at the kill and is still asked for has the same UID (nothing recreated).
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import config as kube_config
from kubernetes import dynamic
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from unbusy.api import load
from unbusy.kube.children import CHILD_KINDS
from unbusy.render import render_all
from unbusy.render.meta import MANAGED_BY, OPERATOR

GROUP, VERSION, PLURAL = "serving.unbusy.dev", "v1alpha1", "inferenceservices"
# The fleet's pods go to nodes of their own (kwok_nodes, with room for a thousand GPU pods), never
# to the testbed's GPU nodes that other tests count on.
NODE_LABEL = "unbusy.dev/chaos"
FLEET_NODES = ["chaos-h100-0", "chaos-h100-1"]
RECONCILES = "unbusy_reconcile_duration_seconds_count"
TESTBED_DIR = Path(__file__).resolve().parents[1] / "testbed"

# The specs a fleet moves through: created at one replica, scaled to two, a second variant added
# (the first one's children must stay as they are), back to the first (the second's pruned).
ONE_VARIANT = {"replicas": 1}
SCALED = {"replicas": 2}
TWO_VARIANTS = {"replicas": 1, "variants": [{"name": "main", "weight": 80}, {"name": "small", "weight": 20}]}
STEPS = (("create", ONE_VARIANT), ("scale", SCALED), ("add-variant", TWO_VARIANTS), ("remove-variant", ONE_VARIANT))


def kwok_nodes(names: list[str], gpus: int, label: str = NODE_LABEL) -> list[dict[str, Any]]:
    """kwok H100 nodes, alternately in two zones, that only pods selecting `label` use."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": {
                    "type": "kwok",
                    label: "true",
                    "kubernetes.io/hostname": name,
                    "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                    "topology.kubernetes.io/zone": f"zone-{'ab'[i % 2]}",
                },
            },
            "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
            "status": {
                "allocatable": {"cpu": "4000", "memory": "16Ti", "pods": "1000", "nvidia.com/gpu": str(gpus)},
                "capacity": {"cpu": "4000", "memory": "16Ti", "pods": "1000", "nvidia.com/gpu": str(gpus)},
            },
        }
        for i, name in enumerate(names)
    ]


def node_manifests(nodes: list[dict[str, Any]]) -> str:
    return "\n---\n".join(json.dumps(n) for n in nodes)


def inference_service(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": "resnet50", "repository": "s3://models/vision"},
            "gpu": {"count": 1, "product": "H100-80GB"},
            "autoscaling": {"mode": "none"},
            "routing": {"host": f"{name}.example.com"},
            "scheduling": {"nodeSelector": {NODE_LABEL: "true"}},
            "triton": {"resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}}},
        }
        | spec,
    }


Key = tuple[str, str]  # (kind, name)


def _plain(_: Any, data: dict[str, Any]) -> dict[str, Any]:
    return data


Fault = Callable[[], None]


@dataclass
class Cluster:
    """What a trial reads and writes, through the kubernetes client (one connection pool)."""

    namespace: str
    client: dynamic.DynamicClient

    @classmethod
    def connect(cls, kubeconfig: Path, namespace: str) -> Cluster:
        return cls(namespace, dynamic.DynamicClient(kube_config.new_client_from_config(str(kubeconfig))))

    def resource(self, api_version: str, kind: str):
        return self.client.resources.get(api_version=api_version, kind=kind)

    def items(self, api_version: str, kind: str, **selectors: str) -> list[dict[str, Any]]:
        # As plain JSON: the client's ResourceInstance wrapping of a fleet's 2,000 children costs
        # seconds of CPU per listing on a shared machine, and a trial lists them often.
        plain = self.resource(api_version, kind).get(namespace=self.namespace, serializer=_plain, **selectors)
        return plain["items"]

    def apply(self, manifests: list[dict[str, Any]]) -> None:
        isvcs = self.resource(f"{GROUP}/{VERSION}", "InferenceService")
        for manifest in manifests:
            isvcs.server_side_apply(
                body=manifest, namespace=self.namespace, field_manager="chaos-test", force_conflicts=True
            )

    def children(self) -> dict[Key, str]:
        """(kind, name) -> UID of every child the operator made, and of the ReplicaSets under them."""
        found: dict[Key, str] = {}
        managed = f"{MANAGED_BY}={OPERATOR}"
        for api_version, kind in [*CHILD_KINDS, ("apps/v1", "ReplicaSet")]:
            try:
                items = self.items(api_version, kind, label_selector=managed)
            except ResourceNotFoundError:
                continue  # an optional API (CRD) the testbed does not install, e.g. InferencePool
            for item in items:
                meta = item["metadata"]
                if meta.get("deletionTimestamp") is None:
                    found[(kind, meta["name"])] = meta["uid"]
        return found

    def services(self) -> list[dict[str, Any]]:
        return self.items(f"{GROUP}/{VERSION}", "InferenceService")

    def release(self) -> int:
        """Take the finalizers (kopf's) off every InferenceService, once no operator runs: the namespace
        then goes at once, without one to wait for (deleting 200 through an operator took 45-65 s).
        Returns how many were released."""
        isvcs = self.resource(f"{GROUP}/{VERSION}", "InferenceService")
        held = [s["metadata"]["name"] for s in self.services() if s["metadata"].get("finalizers")]
        for name in held:
            isvcs.patch(
                name=name,
                namespace=self.namespace,
                body={"metadata": {"finalizers": None}},
                content_type="application/merge-patch+json",
            )
        return len(held)


def ready(isvc: dict[str, Any]) -> bool:
    """Ready for the spec as it is now (not a status left from an earlier generation)."""
    status = isvc.get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    return (
        conditions.get("Ready", {}).get("status") == "True"
        and status.get("observedGeneration") == isvc["metadata"]["generation"]
    )


def expected_children(manifests: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    return {(m["kind"], m["metadata"]["name"]): m for s in manifests for m in render_all(load(s))}


@dataclass
class Result:
    """One trial: where the fault landed, how long convergence took, and what was wrong (nothing)."""

    step: str
    struck_after: int  # reconciles done when the fault struck
    of: int
    children_at_fault: int
    struck_at_s: float  # after the specs were applied
    converged_s: float  # after the restart (or the fault): every one Ready for its generation
    settled_s: float  # after the restart: every one reconciled by the restarted operator
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        verdict = "ok" if not self.problems else "; ".join(self.problems[:5])
        return (
            f"{self.step:<15} struck after {self.struck_after:>4}/{self.of} reconciles "
            f"({self.children_at_fault:>4} children then, {self.struck_at_s:5.1f} s in); converged "
            f"{self.converged_s:5.1f} s after, settled {self.settled_s:5.1f} s after: {verdict}"
        )


def check(
    cluster: Cluster, manifests: list[dict[str, Any]], *snapshots: dict[Key, str], now: dict[Key, str] | None = None
) -> list[str]:
    """Everything wrong with the fleet once it is Ready (its children `now`, listed when not given);
    empty when it is exactly as asked."""
    problems: list[str] = []
    wanted = expected_children(manifests)
    now = cluster.children() if now is None else now
    live = {key for key in now if key[0] != "ReplicaSet"}
    if missing := sorted(set(wanted) - live):
        problems.append(f"{len(missing)} children missing, e.g. {missing[:3]}")
    if orphans := sorted(live - set(wanted)):
        problems.append(f"{len(orphans)} children nobody asks for, e.g. {orphans[:3]}")
    recreated = {k for snapshot in snapshots for k, uid in snapshot.items() if k in now and now[k] != uid}
    if recreated := sorted(recreated):
        problems.append(f"{len(recreated)} children recreated (new UID), e.g. {recreated[:3]}")
    deployments = {d["metadata"]["name"]: d for d in cluster.items("apps/v1", "Deployment")}
    for (kind, name), manifest in wanted.items():
        replicas = deployments.get(name, {}).get("spec", {}).get("replicas") if kind == "Deployment" else None
        if replicas is not None and replicas != manifest["spec"]["replicas"]:
            problems.append(f"Deployment {name}: {replicas} replicas, the spec asks for {manifest['spec']['replicas']}")
    pods: dict[str, int] = {}
    for pod in cluster.items("v1", "Pod", label_selector=f"{MANAGED_BY}={OPERATOR}"):
        if pod["metadata"].get("deletionTimestamp") is None:
            owner = pod["metadata"].get("ownerReferences", [{}])[0].get("name", "")
            pods[owner] = pods.get(owner, 0) + 1
    live_sets: dict[str, int] = {}
    for replica_set in cluster.items("apps/v1", "ReplicaSet", label_selector=f"{MANAGED_BY}={OPERATOR}"):
        if replica_set["spec"].get("replicas"):
            owner = replica_set["metadata"]["ownerReferences"][0]["name"]
            live_sets[owner] = live_sets.get(owner, 0) + 1
            if pods.get(replica_set["metadata"]["name"], 0) != replica_set["spec"]["replicas"]:
                problems.append(
                    f"ReplicaSet {replica_set['metadata']['name']}: {pods.get(replica_set['metadata']['name'], 0)} "
                    f"pods for {replica_set['spec']['replicas']} replicas"
                )
    if duplicated := sorted(name for name, count in live_sets.items() if count > 1):
        problems.append(f"{len(duplicated)} Deployments with more than one live ReplicaSet, e.g. {duplicated[:3]}")
    return problems


class Fleet:
    """`count` InferenceServices in one namespace, moved through STEPS one trial at a time."""

    def __init__(self, cluster: Cluster, count: int, seed: int):
        self.cluster, self.count = cluster, count
        self.random = random.Random(seed)
        self.trials = 0
        self.applied: list[dict[str, Any]] = []  # the manifests of the last trial
        self.checked: dict[Key, str] | None = None  # the children as the last trial's check listed them

    def manifests(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        """Every tenth one scaled to zero on purpose: it must read Ready (ScaledToZero) all the same."""
        return [
            inference_service(f"m{i:04d}", self.cluster.namespace, spec | ({"replicas": 0} if i % 10 == 9 else {}))
            for i in range(self.count)
        ]

    def unready(self) -> str:
        """What the InferenceServices not Ready say, and what their Deployments show (a few)."""
        deployments = {d["metadata"]["name"]: d.get("status", {}) for d in self.cluster.items("apps/v1", "Deployment")}
        lines = []
        for isvc in [s for s in self.cluster.services() if not ready(s)][:5]:
            name, status = isvc["metadata"]["name"], isvc.get("status") or {}
            says = {c["type"]: f"{c['status']} {c['reason']}: {c['message']}" for c in status.get("conditions", [])}
            shows = {
                d: f"{s.get('readyReplicas', 0)}/{s.get('replicas', 0)}"
                for d, s in deployments.items()
                if d.startswith(f"{name}-")
            }
            generations = f"generation {isvc['metadata']['generation']}, observed {status.get('observedGeneration')}"
            lines.append(f"{name} ({generations}): Ready {says.get('Ready')}; Deployments ready/replicas {shows}")
        return "; not Ready: " + " | ".join(lines) if lines else ""

    def step(self) -> tuple[str, dict[str, Any]]:
        """create first, then scale, add-variant, remove-variant, scale, ... (the fleet never goes away)."""
        if self.trials == 0:
            return STEPS[0]
        return STEPS[1 + (self.trials - 1) % (len(STEPS) - 1)]

    def trial(self, operator, fault: Fault | None = None, converge_timeout: float = 300) -> Result:
        """One trial with `operator` (an OperatorProcess, running or not): see the module's text.
        `fault` strikes at the seeded moment instead of the SIGKILL and restart of the operator."""
        name, spec = self.step()
        self.trials += 1
        manifests = self.manifests(spec)
        before = self.checked if self.checked is not None else self.cluster.children()
        if operator.process is None or operator.process.poll() is not None:
            operator.start()
        done_before = operator.metric(RECONCILES)
        # Only the services whose spec changes are reconciled (those scaled to zero stay as they are).
        changing = sum(m != old for m, old in zip(manifests, self.applied, strict=True)) if self.applied else self.count
        strike_after = self.random.randint(1, changing - 1)
        self.applied = manifests
        applied = time.monotonic()
        self.cluster.apply(manifests)
        # Polled every 0.1 s: each poll is a /metrics scrape that takes the operator's GIL from its reconciles.
        done = wait_for(lambda: (n := operator.metric(RECONCILES) - done_before) >= strike_after and n, 300, 0.1)
        if fault is None:
            operator.kill()
        else:
            fault()
        struck = time.monotonic() - applied
        at_fault = self.cluster.children()
        if fault is None:
            operator.start()
        recovered = time.monotonic()
        wait_for(lambda: all(ready(s) for s in self.cluster.services()), converge_timeout, 1, self.unready)
        converged = time.monotonic() - recovered
        if fault is None:  # settled: the restarted operator has resumed every one (the next kill counts from here)
            wait_for(lambda: operator.metric(RECONCILES) >= self.count, converge_timeout, every=0.5)
        settled = time.monotonic() - recovered
        self.checked = self.cluster.children()  # converged and settled: also the next trial's before
        problems = check(self.cluster, manifests, before, at_fault, now=self.checked)
        return Result(name, int(done), self.count, len(at_fault), struck, converged, settled, problems)


def wait_for(check: Callable[[], object], timeout: float, every: float, describe: Callable[[], str] = str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(every)
    raise TimeoutError(f"not true within {timeout:.0f} s {describe()}".rstrip())


def restart(component: str, down_seconds: float = 3) -> None:
    """testbed/restart.sh: SIGKILL one control-plane component, start it again after `down_seconds`,
    wait until the API server serves again.

    After etcd, kwok is restarted too. It stands in for the kubelets, and gives up on a pod whose
    status patch failed with the API server's 500 while etcd was down (kwok 0.8 retries refused
    connections, timeouts, 503 and 429 only), where a kubelet resyncs every pod each minute: such a
    pod stayed unready for good (seen once in kwok's log: a pod of a trial that then timed out at 300 s).
    Restarted, kwok lists every pod and plays its stage again."""
    script = [str(TESTBED_DIR / "restart.sh"), component, "--down-seconds", str(down_seconds)]
    subprocess.run(script, check=True, timeout=180)
    if component == "etcd":
        subprocess.run([str(TESTBED_DIR / "restart.sh"), "kwok"], check=True, timeout=180)
