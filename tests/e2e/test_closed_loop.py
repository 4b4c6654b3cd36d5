"""The closed loop: the operator reads a real Prometheus that scrapes the metrics emulator, which
serves Triton's and DCGM's series for every Ready pod that kwok runs, and scales the fleet.

Load (the emulator's simulated replicas: ~470 requests/s each at most, 64 queued at most):
100 requests/s, a 10x step to 1000/s (one replica rejects about half), back to 100/s. With a
queue target of 3 per replica the step settles at 3-5 replicas, none rejecting; the load
drop goes back to 1 once the (shortened) scale-down stabilisation window has passed.
Then Prometheus goes away under load: replicas hold and ScalingActive turns False; it comes
back and the loop scales out again.

Measured times are printed (pytest -s) and attached to the report as user properties.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from builders import ON_KWOK, manifest

if TYPE_CHECKING:
    from conftest import Loop  # the fixture's type; conftest is not importable at run time

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NAME = "resnet"
BASE_RPS = 100.0
STEP_RPS = 1000.0
QUEUE_TARGET = 3
INTERVAL_S = 5
STABILISATION_S = 20


def service() -> dict:
    rules = {"maxPercentPerStep": 100, "periodSeconds": 5}
    return manifest(
        ON_KWOK
        | {
            "autoscaling": {
                "mode": "operator",
                "minReplicas": 1,
                "maxReplicas": 6,
                "intervalSeconds": INTERVAL_S,
                # A busy simulated GPU reads 100% long before it is at capacity: the queue decides alone.
                "targets": {"queueDepthPerReplica": QUEUE_TARGET, "gpuUtilizationPercent": 0},
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0, "maxPodsPerStep": 4, **rules},
                    "scaleDown": {"stabilizationWindowSeconds": STABILISATION_S, "maxPodsPerStep": 2, **rules},
                },
            },
        },
        name=NAME,
    )


def test_scales_out_recovers_scales_in_and_holds_without_prometheus(closed_loop, record_property) -> None:
    loop: Loop = closed_loop(service(), BASE_RPS)
    eventually = loop.eventually
    measured: dict[str, float] = {}

    def note(key: str, value: float) -> None:
        measured[key] = round(value, 3)
        record_property(key, measured[key])
        print(f"{key}: {measured[key]}")

    # Steady at the base load: one replica, and the loop reads its metrics.
    eventually(lambda: loop.replicas() == (1, 1), 90)
    eventually(lambda: loop.condition("ScalingActive").get("status") == "True", 60)

    # 1. A 10x step: the single replica rejects, the queue fills, the loop scales out.
    step = time.monotonic()
    loop.emulator.set_rate(STEP_RPS)
    out = eventually(lambda: (r := loop.replicas())[0] >= 3 and r, 60)
    note("scale_out_decision_s", time.monotonic() - step)
    note("rejected_fraction_before", loop.emulator.rejected_fraction(int(time.monotonic() - step) + 1))
    # The loop scales the Deployment first, then records why: the status can trail by a write.
    last = eventually(lambda: loop.status().get("lastScaling"), 15)
    assert last["fromReplicas"] == 1 and last["toReplicas"] == out[0], last
    assert "queue" in last["reason"], last
    eventually(lambda: loop.replicas()[1] >= 3, 60)
    note("scale_out_ready_s", time.monotonic() - step)
    time.sleep(15)  # a full window of load on the scaled-out fleet
    eventually(lambda: loop.emulator.rejected_fraction(15) < 0.01, 60)
    note("rejected_fraction_after", loop.emulator.rejected_fraction(15))
    note("replicas_under_step", loop.replicas()[0])

    # 2. The load drops: back to one replica, not before the stabilisation window has passed.
    drop = time.monotonic()
    loop.emulator.set_rate(BASE_RPS)
    eventually(lambda: loop.replicas() == (1, 1), STABILISATION_S + 60)
    note("scale_in_s", time.monotonic() - drop)
    assert measured["scale_in_s"] >= STABILISATION_S - INTERVAL_S  # the window counts from the last high reading
    assert loop.emulator.rejected_fraction(10) < 0.01

    # 3. Prometheus goes away under a new step: replicas hold, ScalingActive=False with the reason.
    loop.prometheus.stop()
    loop.emulator.set_rate(STEP_RPS)
    held = time.monotonic()
    condition = eventually(lambda: (c := loop.condition("ScalingActive")).get("status") == "False" and c, 30)
    assert condition["reason"] == "MetricsUnavailable", condition
    assert "unreachable" in condition["message"], condition
    note("scaling_inactive_s", time.monotonic() - held)
    for _ in range(3 * INTERVAL_S):
        assert loop.replicas()[0] == 1, "replicas must hold while Prometheus is down"
        time.sleep(1)

    # 4. Prometheus returns: the loop reads again and scales out.
    back = time.monotonic()
    loop.prometheus.start()
    eventually(lambda: loop.condition("ScalingActive").get("status") == "True" and loop.replicas()[0] >= 3, 60)
    note("resumed_scale_out_s", time.monotonic() - back)
