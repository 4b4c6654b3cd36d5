"""The e2e metrics emulator serves what a real Triton serves: the same series names, with
Triton's own labels plus the ones the ServiceMonitor's relabelling adds in a cluster."""

from __future__ import annotations

import urllib.request

import pytest
from test_triton_contract import expected_series, metric_shapes, served_metric_shapes

from unbusy import series
from unbusy.sim.emulator import Emulator
from unbusy.sim.model import ServiceModel

pytestmark = pytest.mark.contract

# What the scrape adds to every Triton series (tests/e2e relies on these, as the alerts do).
SCRAPE_LABELS = {series.NAMESPACE, series.INFERENCE_SERVICE, series.VARIANT, series.POD}


@pytest.fixture
def emulated() -> set[tuple[str, frozenset[str]]]:
    pods = {"svc-main-abc12-x1y2z": ("main", True)}
    emulator = Emulator(
        lambda: pods, namespace="ml", inference_service="svc", model="add_sub", service=ServiceModel(), rps=50
    ).start()
    try:
        emulator.tick()
        with urllib.request.urlopen(f"http://{emulator.address}/metrics", timeout=5) as response:
            return metric_shapes(response.read().decode())
    finally:
        emulator.stop()


def _by_name(shapes: set[tuple[str, frozenset[str]]]) -> dict[str, frozenset[str]]:
    """Every label name a series carries in any of its samples (a failure's `reason` varies)."""
    names: dict[str, frozenset[str]] = {}
    for name, labels in shapes:
        names[name] = names.get(name, frozenset()) | labels
    return names


def test_emulator_serves_the_real_series_the_scaling_queries_read(triton, emulated):
    # Triton serves its per-model counters and gauges from the moment the model loads.
    real = _by_name(served_metric_shapes(triton))
    emulated_by_name = _by_name(emulated)
    read_by_the_loop = {
        series.PENDING_REQUESTS,
        series.QUEUE_DURATION_US,
        series.REQUEST_SUCCESS,
        series.REQUEST_FAILURE,
    }
    for name in sorted(read_by_the_loop & expected_series().keys()):
        assert name in real, f"the real Triton does not serve {name}"
        assert name in emulated_by_name, f"the emulator does not serve {name}"
        assert real[name] | SCRAPE_LABELS <= emulated_by_name[name], (name, real[name], emulated_by_name[name])
