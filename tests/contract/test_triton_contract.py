"""Contract with the real Triton: the series Unbusy queries exist on its /metrics, with the labels
the queries select on, and the operator's readiness check reads it right.

The expected series are not typed here: they are every `nv_*` name that unbusy.series defines,
so a rename there that Triton does not follow fails this test. `served_metric_shapes` returns
the (name, label names) a real Triton serves, for comparing the metrics emulator with it.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from tritonclient.utils import InferenceServerException

from unbusy import series
from unbusy.render.alerts import P99
from unbusy.triton import readiness

if TYPE_CHECKING:
    from conftest import TritonServer  # the fixture's type; conftest is not importable at run time

pytestmark = pytest.mark.contract

# The models conftest.py puts in the server's repository (their batching and delays are there).
ADD_SUB = "add_sub"
SLOW = "slow"

# Triton's own labels on every per-model series (pod, namespace, ... come from the scrape).
TRITON_LABELS = frozenset({"model", "version"})
# Labels a query selects on beyond Triton's own, per series.
EXTRA_LABELS = {
    series.REQUEST_FAILURE: frozenset({series.REASON}),
    series.REQUEST_SUMMARY_US: frozenset({series.QUANTILE}),
}

ADD_SUB_SEQUENTIAL = 3
ADD_SUB_BURST = 16  # 4 batches of 4 at 50 ms each: the queue holds up to 12 for a while
SLOW_BURST = 6  # queue of 1, 100 ms queue timeout, 400 ms per request: 1 runs, 1 times out, 4 find the queue full

# Two ways Triton answers 503 "server busy", and what nv_inference_request_failure makes of them.
QUEUE_FULL = "Exceeds maximum queue size"  # refused on arrival: not counted as a failure by Triton 2.51
QUEUE_TIMEOUT = "Request timeout expired"  # rejected after waiting too long: counted with reason REJECTED


# Named in series.py but not served by these models of Triton's core: the TensorRT-LLM backend's own
# families, and Triton's first-response histogram, which it keeps for decoupled (streaming) models with
# histogram_latencies on. tests/contract/test_llm_contract.py checks them against the backend's and
# Triton core's source (tests/contract/data/).
ELSEWHERE = frozenset(
    {
        series.FIRST_RESPONSE_MS,
        series.TRTLLM_REQUESTS,
        series.TRTLLM_KV_BLOCKS,
        series.TRTLLM_INPUT_TOKENS,
        series.TRTLLM_OUTPUT_TOKENS,
    }
)


def expected_series() -> dict[str, frozenset[str]]:
    """Every Triton series unbusy.series names, with the label names Unbusy's queries select on."""
    names = {
        value
        for key, value in vars(series).items()
        if key.isupper() and isinstance(value, str) and value.startswith("nv_") and value not in ELSEWHERE
    }
    return {name: TRITON_LABELS | EXTRA_LABELS.get(name, frozenset()) for name in names}


