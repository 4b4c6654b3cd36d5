"""What the cluster shows, turned into the InferenceService's status (pure: no I/O, no clock)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from unbusy.api import Condition, InferenceService, InferenceServiceStatus
from unbusy.api.status import GpuStatus, VariantStatus
from unbusy.gpu.request import GpuRequest
from unbusy.scaling.policy import Decision
from unbusy.traffic.rollout import condition as rollout_condition
from unbusy.triton.readiness import Readiness


@dataclass(frozen=True)
class VariantState:
    """One variant's Deployment as observed; `exists` is False until it has been created."""

    name: str
    weight: int
    desired: int = 0
    replicas: int = 0
    ready: int = 0
    updated: int = 0
    exists: bool = False
    rolled_out: bool = False  # the Deployment controller has seen the latest template
    stalled: str | None = None  # ProgressDeadlineExceeded message
    replica_failure: str | None = None  # the ReplicaSet could not create pods (quota, admission ...)
    unschedulable: str | None = None  # the scheduler's message for a Pending replica
    pending: int = 0  # replicas the scheduler could not place
    # Replicas bound to nodes that are gone or not Ready: (node, why) of each such node. Their pods
    # may still read Ready until Kubernetes deletes them; `ready` does not count them.
    lost: int = 0
    lost_on: tuple[tuple[str, str], ...] = ()


GONE = "gone"  # why a node's replicas are lost: the Node object was deleted
NOT_READY = "NotReady"


