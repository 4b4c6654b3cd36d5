"""sim/answer.py: a pod's address answering Triton's HTTP inference requests on the wall clock, and the
load generator (demo/http_load.py) counting what came back; on loopback addresses, a second or two."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from polling import eventually
from unbusy.demo.http_load import OpenLoad, send
from unbusy.serving.batcher import Batcher
from unbusy.serving.model import ServiceModel
from unbusy.sim.answer import Answerers, LiveBatcher
from unbusy.sim.emulator import Emulator


def _batcher(service_ms: float, batch: int = 1, max_queue: int = 0, delay_ms: float = 0.0) -> Batcher:
    return Batcher(batch, delay_ms / 1000, max_queue, service_ms / 1000, 0.0, 1e-9, 0.0, 0.0)


def test_a_batch_takes_its_service_time_and_a_full_queue_refuses():
    replica = LiveBatcher(_batcher(100, batch=1, max_queue=1))
    try:
        started = time.monotonic()
        assert replica.infer() == 200
        assert 0.09 < time.monotonic() - started < 0.5
    finally:
        replica.stop()
    assert replica.infer() == 500  # stopped: nothing runs its batch any more


def test_every_pod_answers_on_its_address_and_says_which_it_is():
    answerers = Answerers("resnet50", lambda variant: _batcher(2, batch=8), port=0)
    try:
        answerers.sync({"svc-main-a": ("main", "127.77.0.1"), "svc-canary-a": ("canary", "127.77.0.2")})
        for name, server in answerers.servers.items():
            ip, port = server.server.server_address[:2]
            assert ip in ("127.77.0.1", "127.77.0.2")
            assert urllib.request.urlopen(f"http://{ip}:{port}/v2/health/ready", timeout=5).status == 200
            received = send(f"{ip}:{port}", "any", "/v2/models/resnet50/infer", count=20, concurrency=4)
            assert received.answers == {(server.variant, 200): 20}, name
        answerers.sync({"svc-main-a": ("main", "127.77.0.1")})  # the canary pod went: it stops answering
        assert list(answerers.servers) == ["svc-main-a"]
    finally:
        answerers.stop()
    assert answerers.servers == {}


def test_past_capacity_the_queue_fills_and_requests_get_triton_s_503():
    answerers = Answerers("resnet50", lambda variant: _batcher(50, batch=1, max_queue=1), port=0)
    try:
        answerers.sync({"pod": ("main", "127.77.0.3")})
        address = "{}:{}".format(*answerers.servers["pod"].server.server_address[:2])
        received = send(address, "any", "/v2/models/resnet50/infer", count=40, concurrency=8)
        # One in the batch and one waiting at a time: of 8 clients at once, most find the queue full.
        assert received.of("main", 503) > received.of("main", 200) > 0
        assert received.total == 40
        counted = answerers.pods()["pod"]  # what the emulator's /metrics shows of it
        assert (counted.rejected, counted.served) == (received.of("main", 503), received.of("main", 200))
        assert counted.executions >= counted.served / 2 and counted.request_us >= counted.served * 50_000
        request = urllib.request.Request(f"http://{address}/v2/models/other/infer", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(request, timeout=5)
    finally:
        answerers.stop()


def test_the_emulator_s_metrics_count_the_real_requests_its_pods_answered():
    emulator = Emulator(
        lambda: {"resnet-main-a": ("main", True)},
        namespace="ml",
        inference_service="resnet",
        model="resnet50",
        service=ServiceModel(),
        answer=lambda: {"resnet-main-a": ("main", "127.77.0.4")},
        answer_port=0,
    )
    servers = emulator.answerers.servers
    emulator.start()
    try:
        eventually(lambda: "resnet-main-a" in servers, timeout=5, every=0.05)  # its first tick: Ready, answering
        address = "{}:{}".format(*servers["resnet-main-a"].server.server_address[:2])
        assert send(address, "any", "/v2/models/resnet50/infer", count=30, concurrency=3).of("main", 200) == 30

        def scraped() -> tuple[str, str] | None:
            lines = emulator.render().splitlines()
            success = next((line for line in lines if line.startswith("nv_inference_request_success{")), "")
            gpu = next((line for line in lines if line.startswith("DCGM_FI_DEV_GPU_UTIL{")), " 0")
            # The next tick reads the GPU busy with the 30 requests of the second before.
            return (success, gpu) if success.endswith(" 30") and float(gpu.rpartition(" ")[2]) > 0 else None

        success, _ = eventually(scraped, timeout=5, every=0.1)
        assert 'namespace="ml",inferenceservice="resnet",variant="main",pod="resnet-main-a"' in success
    finally:
        emulator.stop()


def test_an_open_load_sends_at_its_rate_whatever_the_answers_take_and_counts_what_came_back():
    # One replica that answers a request in 300 ms, one at a time: 40 requests/s arrive anyway,
    # each on a free connection, and the queue of 4 refuses what does not fit.
    answerers = Answerers("resnet50", lambda variant: _batcher(300, batch=1, max_queue=4), port=0)
    try:
        answerers.sync({"pod": ("main", "127.77.0.5")})
        address = "{}:{}".format(*answerers.servers["pod"].server.server_address[:2])
        with OpenLoad(address, "any", "/v2/models/resnet50/infer", rate=40, seed=1) as load:
            time.sleep(2.0)
            load.set_rate(0)
            time.sleep(2.0)  # the last answers come back
            received = load.take()
        assert 50 <= received.sent <= 110  # Poisson, 80 expected
        assert received.errors == {} and received.total == received.sent
        # The 2 s at 300 ms a request, and the 4 queued at the end: 11 or 12 answered, the rest refused.
        answered = received.of("main", 200)
        assert 6 <= answered <= 12 and received.of("main", 503) == received.sent - answered
        # Answered ones waited their turn: from 300 ms (the first) to the queue's length after it.
        assert received.latency.total == received.of("main", 200)
        assert received.latency.quantile(0.0) >= 250 and received.latency.quantile(1.0) <= 2_000
        assert load.take().sent == 0  # counting starts afresh
    finally:
        answerers.stop()
