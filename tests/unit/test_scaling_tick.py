"""One tick of the scaling loop (controller/autoscale.py) against an API server that records its
writes: the replicas, the weight shed to the fallback and the status are decided first, and the
status is written once, in one patch."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from builders import manifest

from unbusy.api import load
from unbusy.controller import autoscale
from unbusy.health import VariantState
from unbusy.render.edge import demand_queries
from unbusy.scaling import fleet
from unbusy.scaling.fleet import Answers, VariantRead

STATUS = ("InferenceService", "status")
SCALE = ("Deployment", "scale")
# main serves 1,000 requests/s a replica; small, the fallback, 2,000 (utilizationPercent 90).
SPEC = {
    "variants": [{"name": "main", "weight": 100}, {"name": "small", "weight": 0}],
    "routing": {"host": "resnet.example.com"},
    "fallback": {"variant": "small", "rpsPerReplica": 2000, "maxPercent": 50},
    "autoscaling": {
        "capacity": {"rpsPerReplica": 1000},
        "demand": {"source": "promql", "query": "sum(rate(requests_total{service=$service}[$window]))"},
    },
}


class RecordingApi:
    """The API server as a tick calls it (dynamic client's resources.get, patch, create): every
    write is recorded as (resource, body); a status patch is merged into the object it keeps."""

    def __init__(self, body: dict[str, Any]):
        self.body = body
        self.writes: list[tuple[Any, dict[str, Any]]] = []
        self.resources = SimpleNamespace(
            get=lambda api_version, kind: SimpleNamespace(kind=kind, status=(kind, "status"), scale=(kind, "scale"))
        )

    def patch(self, resource: Any, name: str, namespace: str, body: dict, content_type: str, serializer: Any) -> dict:
        self.writes.append((resource, body))
        if resource != STATUS:
            return {}
        meta = self.body["metadata"]
        assert body["metadata"]["resourceVersion"] == meta["resourceVersion"], "a guarded write of a stale object"
        version = str(int(meta["resourceVersion"]) + 1)
        status = (self.body.get("status") or {}) | body["status"]
        self.body = {**self.body, "metadata": {**meta, "resourceVersion": version}, "status": status}
        return self.body

    def create(self, resource: Any, body: dict, namespace: str, serializer: Any) -> dict:
        self.writes.append((resource.kind, body))
        return body

    def written(self, what: Any) -> list[dict[str, Any]]:
        return [body for resource, body in self.writes if resource == what]


def test_a_tick_that_scales_out_and_sheds_to_the_fallback_writes_the_status_once():
    body = manifest(SPEC)
    body["metadata"] |= {"resourceVersion": "7", "generation": 1, "uid": "u1"}
    service = load(body)
    # 2,500 requests/s on main's 2 ready replicas: 2 x 1,000 x 95% = 1,900 served, 600 (24%) shed.
    offered = {"main": 2500.0, "small": 0.0}
    reads = {
        variant: VariantRead(
            "ml", "resnet50", False, {f"resnet-{variant}-0": True}, demand_queries(service, variant, 1.0, 60)
        )
        for variant in offered
    }
    plan = fleet.plan(reads.values(), autoscale.WINDOW_S)
    rows = {query: [] for query in plan.queries} | {reads[v].demand.requests: [({}, rps)] for v, rps in offered.items()}
    live = {
        "main": VariantState("main", 100, desired=2, replicas=2, ready=2, exists=True),
        "small": VariantState("small", 0, desired=1, replicas=1, ready=1, exists=True),
    }
    api, states = RecordingApi(body), {}

    done = autoscale.tick(api, autoscale.Look(body, live, reads), Answers(plan, rows), states)

    assert api.written(SCALE) == [{"spec": {"replicas": 4}}]  # main: 2,500 / (1,000 x 80%) -> 4
    [status] = [patch["status"] for patch in api.written(STATUS)]
    assert [(c["type"], c["status"]) for c in status["conditions"]] == [("ScalingActive", "True")]
    assert (status["lastScaling"]["variant"], status["lastScaling"]["toReplicas"]) == ("main", 4)
    assert [(s["variant"], s["percent"]) for s in status["shedding"]] == [("main", 24)]
    assert status["fallback"] == "24% main->small"
    assert [e["reason"] for e in api.written("Event")] == ["Scaled", "Shed"]
    # The routes follow the object as written.
    assert done.reroute == api.body and done.reroute["metadata"]["resourceVersion"] == "8"

    # The next tick, main's 2 new replicas still loading: the same weights, so the routes stay and
    # no Event; the status is written once at most (the moves' needed_at, where a second has passed).
    api.writes.clear()
    live["main"] = VariantState("main", 100, desired=4, replicas=4, ready=2, exists=True)
    again = autoscale.tick(api, autoscale.Look(api.body, live, reads), Answers(plan, rows), states)
    assert again.reroute is None and api.written(SCALE) == [] and api.written("Event") == []
    assert len(api.written(STATUS)) <= 1
    assert [(s["variant"], s["percent"]) for s in api.body["status"]["shedding"]] == [("main", 24)]


def test_a_fallback_the_routes_send_nothing_has_no_proxy_series_and_still_takes_the_excess():
    # A proxy's counter of a backend starts with its first request (Traefik's, Envoy's): the fallback
    # at weight 0 has none. Read as unknown, it held the weights while main refused 40% (issue 21).
    body = manifest(SPEC)
    body["metadata"] |= {"resourceVersion": "7", "generation": 1, "uid": "u1"}
    service = load(body)
    reads = {
        variant: VariantRead(
            "ml", "resnet50", False, {f"resnet-{variant}-0": True}, demand_queries(service, variant, 1.0, 60)
        )
        for variant in ("main", "small")
    }
    plan = fleet.plan(reads.values(), autoscale.WINDOW_S)
    rows = {query: [] for query in plan.queries} | {reads["main"].demand.requests: [({}, 2500.0)]}
    live = {
        "main": VariantState("main", 100, desired=2, replicas=2, ready=2, exists=True),
        "small": VariantState("small", 0, desired=1, replicas=1, ready=1, exists=True),
    }
    api = RecordingApi(body)
    autoscale.tick(api, autoscale.Look(body, live, reads), Answers(plan, rows), {})
    [status] = [patch["status"] for patch in api.written(STATUS)]
    assert [(s["variant"], s["percent"]) for s in status["shedding"]] == [("main", 24)]

    # Routed but unread (its series gone), the fallback's load is unknown: the weights are held.
    live["small"] = VariantState("small", 24, desired=1, replicas=1, ready=1, exists=True)
    api = RecordingApi(body)
    autoscale.tick(api, autoscale.Look(body, live, reads), Answers(plan, rows), {})
    [status] = [patch["status"] for patch in api.written(STATUS)]
    assert not status.get("shedding")


def test_an_llm_sheds_to_its_fallback_counting_its_tokens_back_into_requests():
    from unbusy.scaling import tokens
    from unbusy.scaling.demand import Demand
    from unbusy.scaling.policy import ReplicaSample

    llm = {
        "name": "llama",
        "repository": "pvc://model-store/llm",
        "config": {"backend": "vllm", "maxBatchSize": 0},
        "llm": {
            "slo": {"ttftP99Ms": 2000},
            "capacity": {"promptTokensPerSecond": 20000, "outputTokensPerSecond": 2000},
        },
    }
    spec = SPEC | {"model": llm, "fallback": {"variant": "small", "rpsPerReplica": 12, "maxPercent": 50}}
    spec["autoscaling"] = spec["autoscaling"] | {"capacity": {}, "maxReplicas": 2}
    planned = load(manifest(spec))
    costs = tokens.TokenCosts(20000, 2000)
    # 20 conversation requests/s (326.4 weighted tokens each: 6,528 tok/s) offered to main's 2 ready
    # replicas of 2,000 tok/s (6.1 requests/s each), which answer 6 each; at most 2 replicas.
    pod, idle = tokens.PodTokens(6 * 1154, 6 * 211), tokens.PodTokens(0, 0)
    ready, none = (ReplicaSample(ready=True), ReplicaSample(ready=True)), tokens.Latency()
    main = tokens.observation(2, ready, [pod, pod], Demand(20, 0, "nginx", True), 12, none, costs)
    small = tokens.observation(1, ready[:1], [idle], Demand(0, 0, "nginx", True), 0, none, costs)
    observed = {"main": (None, main), "small": (None, small)}
    live = {
        "main": VariantState("main", 100, desired=2, replicas=2, ready=2, exists=True),
        "small": VariantState("small", 0, desired=1, replicas=1, ready=1, exists=True),
    }
    decided = autoscale.decide_tick(planned, planned, observed, live, {}, 0.0, "2026-12-07T00:00:00Z")
    assert decided.decisions["main"].replicas == 2 and main.demand.per_request == pytest.approx(326.4)
    # main serves 2 x 6.13 x 95% = 11.6 of the 20 requests/s: the excess, 8.4 (41%), goes to small,
    # which takes up to 12 x 90% = 10.8 requests/s. Counted in tokens, small's 12 would read as 12 tok/s.
    assert decided.shift.plan.percent == 41