def node_trouble(node: Mapping[str, Any]) -> str | None:
    """Why replicas bound to this Node cannot serve; None while it is Ready (or has not reported
    yet: no replica is placed on a node before it is Ready)."""
    ready = next((c for c in node.get("status", {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    return NOT_READY if ready is not None and ready.get("status") != "True" else None


def explain_lost(s: VariantState) -> str:
    """What the replicas on lost nodes wait for, e.g. `2 of 4 replicas of main on node n1, which is
    gone; waiting for Kubernetes to reschedule them`."""
    if len(s.lost_on) == 1:
        ((node, why),) = s.lost_on
        where = f"node {node}, which is {why}"
    else:
        where = "nodes " + ", ".join(f"{node} ({why})" for node, why in s.lost_on)
    if all(why == GONE for _, why in s.lost_on):
        waits = "waiting for Kubernetes to reschedule them"
    else:
        waits = "waiting for the node to be Ready again, or for Kubernetes to evict and reschedule them"
    return f"{s.lost} of {s.desired} replicas of {s.name} on {where}; {waits}"


def explain_unschedulable(message: str, gpu: GpuRequest | None) -> str:
    """The scheduler's message, led by what it means for a GPU fleet."""
    causes = []
    if gpu and f"Insufficient {gpu.resource_name}" in message:
        what = f"MIG slice {gpu.mig_profile} ({gpu.resource_name})" if gpu.mig_profile else gpu.resource_name
        causes.append(f"no node has a free {what}")
    elif "Insufficient" in message:
        resources = sorted(set(re.findall(r"Insufficient ([\w./-]*\w)", message)))
        causes.append(f"not enough {', '.join(resources)} on any node")
    if "didn't match Pod's node affinity/selector" in message:
        causes.append("some nodes lack the GPU product label or nodeSelector")
    if "untolerated taint" in message:
        causes.append("some nodes have taints the replicas do not tolerate")
    lead = "; ".join(causes) or "the scheduler found no node"
    return f"{lead} (scheduler: {message.strip()})"


def _condition(type_: str, holds: bool, reason: str, message: str) -> tuple[str, str, str, str]:
    return type_, "True" if holds else "False", reason, message


def _scaled_to_zero(s: VariantState) -> bool:
    """Asks for no replicas and has none left: settled, not waiting for anything."""
    return s.exists and s.desired == 0 and s.replicas == 0


def _conditions(states: list[VariantState], errors: list[str], gpu: GpuRequest | None) -> list[tuple]:
    # Lost replicas lead: their pods may still read Ready, so nothing else would say why they do not serve.
    lost = [explain_lost(s) for s in states if s.lost]
    problems = lost + list(errors)
    idle = [s for s in states if _scaled_to_zero(s)]
    all_idle = bool(states) and len(idle) == len(states)
    for s in states:
        if s.pending and s.unschedulable:
            problems.append(
                f"variant {s.name}: {s.pending} of {s.desired} replicas cannot be scheduled: "
                f"{explain_unschedulable(s.unschedulable, gpu)}"
            )
        if s.stalled:
            problems.append(f"variant {s.name}: rollout stalled: {s.stalled}")
        if s.replica_failure:
            problems.append(f"variant {s.name}: replicas cannot be created: {s.replica_failure}")
        if s in idle and s.weight > 0 and not all_idle:
            problems.append(f"variant {s.name}: {s.weight}% of the traffic is routed to it, but it is scaled to zero")
    waiting = [
        s for s in states if s not in idle and (not s.exists or s.ready < s.desired or (s.weight > 0 and s.ready == 0))
    ]
    rolling = [s for s in states if s.exists and (not s.rolled_out or s.updated < s.desired)]

    if problems:
        ready = _condition("Ready", False, "ReplicasLost" if lost else "Degraded", problems[0])
    elif waiting:
        counts = ", ".join(f"{s.name} {s.ready}/{s.desired}" for s in waiting)
        ready = _condition("Ready", False, "ReplicasNotReady", f"waiting for ready replicas: {counts}")
    elif all_idle:
        ready = _condition("Ready", True, "ScaledToZero", "scaled to zero: no replica runs or serves until scaled up")
    else:
        ready = _condition("Ready", True, "AllReplicasReady", "every variant has all its replicas ready")

    if rolling or (waiting and not problems):
        names = ", ".join(s.name for s in (rolling or waiting))
        progressing = _condition("Progressing", True, "RollingOut", f"replicas are being updated or started: {names}")
    else:
        progressing = _condition("Progressing", False, "Stable", "no rollout in progress")

    if problems:
        kinds = {
            "cannot be scheduled": "Unschedulable",
            "cannot be created": "ReplicaFailure",
            "scaled to zero": "NoReplicasForTraffic",
        }
        found = next((r for words, r in kinds.items() if any(words in p for p in problems)), "ReconcileFailed")
        reason = "ReplicasLost" if lost else found
        degraded = _condition("Degraded", True, reason, "; ".join(problems))
    else:
        degraded = _condition("Degraded", False, "AsExpected", "no problems seen")
    return [ready, progressing, degraded]


def model_condition(readiness: Mapping[str, Readiness]) -> tuple[str, str, str, str]:
    """ModelReady: Triton itself, asked through each variant's Service, has the model loaded."""
    failing = [f"variant {variant}: {answer.reason}" for variant, answer in readiness.items() if not answer.ready]
    if failing:
        return _condition("ModelReady", False, "ModelNotReady", "; ".join(failing))
    return _condition("ModelReady", True, "ModelLoaded", "Triton is live and ready with the model loaded")


def scaling_condition(decisions: Mapping[str, Decision]) -> tuple[str, str, str, str]:
    """ScalingActive: False, with each held variant's reason, while the loop cannot read its metrics."""
    held = {name: d for name, d in decisions.items() if not d.scaling_active}
    if held:
        reasons = "; ".join(f"{name}: {d.reason}" for name, d in held.items())
        return _condition("ScalingActive", False, "MetricsUnavailable", reasons)
    return _condition(
        "ScalingActive", True, "MetricsAvailable", "replicas follow the metrics in spec.autoscaling.targets"
    )


def merge_conditions(
    previous: list[Condition], fresh: list[tuple], now: str, generation: int | None
) -> list[Condition]:
    """Fresh conditions, keeping lastTransitionTime where the status did not change."""
    before = {c.type: c for c in previous}
    merged = {c.type: c for c in previous}
    for type_, status, reason, message in fresh:
        old = before.get(type_)
        since = old.last_transition_time if old and old.status == status else now
        merged[type_] = Condition(
            type=type_,
            status=status,
            reason=reason,
            message=message,
            last_transition_time=since,
            observed_generation=generation,
        )
    return [merged[t] for t in sorted(merged)]


def merged_wire_conditions(
    status: dict[str, Any], fresh: list[tuple], now: str, generation: int | None
) -> list[dict[str, Any]]:
    """merge_conditions over a status as the API server has it, back in wire form."""
    previous = [Condition.model_validate(c) for c in status.get("conditions") or []]
    return [c.to_wire() for c in merge_conditions(previous, fresh, now, generation)]


def invalid_spec_conditions(problems: list[str]) -> list[tuple]:
    message = "; ".join(problems)
    return [
        ("Ready", "False", "InvalidSpec", message),
        ("Degraded", "True", "InvalidSpec", message),
        ("Progressing", "False", "InvalidSpec", "nothing is rolled out until the spec is fixed"),
    ]


def status(
    isvc: InferenceService,
    gpu: GpuRequest,
    states: list[VariantState],
    errors: list[str],
    url: str | None,
    selector: str,
    now: str,
    model_readiness: Mapping[str, Readiness] | None = None,
) -> InferenceServiceStatus:
    previous = isvc.status or InferenceServiceStatus()
    generation = isvc.metadata.generation
    ready = sum(s.ready for s in states)
    desired = sum(s.desired for s in states)
    fresh = _conditions(states, errors, gpu) + ([model_condition(model_readiness)] if model_readiness else [])
    rolling_out = rollout_condition(previous.rollouts)
    if rolling_out:  # a canary rollout says more than the Deployments' own progress
        fresh = [c for c in fresh if c[0] != "Progressing"] + [rolling_out]
    return previous.model_copy(
        update={
            "observed_generation": generation,
            "conditions": merge_conditions(previous.conditions, fresh, now, generation),
            "replicas": sum(s.replicas for s in states),
            "ready_replicas": ready,
            "desired_replicas": desired,
            "replica_summary": f"{ready}/{desired}",
            "selector": selector,
            "url": url,
            "weights": ",".join(f"{s.name}={s.weight}" for s in states),
            "variants": [
                VariantStatus(
                    name=s.name,
                    weight=s.weight,
                    replicas=s.replicas,
                    ready_replicas=s.ready,
                    desired_replicas=s.desired,
                    ready=s.exists and s.ready >= s.desired,
                )
                for s in states
            ],
            "gpu": GpuStatus(mig_profile=gpu.mig_profile, resource_name=gpu.resource_name, summary=gpu.summary),
        }
    )
