"""The closed loop behind ingress-nginx: demand read at the edge (503s included) scales the main
variant out, the demand its ready replicas cannot serve is shed to the fallback variant through
the canary Ingress's weight, and the weight comes back once the load is served again.

Replicas of a known capacity (spec.model.serving: 8 requests per 17 ms, 470/s each, what the
emulator serves and what the loop starts from). main may grow to 3 replicas, which serve
3 x 470 x 95% = 1,340/s of the 1,700/s step: the ~360/s beyond them are the fallback's
(one replica, 470 x 90% = 423/s spare), so the step is served without 503s at its maximum.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from builders import ON_KWOK, manifest, small_model

if TYPE_CHECKING:
    from conftest import Loop

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NAME = "shed"
BASE_RPS = 200.0
STEP_RPS = 1700.0
INTERVAL_S = 5
RESTORE_S = 10


def service() -> dict:
    rules = {"maxPercentPerStep": 100, "periodSeconds": 5}
    return manifest(
        ON_KWOK
        | {
            "model": {
                "name": "resnet50",
                "repository": "s3://models/vision",
                "config": {"maxBatchSize": 8, "dynamicBatching": {"maxQueueSize": 64}},
                "serving": small_model().serving.to_wire(),  # 470 rps a replica
            },
            "variants": [
                {"name": "main", "weight": 100, "maxReplicas": 3},
                {"name": "small", "weight": 0, "minReplicas": 1, "maxReplicas": 1},
            ],
            "fallback": {"variant": "small", "rpsPerReplica": 470, "restoreSeconds": RESTORE_S},
            "routing": {"host": "shed.example.com"},
            "autoscaling": {
                "mode": "operator",
                "minReplicas": 1,
                "intervalSeconds": INTERVAL_S,
                "demand": {"source": "nginx"},
                "targets": {"capacityUtilizationPercent": 80, "queueDepthPerReplica": 0, "gpuUtilizationPercent": 0},
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0, "maxPodsPerStep": 4, **rules},
                    "scaleDown": {"stabilizationWindowSeconds": 20, "maxPodsPerStep": 2, **rules},
                },
            },
        },
        name=NAME,
    )


def test_a_step_scales_out_from_edge_demand_sheds_to_the_fallback_and_restores(closed_loop, record_property):
    loop: Loop = closed_loop(service(), BASE_RPS)
    eventually = loop.eventually

    def note(key: str, value: float) -> None:
        record_property(key, round(value, 3))
        print(f"{key}: {value:.3f}")

    eventually(lambda: loop.replicas("main") == (1, 1) and loop.replicas("small") == (1, 1), 90)
    eventually(lambda: loop.condition("ScalingActive").get("status") == "True", 60)
    assert loop.weights() == {"main": 100} and loop.status().get("shedding", []) == []

    # The step: the edge counts every request, 503s included; main scales out on that demand and,
    # while its replicas cannot serve it, weight moves to the fallback's canary Ingress.
    step = time.monotonic()
    loop.emulator.set_rate(STEP_RPS)
    shed = eventually(lambda: (w := loop.weights()).get("small", 0) > 0 and w, 60)
    note("shed_s", time.monotonic() - step)
    status = loop.status()
    assert status["shedding"][0]["variant"] == "main" and status["fallback"].endswith("main->small"), status
    assert any("of traffic on small" in m for m in loop.events("Shed")), loop.events("Shed")
    eventually(lambda: loop.replicas("main") == (3, 3), 60)
    last = loop.status()["lastScaling"]
    assert last["demandSource"] == "nginx" and last["reason"].startswith("demand "), last
    note("scaled_out_s", time.monotonic() - step)

    # At maxReplicas the excess stays on the fallback, and once the demand's rate window (60 s)
    # has seen the whole step, the step is served.
    eventually(lambda: loop.emulator.rejected_fraction(10) < 0.02, 90)
    note("served_s", time.monotonic() - step)
    assert 0 < loop.weights().get("small", 0) <= 50, shed

    # The load drops: main's ready replicas cover it, and restoreSeconds later the weight is back.
    drop = time.monotonic()
    loop.emulator.set_rate(BASE_RPS)
    eventually(lambda: loop.weights() == {"main": 100} and loop.status().get("shedding", []) == [], RESTORE_S + 120)
    restored = time.monotonic() - drop
    note("restored_s", restored)
    assert restored >= RESTORE_S - INTERVAL_S  # hysteresis: not at the first tick that saw it covered
    assert any(" -> 0% of traffic on small" in m for m in loop.events("Restored")), loop.events("Restored")
