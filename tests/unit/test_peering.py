"""The fleet loops' view of kopf peering (they work only while this replica leads, by kopf's
rule), and what they keep of a watch event's body."""

from __future__ import annotations

import datetime
from types import SimpleNamespace

from urllib3.exceptions import HTTPError

from unbusy.controller.fleetloop import FleetLoop, Member, pack, unpack
from unbusy.kube.peering import Peering, leads, led_namespaces

NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)


def record(priority: int, seconds_ago: float, lifetime: int = 60) -> dict:
    seen = NOW - datetime.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


def test_a_live_peer_of_higher_or_equal_priority_takes_the_lead():
    ours = {"me": record(10, 0)}
    assert leads(ours | {"other": record(5, 1)}, "me", 10, NOW)
    assert not leads(ours | {"other": record(100, 1)}, "me", 10, NOW)
    assert not leads(ours | {"other": record(10, 1)}, "me", 10, NOW)  # kopf pauses both


def test_a_peer_whose_record_expired_does_not_count():
    assert leads({"other": record(100, 11, lifetime=10)}, "me", 10, NOW)
    assert not leads({"other": record(100, 9, lifetime=10)}, "me", 10, NOW)
    assert leads({}, "me", 0, NOW)


class PeeringObjects:
    """The API server as led_namespaces reads it: the peering objects' status by (kind, namespace)."""

    def __init__(self, statuses: dict):
        self.statuses = statuses
        self.resources = SimpleNamespace(get=lambda api_version, kind: kind)

    def get(self, kind, name, namespace, serializer):
        if (kind, namespace) not in self.statuses:
            raise HTTPError("not found")
        return {"metadata": {"name": name}, "status": self.statuses[kind, namespace]}


def fresh(priority: int) -> dict:
    return {"priority": priority, "lifetime": 60, "lastseen": datetime.datetime.now(datetime.UTC).isoformat()}


def test_a_namespaced_replica_leads_namespace_by_namespace_as_kopf_pauses_them():
    # `--namespace 'team-*'` serves whatever matches: the loop asks for the namespaces it has members in.
    api = PeeringObjects(
        {
            ("KopfPeering", "team-a"): {"me": fresh(10), "old": fresh(5)},
            ("KopfPeering", "team-b"): {"me": fresh(10), "other": fresh(20)},
        }
    )
    peering = Peering("unbusy", clusterwide=False, identity="me", priority=10)
    assert led_namespaces(api, peering, {"team-a", "team-b", "team-c"}) == {"team-a"}  # team-c: no peering object


def test_a_clusterwide_replica_leads_everywhere_or_nowhere():
    peering = Peering("unbusy", clusterwide=True, identity="me", priority=10)
    leading = PeeringObjects({("ClusterKopfPeering", None): {"me": fresh(10)}})
    paused = PeeringObjects({("ClusterKopfPeering", None): {"me": fresh(10), "other": fresh(10)}})
    assert led_namespaces(leading, peering, {"a", "b"}) == {"a", "b"}
    assert led_namespaces(paused, peering, {"a", "b"}) == set()
    assert led_namespaces(PeeringObjects({}), peering, {"a"}) == set()


def test_a_member_keeps_no_managed_fields_or_kopf_annotations():
    annotations = {"kopf.zalando.org/last-handled-configuration": "{...}", "unbusy.dev/rollout": "pause"}
    meta = {"name": "a", "namespace": "n", "managedFields": [{"manager": "kubectl"}], "annotations": annotations}
    body = {"metadata": meta, "spec": {"replicas": 1}, "status": {"observedGeneration": 1}}
    kept = unpack(Member(pack(body)))
    assert kept == {
        "metadata": {"name": "a", "namespace": "n", "annotations": {"unbusy.dev/rollout": "pause"}},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1},
    }
    assert "managedFields" in body["metadata"]  # the event's own body is left as it was


def test_a_newer_body_keeps_the_loops_memory():
    scaler = FleetLoop(api=None, source=None)
    scaler.join(("n", "a"), pack({"metadata": {"resourceVersion": "1"}}))
    member = scaler._members[("n", "a")]
    member.memory["main"] = "remembered"
    scaler.join(("n", "a"), pack({"metadata": {"resourceVersion": "2"}}))
    assert scaler._members[("n", "a")] is member and unpack(member)["metadata"]["resourceVersion"] == "2"
    assert member.memory == {"main": "remembered"}
