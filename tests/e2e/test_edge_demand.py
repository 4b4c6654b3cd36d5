"""Demand from the edge through a real Prometheus: the metrics emulator serves ingress-nginx's
request counter in front of its simulated replicas, Prometheus scrapes it, and the scaling
loop's source reads each variant's offered load, refused requests included; a user's PromQL
that Prometheus refuses is reported naming the field. No testbed: the pods are given, not
listed from an API server.

Load: 1,600 requests/s over two replicas of ~470/s each (one per weighted variant): each
variant is offered about 800/s and refuses about 330/s of them.
"""

from __future__ import annotations

import pytest
from builders import manifest, small_model

from polling import eventually
from unbusy.api import InferenceService, load
from unbusy.demo.processes import Prometheus
from unbusy.render.edge import DemandQueries, demand_queries
from unbusy.scaling import fleet
from unbusy.scaling.fleet import VariantRead
from unbusy.scaling.source import PrometheusSource, SourceError
from unbusy.sim.emulator import Emulator

pytestmark = pytest.mark.e2e

RPS = 1600.0
WINDOW_S = 10
SPEC = {
    "routing": {"host": "svc.example.com"},
    "variants": [
        {"name": "stable", "weight": 90},
        {"name": "canary", "weight": 10},
        {"name": "fallback", "weight": 0},  # no pods, no traffic
    ],
}
PODS = {"svc-stable-7d9f8c6b5d-x2k4p": ("stable", True), "svc-canary-6c8d9f7b5c-q8w7e": ("canary", True)}


def test_the_loop_reads_each_variants_demand_with_its_503s(prometheus_binary, tmp_path):
    service = load(manifest(SPEC, name="svc", namespace="ml"))
    emulator = Emulator(
        lambda: PODS,
        namespace="ml",
        inference_service="svc",
        model="resnet50",
        service=small_model(),  # 470 rps a pod: part of the 800 each gets is refused
        rps=RPS,
        isvc=service,
    ).start()
    prometheus = Prometheus(prometheus_binary, tmp_path, [emulator.address])
    try:
        prometheus.start()
        source = PrometheusSource(prometheus.url)
        shares = {v.name: v.weight / 100 for v in service.spec.effective_variants()}

        def queries(of: InferenceService, variant: str) -> DemandQueries:
            return demand_queries(of, variant, shares[variant], WINDOW_S)

        def demand(variant: str, of: InferenceService = service):
            """As the scaling loop reads it: the fleet's grouped queries, this variant's rows."""
            read = VariantRead("ml", of.spec.model.name, False, {}, queries(of, variant))
            plan = fleet.plan([read], WINDOW_S)
            return fleet.Answers(plan, source.read(plan.queries)).demand(read)

        def settled():
            # A full window of scrapes, so that the rate is the load's and not the first seconds'.
            return all(demand(v) for v in ("stable", "canary")) and emulator.fleet.now > 2 * WINDOW_S

        eventually(settled, 60, describe=lambda: emulator.render()[-2000:])
        offered = RPS / len(PODS)  # the emulator splits arrivals over the ready pods
        for variant in ("stable", "canary"):
            got = demand(variant)
            assert (got.source, got.measurable) == ("nginx", True)
            # Poisson arrivals over a 10 s window: within 15% of the offered rate.
            assert offered * 0.85 < got.rps < offered * 1.15, (variant, got)
            assert 0.2 * got.rps < got.rejected_rps < 0.6 * got.rps, (variant, got)
            # The variant's own queries (the alerts' and KEDA's) read the same, from the same scrapes.
            own = queries(service, variant)
            assert source.value(own.requests) == pytest.approx(got.rps, rel=0.05), variant
            assert source.value(own.rejected) == pytest.approx(got.rejected_rps, rel=0.05), variant
        assert demand("fallback") is None  # no series at all: no demand read, not 0

        # A user's template that Prometheus cannot parse: the loop says which field to fix.
        broken = {"source": "promql", "query": "sum(rate(nginx_ingress_controller_requests[$window])"}
        templated = load(manifest({**SPEC, "autoscaling": {"demand": broken}}, name="svc", namespace="ml"))
        with pytest.raises(SourceError, match=r"^spec\.autoscaling\.demand\.query: Prometheus at .* refused a query"):
            demand("stable", of=templated)
    finally:
        prometheus.stop()
        emulator.stop()
