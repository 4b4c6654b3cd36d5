"""Replicas on a node that is gone or not Ready: the status says so at once, while their pods
still read Ready (Kubernetes deletes them only a minute or more later)."""

from __future__ import annotations

from builders import isvc

from unbusy.controller.nodes import FORGET_S, LostNodes
from unbusy.gpu.request import gpu_request
from unbusy.health import GONE, NOT_READY, node_trouble, status
from unbusy.kube.observe import Pod, states_of

NOW = "2026-11-23T20:00:00Z"


def deployment(replicas: int, ready: int) -> dict:
    return {
        "metadata": {"generation": 1},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": 1, "replicas": replicas, "readyReplicas": ready, "updatedReplicas": replicas},
    }


def pod(name: str, node: str | None, ready: bool = True, deleting: bool = False) -> Pod:
    return Pod(name, ready=ready, deleting=deleting, unschedulable=None, node=node)


def conditions(states) -> dict:
    service = isvc()
    result = status(service, gpu_request(service.spec.gpu), states, [], None, "sel", NOW)
    return {c.type: c for c in result.conditions}


def test_replicas_on_a_deleted_node_make_the_service_not_ready_and_say_why():
    pods = [pod("a", "n1"), pod("b", "n1"), pod("c", "n2"), pod("d", "n2")]
    (state,) = states_of({"main": deployment(4, 4)}, lambda _: pods, {"main": 100}, {}, {"n1": GONE})
    assert (state.lost, state.lost_on, state.ready) == (2, (("n1", GONE),), 2)
    found = conditions([state])
    assert (found["Ready"].status, found["Ready"].reason) == ("False", "ReplicasLost")
    assert found["Ready"].message == (
        "2 of 4 replicas of main on node n1, which is gone; waiting for Kubernetes to reschedule them"
    )
    assert (found["Degraded"].status, found["Degraded"].reason) == ("True", "ReplicasLost")
    assert status(isvc(), gpu_request(isvc().spec.gpu), [state], [], None, "s", NOW).ready_replicas == 2


def test_not_ready_nodes_and_pods_already_going_are_told_apart():
    pods = [pod("a", "n1"), pod("b", "n2", ready=False), pod("c", "n3"), pod("d", "n1", deleting=True)]
    lost = {"n1": GONE, "n2": NOT_READY}
    (state,) = states_of({"main": deployment(3, 2)}, lambda _: pods, {"main": 100}, {}, lost)
    # d is already being deleted (its replacement is what counts); b was not ready to begin with.
    assert (state.lost, state.ready) == (2, 1)
    message = conditions([state])["Ready"].message
    assert message.startswith("2 of 3 replicas of main on nodes n1 (gone), n2 (NotReady); ")
    assert message.endswith("waiting for the node to be Ready again, or for Kubernetes to evict and reschedule them")


def test_once_the_pods_are_replaced_the_status_is_the_usual_one():
    pods = [pod("c", "n2"), pod("e", "n2")]
    (state,) = states_of({"main": deployment(2, 2)}, lambda _: pods, {"main": 100}, {}, {"n1": GONE})
    assert state.lost == 0 and conditions([state])["Ready"].reason == "AllReplicasReady"


def test_node_trouble_reads_the_ready_condition():
    def node(ready: str | None) -> dict:
        conditions = [{"type": "MemoryPressure", "status": "False"}]
        return {"status": {"conditions": conditions + ([{"type": "Ready", "status": ready}] if ready else [])}}

    assert [node_trouble(node(s)) for s in ("True", "False", "Unknown", None)] == [None, NOT_READY, NOT_READY, None]


def test_lost_nodes_change_only_on_transitions_and_forget_deleted_ones():
    lost = LostNodes()
    assert not lost.note("n1", None, 0)  # the watch's first listing: Ready, nothing to say
    assert lost.note("n1", NOT_READY, 1) and not lost.note("n1", NOT_READY, 2)  # heartbeats of a NotReady node
    assert lost.note("n1", None, 3) and lost.now(3) == {}  # back
    assert lost.note("n1", GONE, 4) and lost.note("n2", NOT_READY, 4)
    assert lost.now(4 + FORGET_S) == {"n1": GONE, "n2": NOT_READY}
    assert lost.now(5 + FORGET_S) == {"n2": NOT_READY}  # the deleted one's pods are long gone
