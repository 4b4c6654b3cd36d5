"""Status from what the cluster shows: conditions a platform engineer can act on."""

from __future__ import annotations

from builders import isvc

from unbusy.api import Condition
from unbusy.gpu.request import gpu_request
from unbusy.health import VariantState, explain_unschedulable, merge_conditions, scaling_condition, status
from unbusy.triton.readiness import Readiness

NOW = "2026-11-23T20:00:00Z"


def conditions(*states: VariantState, errors=()) -> dict[str, Condition]:
    service = isvc()
    result = status(service, gpu_request(service.spec.gpu), list(states), list(errors), None, "sel", NOW)
    return {c.type: c for c in result.conditions}


def ready_state(**overrides) -> VariantState:
    values = dict(name="main", weight=100, desired=2, replicas=2, ready=2, updated=2, exists=True, rolled_out=True)
    return VariantState(**values | overrides)


def test_all_replicas_ready():
    found = conditions(ready_state())
    assert (found["Ready"].status, found["Degraded"].status, found["Progressing"].status) == ("True", "False", "False")


def test_waiting_for_replicas_is_progress_not_degradation():
    found = conditions(ready_state(ready=1, updated=1))
    assert found["Ready"].reason == "ReplicasNotReady" and "main 1/2" in found["Ready"].message
    assert found["Progressing"].status == "True" and found["Degraded"].status == "False"


def test_scaled_to_zero_on_purpose_is_settled():
    idle = dict(desired=0, replicas=0, ready=0, updated=0)
    found = conditions(ready_state(**idle))
    assert (found["Ready"].status, found["Ready"].reason) == ("True", "ScaledToZero")
    assert (found["Progressing"].status, found["Degraded"].status) == ("False", "False")
    both = conditions(ready_state(name="a", weight=50, **idle), ready_state(name="b", weight=50, **idle))
    assert both["Ready"].reason == "ScaledToZero" and both["Progressing"].status == "False"


def test_scaling_to_zero_waits_for_the_last_replica_to_go():
    found = conditions(ready_state(desired=0, replicas=1, ready=0, updated=0))
    assert (found["Ready"].status, found["Progressing"].status) == ("False", "True")


def test_traffic_routed_to_a_variant_scaled_to_zero_is_degraded_not_progress():
    serving = ready_state(name="a", weight=90)
    found = conditions(serving, ready_state(name="b", weight=10, desired=0, replicas=0, ready=0, updated=0))
    assert (found["Ready"].status, found["Degraded"].reason) == ("False", "NoReplicasForTraffic")
    assert "variant b: 10% of the traffic is routed to it, but it is scaled to zero" in found["Degraded"].message
    assert found["Progressing"].status == "False"
    # A variant at zero that gets no traffic is simply idle.
    found = conditions(serving, ready_state(name="b", weight=0, desired=0, replicas=0, ready=0, updated=0))
    assert (found["Ready"].reason, found["Progressing"].status) == ("AllReplicasReady", "False")


def test_unschedulable_mig_replica_is_explained():
    message = (
        "0/4 nodes are available: 1 Insufficient nvidia.com/mig-1g.10gb, "
        "3 node(s) didn't match Pod's node affinity/selector."
    )
    service = isvc({"gpu": {"migProfile": "1g.10gb", "product": "A100-80GB"}})
    gpu = gpu_request(service.spec.gpu)
    state = ready_state(desired=8, ready=7, pending=1, unschedulable=message)
    degraded = {c.type: c for c in status(service, gpu, [state], [], None, "s", NOW).conditions}["Degraded"]
    assert degraded.reason == "Unschedulable"
    assert "1 of 8 replicas cannot be scheduled: no node has a free MIG slice 1g.10gb" in degraded.message


def test_replicas_the_replicaset_cannot_create_are_degraded():
    failure = 'pods "x-" is forbidden: no PriorityClass with name inference-critical was found'
    found = conditions(ready_state(ready=0, replica_failure=failure))
    assert found["Degraded"].reason == "ReplicaFailure" and "no PriorityClass" in found["Degraded"].message
    assert found["Ready"].status == "False"


def test_apply_errors_are_degraded():
    found = conditions(ready_state(), errors=["PrometheusRule: the monitoring.coreos.com/v1 API is not served"])
    assert found["Degraded"].reason == "ReconcileFailed"


def test_explanations_for_the_schedulers_words():
    assert explain_unschedulable("0/2 nodes are available: 2 Insufficient memory.", None).startswith(
        "not enough memory on any node"
    )
    assert "taints" in explain_unschedulable("0/1 nodes are available: 1 node(s) had untolerated taint {x: y}.", None)


def test_transition_time_kept_while_the_status_holds():
    old = [Condition(type="Ready", status="True", reason="A", message="", last_transition_time="earlier")]
    kept = merge_conditions(old, [("Ready", "True", "A", "again")], NOW, 2)
    changed = merge_conditions(old, [("Ready", "False", "B", "down")], NOW, 2)
    assert kept[0].last_transition_time == "earlier" and changed[0].last_transition_time == NOW
    assert kept[0].observed_generation == 2


def test_model_readiness_adds_its_own_condition():
    service = isvc()
    gpu = gpu_request(service.spec.gpu)
    answers = {"main": Readiness(False, "model 'resnet50' is not in the server's model repository")}
    result = status(service, gpu, [ready_state()], [], None, "s", NOW, answers)
    found = {c.type: c for c in result.conditions}
    assert found["ModelReady"].status == "False" and "variant main: model 'resnet50'" in found["ModelReady"].message
    assert "ModelReady" not in conditions(ready_state())  # only when the operator probes models


def test_scaling_condition_names_each_held_variant():
    from unbusy.scaling.policy import Decision, PolicyState

    held = Decision(2, "metrics unavailable (Prometheus unreachable): holding 2 replicas", {}, False, PolicyState())
    active = Decision(3, "queue 8/replica", {}, True, PolicyState())
    assert scaling_condition({"main": active})[:3] == ("ScalingActive", "True", "MetricsAvailable")
    _, status_, reason, message = scaling_condition({"main": active, "canary": held})
    assert (status_, reason) == ("False", "MetricsUnavailable") and message.startswith("canary: metrics unavailable")