def parse(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition, named as Prometheus stores them.

    prometheus_client's parser renames the samples of a counter declared without `_total`
    (all of Triton's) to `<name>_total`, its OpenMetrics form; Prometheus keeps the name as
    exposed, and that is the name queries use. So such samples get their exposed name back.
    """
    declared = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ") and len(line.split()) > 2}
    samples = []
    for family in text_string_to_metric_families(text):
        renamed = family.type == "counter" and family.name in declared
        for sample in family.samples:
            if renamed and sample.name == family.name + "_total":
                sample = sample._replace(name=family.name)
            samples.append(sample)
    return samples


def metric_shapes(text: str) -> set[tuple[str, frozenset[str]]]:
    """(sample name, label names) of every sample in a Prometheus text exposition.

    Sample names, not family names: a summary's `_count` and `_sum` are what PromQL reads.
    """
    return {(sample.name, frozenset(sample.labels)) for sample in parse(text)}


def served_metric_shapes(server: TritonServer) -> set[tuple[str, frozenset[str]]]:
    """The (name, label names) a real Triton serves on /metrics now: the shapes the emulator must serve."""
    return metric_shapes(server.scrape())


def value(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels`."""
    found = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
    assert len(found) == 1, f"expected one {name}{labels}, found {len(found)}"
    return found[0]


# --- traffic ------------------------------------------------------------------------------


def _inputs(a: np.ndarray, b: np.ndarray) -> list[httpclient.InferInput]:
    inputs = []
    for name, array in (("INPUT0", a), ("INPUT1", b)):
        tensor = httpclient.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def _infer(server: TritonServer, model: str, seed: int, start: threading.Barrier | None = None) -> None:
    """One request for a batch of 1; raises InferenceServerException when Triton refuses it."""
    a = np.full((1, server.vector_len), seed, dtype=np.float32)
    b = np.arange(server.vector_len, dtype=np.float32).reshape(1, server.vector_len)
    # One client per thread: tritonclient.http runs on gevent, whose hub is per thread.
    with httpclient.InferenceServerClient(server.http_url, network_timeout=30) as client:
        if start is not None:
            start.wait(timeout=10)
        result = client.infer(model, _inputs(a, b), model_version=server.model_version)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


@dataclass(frozen=True)
class Burst:
    """What a burst of concurrent requests to one model came to."""

    succeeded: int
    refused: tuple[InferenceServerException, ...]
    max_pending: float  # the most nv_inference_pending_request_count read on /metrics during the burst

    @property
    def queue_full(self) -> int:
        return sum(QUEUE_FULL in error.message() for error in self.refused)

    @property
    def timed_out(self) -> int:
        return sum(QUEUE_TIMEOUT in error.message() for error in self.refused)


def burst(server: TritonServer, model: str, count: int, head_start_s: float = 0.0) -> Burst:
    """`count` requests sent together, with /metrics polled while they are in flight.

    With a head start, the first request goes alone and the others follow together that much
    later: long enough for it to leave the queue for the model, so the rest meet a busy model
    and an empty queue.
    """
    together = count - 1 if head_start_s else count
    start = threading.Barrier(together)
    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = []
        if head_start_s:
            futures.append(pool.submit(_infer, server, model, count))
            time.sleep(head_start_s)
        futures += [pool.submit(_infer, server, model, seed, start) for seed in range(together)]
        max_pending = 0.0
        while not all(f.done() for f in futures):
            pending = value(parse(server.scrape()), series.PENDING_REQUESTS, model=model)
            max_pending = max(max_pending, pending)
            time.sleep(0.01)
    refused = tuple(f.exception() for f in futures if f.exception() is not None)
    for error in refused:
        if not isinstance(error, InferenceServerException):
            raise error
    return Burst(count - len(refused), refused, max_pending)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Traffic:
    add_sub: Burst
    slow: Burst
    samples: list[Sample]  # /metrics after all of it

    @property
    def add_sub_requests(self) -> int:
        return ADD_SUB_SEQUENTIAL + self.add_sub.succeeded


@pytest.fixture(scope="module")
def traffic(triton: TritonServer) -> Traffic:
    for seed in range(ADD_SUB_SEQUENTIAL):
        _infer(triton, ADD_SUB, seed)
    add_sub = burst(triton, ADD_SUB, ADD_SUB_BURST)
    assert not add_sub.refused, f"add_sub's queue of {triton.model(ADD_SUB).max_queue_size} refused: {add_sub.refused}"
    slow = burst(triton, SLOW, SLOW_BURST, head_start_s=0.15)
    return Traffic(add_sub, slow, parse(triton.scrape()))


# --- the metrics contract ----------------------------------------------------------------


def test_series_py_names_the_triton_series_the_queries_read() -> None:
    # Guards the derivation itself: an empty or shrunken set would make the checks below vacuous.
    expected = expected_series()
    for name in (series.PENDING_REQUESTS, series.QUEUE_DURATION_US, series.REQUEST_FAILURE, series.REQUEST_SUMMARY_US):
        assert name in expected
    assert len(expected) >= 7


@pytest.mark.parametrize("name", sorted(expected_series()))
def test_every_triton_series_is_served_per_model_with_its_labels(
    triton: TritonServer, traffic: Traffic, name: str
) -> None:
    labels = expected_series()[name]
    samples = [s for s in traffic.samples if s.name == name]
    assert samples, f"Triton serves no {name}; unbusy.series and the queries built on it name it"
    for sample in samples:
        assert labels <= sample.labels.keys(), (
            f"{name} has labels {sorted(sample.labels)}, queries need {sorted(labels)}"
        )
    for model in triton.models:
        assert any(s.labels["model"] == model.name and s.labels["version"] == triton.model_version for s in samples), (
            f"no {name} for model {model.name} version {triton.model_version}"
        )


def test_served_shapes_cover_every_expected_series(triton: TritonServer, traffic: Traffic) -> None:
    shapes = served_metric_shapes(triton)
    for name, labels in expected_series().items():
        assert any(n == name and labels <= names for n, names in shapes), name


def test_failures_carry_the_rejected_reason(traffic: Traffic) -> None:
    reasons = {s.labels[series.REASON] for s in traffic.samples if s.name == series.REQUEST_FAILURE}
    assert series.REJECTED in reasons, f"reasons served: {sorted(reasons)}"


def test_summary_latencies_serve_the_p99_the_alerts_read(triton: TritonServer, traffic: Traffic) -> None:
    quantiles = {s.labels[series.QUANTILE] for s in traffic.samples if s.name == series.REQUEST_SUMMARY_US}
    assert P99 in quantiles, f"quantiles served: {sorted(quantiles)}"
    p99_us = value(traffic.samples, series.REQUEST_SUMMARY_US, model=ADD_SUB, quantile=P99)
    assert math.isfinite(p99_us)
    assert p99_us >= triton.model(ADD_SUB).delay_s * 1e6 * 0.9  # every request waits out at least one batch


def test_counters_count_the_requests(triton: TritonServer, traffic: Traffic) -> None:
    model = {"model": ADD_SUB, "version": triton.model_version}
    assert value(traffic.samples, series.REQUEST_SUCCESS, **model) == traffic.add_sub_requests
    assert value(traffic.samples, series.INFERENCE_COUNT, **model) == traffic.add_sub_requests  # batch of 1 each
    for reason in {s.labels[series.REASON] for s in traffic.samples if s.name == series.REQUEST_FAILURE}:
        assert value(traffic.samples, series.REQUEST_FAILURE, reason=reason, **model) == 0
    total_us = value(traffic.samples, series.REQUEST_DURATION_US, **model)
    assert total_us >= traffic.add_sub_requests * triton.model(ADD_SUB).delay_s * 1e6 * 0.9
    # The burst queued behind running batches, so queue time was spent.
    assert value(traffic.samples, series.QUEUE_DURATION_US, **model) > 0


def test_pending_requests_rise_while_requests_queue(triton: TritonServer, traffic: Traffic) -> None:
    assert traffic.add_sub.max_pending > 0, "no pending request seen on /metrics during a burst of 16"
    for model in triton.models:  # and nothing is left pending afterwards
        assert value(traffic.samples, series.PENDING_REQUESTS, model=model.name) == 0


def test_busy_requests_are_refused_with_503_and_counted_as_rejected(triton: TritonServer, traffic: Traffic) -> None:
    slow = traffic.slow
    assert slow.succeeded >= 1
    assert all(error.status() == "503" for error in slow.refused), [e.message() for e in slow.refused]
    assert slow.queue_full + slow.timed_out == len(slow.refused), [e.message() for e in slow.refused]
    assert slow.queue_full, (
        f"{SLOW_BURST} requests at a queue of {triton.model(SLOW).max_queue_size}: none found it full"
    )
    assert slow.timed_out, f"no request timed out in the queue ({triton.model(SLOW).queue_timeout_us} us)"

    model = {"model": SLOW, "version": triton.model_version}
    rejected = value(traffic.samples, series.REQUEST_FAILURE, reason=series.REJECTED, **model)
    # Requests rejected from the queue count as REJECTED. Requests refused on arrival at a full
    # queue do not in Triton 2.51 (the refusal returns before the request is tracked); Triton's
    # newer dynamic batcher finishes them as REJECTED too. Either is accepted here: the error-rate
    # alert must not rely on REJECTED to see every 503.
    assert rejected in (slow.timed_out, slow.timed_out + slow.queue_full), rejected
    assert value(traffic.samples, series.REQUEST_SUCCESS, **model) == slow.succeeded


# --- the readiness check -----------------------------------------------------------------


def test_live_ready_and_model_ready(triton: TritonServer) -> None:
    assert readiness.server_live(triton.http_url) == readiness.Readiness(True)
    assert readiness.server_ready(f"http://{triton.http_url}") == readiness.Readiness(True)
    for model in triton.models:
        assert readiness.model_ready(triton.http_url, model.name) == readiness.Readiness(True)
        assert readiness.model_ready(triton.http_url, model.name, int(triton.model_version)).ready
        assert readiness.check(triton.http_url, model.name, triton.model_version).ready


def test_an_unknown_model_is_not_ready_with_a_reason(triton: TritonServer) -> None:
    answer = readiness.model_ready(triton.http_url, "no_such_model")
    assert not answer.ready
    assert "'no_such_model' is not in the server's model repository" in answer.reason
    assert ADD_SUB in answer.reason  # names what the server has instead
    assert readiness.check(triton.http_url, "no_such_model") == answer


def test_an_unknown_version_is_not_ready(triton: TritonServer) -> None:
    answer = readiness.model_ready(triton.http_url, ADD_SUB, 7)
    assert not answer.ready
    assert f"model '{ADD_SUB}' version 7" in answer.reason


def test_a_closed_port_is_not_live_with_a_reason() -> None:
    url = "127.0.0.1:1"  # nothing listens on a privileged port this low on a test machine
    for answer in (readiness.server_live(url), readiness.server_ready(url), readiness.check(url, ADD_SUB)):
        assert answer == readiness.Readiness(False, "server 127.0.0.1:1 unreachable: connection refused")
    assert readiness.model_ready(url, ADD_SUB).reason.startswith(f"model '{ADD_SUB}': server 127.0.0.1:1")
    assert readiness.repository_index(url).error == "server 127.0.0.1:1 unreachable: connection refused"
    assert readiness.model_statistics(url).error == "server 127.0.0.1:1 unreachable: connection refused"


def test_a_server_that_never_answers_times_out_with_a_reason() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"127.0.0.1:{silent.getsockname()[1]}"
        began = time.monotonic()
        answer = readiness.check(url, ADD_SUB, timeout_s=0.3)
        assert time.monotonic() - began < 5
    assert answer == readiness.Readiness(False, f"server {url} unreachable: timed out")


def test_readiness_runs_in_a_worker_thread_of_an_event_loop(triton: TritonServer) -> None:
    # How kopf handlers call it: tritonclient.http runs on gevent, which must work off the main thread.
    async def both() -> list[readiness.Readiness]:
        return list(
            await asyncio.gather(
                asyncio.to_thread(readiness.check, triton.http_url, ADD_SUB),
                asyncio.to_thread(readiness.check, triton.http_url, "no_such_model"),
            )
        )

    ready, unknown = asyncio.run(both())
    assert ready.ready
    assert not unknown.ready and "no_such_model" in unknown.reason


def test_repository_index_lists_the_models_ready(triton: TritonServer) -> None:
    index = readiness.repository_index(triton.http_url)
    assert index.error is None
    assert {(m.name, m.version, m.state) for m in index.models} == {
        (m.name, triton.model_version, "READY") for m in triton.models
    }
    assert all(m.ready for m in index.models)


def test_model_statistics_agree_with_the_metrics(triton: TritonServer, traffic: Traffic) -> None:
    stats = readiness.model_statistics(triton.http_url, ADD_SUB)
    assert stats.error is None
    (add_sub,) = stats.models
    assert (add_sub.name, add_sub.version) == (ADD_SUB, triton.model_version)
    assert add_sub.success.count == traffic.add_sub_requests
    assert add_sub.inference_count == traffic.add_sub_requests
    assert add_sub.fail.count == 0
    assert 0 < add_sub.execution_count <= traffic.add_sub_requests  # batched: fewer executions than requests
    assert add_sub.last_inference_ms > 0
    assert add_sub.queue.mean_us > 0

    # As with the REJECTED metric: requests that timed out in the queue count as failed; those
    # refused on arrival at a full queue do not in Triton 2.51.
    slow = readiness.model_statistics(triton.http_url, SLOW, triton.model_version).models[0]
    assert slow.success.count == traffic.slow.succeeded
    assert slow.fail.count in (traffic.slow.timed_out, traffic.slow.timed_out + traffic.slow.queue_full)
    assert readiness.model_statistics(triton.http_url, "no_such_model").error
