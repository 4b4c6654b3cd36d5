"""Real HTTP through the testbed's Gateway API proxy: Traefik (testbed/up.sh) reads the HTTPRoute the
operator renders and forwards each request to a pod's loopback address, where the emulator answers
as the calibrated replica would (sim/answer.py). What is measured is what the load generator got back
(demo/http_load.py), and what Traefik's own metrics counted.

- a 90/10 split, measured on 10,000 requests, is 90/10 within two points; Traefik's per-backend
  counters agree with the answers; no connection of Traefik's leaves 127.0.0.0/8 (its sockets,
  sampled during the load) and every EndpointSlice address it reads is a loopback one;
- a weight change moves the measured traffic within one scaling interval; a removed variant gets
  no traffic at all;
- a canary rollout's step (spec.rollout.canary, the operator's rollout controller moving the
  canary from one step's weight to the next) moves the measured traffic within one scaling
  interval of the HTTPRoute's change;
- load past the main variant's only replica makes the operator shed to the fallback variant (its
  demand is Traefik's per-backend counts, 503s included: autoscaling.demand.source traefik), and the
  fallback's answers begin within one scaling interval of the HTTPRoute's weight change;
- past capacity the replicas' queue-full 503s reach the client, and Traefik counts exactly those
  for the variant's backend, which the testbed's Prometheus scrapes.

Measured figures are printed (pytest -s) and attached to the report as user properties.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from builders import ON_KWOK, manifest

from polling import Repeating, eventually
from unbusy.api.model import Pauses, ServiceTime
from unbusy.demo.http_load import Received, send
from unbusy.kube.client import CountingClient, connect
from unbusy.kube.observe import route_weights
from unbusy.serving.model import load_profile

if TYPE_CHECKING:
    from conftest import Loop  # the fixture's type; conftest is not importable at run time

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# Where testbed/lib.sh puts Traefik (the same environment overrides).
TRAEFIK_WEB = f"127.0.0.1:{os.environ.get('TESTBED_TRAEFIK_WEB_PORT', '18000')}"
TRAEFIK_METRICS = f"127.0.0.1:{os.environ.get('TESTBED_TRAEFIK_METRICS_PORT', '18082')}"
STATE_DIR = Path(os.environ.get("TESTBED_STATE_DIR", Path(__file__).resolve().parents[2] / ".testbed"))
HOST = "resnet.proxy.test"
INFER = "/v2/models/resnet50/infer"
INTERVAL_S = 5  # the operator's scaling interval here
SPLIT_REQUESTS = 10_000
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def service(name: str, variants: list[tuple[str, int]], model_config: dict | None = None) -> dict:
    spec = ON_KWOK | {
        "variants": [{"name": variant, "weight": weight} for variant, weight in variants],
        "autoscaling": {"mode": "operator", "minReplicas": 1, "maxReplicas": 1, "intervalSeconds": INTERVAL_S},
        "routing": {
            "provider": "gateway",
            "host": HOST if name == "split" else f"{name}.proxy.test",
            "gateway": {"name": "inference-gateway", "namespace": "gateway-system"},
        },
    }
    if model_config:
        spec["model"] = {"name": "resnet50", "repository": "s3://models/vision", "config": model_config}
    return manifest(spec, name=name)


def through_traefik(host: str, count: int, concurrency: int = 8, **options) -> Received:
    return send(TRAEFIK_WEB, host, INFER, count, concurrency, **options)


def answered_by(host: str, variants: set[str], count: int = 100, concurrency: int = 4) -> Received | None:
    """`count` requests through Traefik, if all were answered 200 by exactly `variants`' pods."""
    received = through_traefik(host, count, concurrency)
    served = {variant for (variant, status) in received.answers if status == 200}
    return received if received.of(status=200) == count and served == variants else None


def traefik_counts(service_part: str) -> dict[str, float]:
    """Traefik's traefik_service_requests_total by status code, over the services whose name has `service_part`."""
    text = urllib.request.urlopen(f"http://{TRAEFIK_METRICS}/metrics", timeout=5).read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("traefik_service_requests_total{") and service_part in line:
            code = line.split('code="', 1)[1].split('"', 1)[0]
            counts[code] = counts.get(code, 0.0) + float(line.rpartition(" ")[2])
    return counts


@pytest.fixture(scope="module")
def kube(testbed) -> CountingClient:
    return connect(str(testbed.kubeconfig))


def routed(kube: CountingClient, loop: Loop) -> dict[str, int]:
    """{variant: weight} of the backendRefs of the HTTPRoute the operator rendered, as Traefik reads it."""
    return route_weights(kube, loop.namespace, loop.name)


def backend(loop: Loop, variant: str) -> str:
    """How Traefik names the service of a variant's backendRef of the HTTPRoute (per-backend counters)."""
    return f"-svc-{loop.namespace}-{loop.name}-{variant}-"


def _peers(pid: int) -> set[str]:
    """The remote addresses of the process's TCP connections, read from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    peers = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if inode not in inodes or state == "0A":  # not ours, or a listening socket
                continue
            raw = bytes.fromhex(remote.split(":")[0])
            # /proc writes each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            address = ipaddress.ip_address(words)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            peers.add(str(address))
    return peers


class TraefikPeers(Repeating):
    """Samples where Traefik's TCP connections go, every 0.2 s while in use."""

    def __init__(self) -> None:
        super().__init__(every=0.2)
        self.pid = int((STATE_DIR / "pids" / "traefik.pid").read_text())
        self.seen: set[str] = set()

    def step(self) -> None:
        self.seen |= _peers(self.pid)


def test_a_90_10_split_measured_through_traefik(closed_loop, testbed, record_property):
    loop = closed_loop(service("split", [("main", 90), ("canary", 10)]), 0.0, proxy_metrics=TRAEFIK_METRICS)
    loop.eventually(lambda: answered_by(HOST, {"main", "canary"}), timeout=90)
    before = {v: traefik_counts(backend(loop, v)).get("200", 0.0) for v in ("main", "canary")}

    with TraefikPeers() as peers:
        received = through_traefik(HOST, SPLIT_REQUESTS, seconds=300)
    shares = received.shares()
    print(
        f"\n{received.total} requests through Traefik in {received.seconds:.1f}s: "
        f"main {received.of('main', 200)} ({shares.get('main', 0):.2%}), "
        f"canary {received.of('canary', 200)} ({shares.get('canary', 0):.2%}); Traefik's peers {sorted(peers.seen)}"
    )
    record_property("split_requests", received.total)
    record_property("split_shares", {v: round(s, 4) for v, s in shares.items()})
    assert received.errors == {} and received.of(status=200) == SPLIT_REQUESTS, received
    assert abs(shares["main"] - 0.90) <= 0.02 and abs(shares["canary"] - 0.10) <= 0.02, shares

    # Traefik counted what the load generator received, backend by backend.
    def counted() -> bool:
        after = {v: traefik_counts(backend(loop, v)).get("200", 0.0) - before[v] for v in before}
        return after == {v: float(received.of(v, 200)) for v in before}

    loop.eventually(counted, timeout=10)

    # Nothing left this machine: Traefik talked to the pods' loopback addresses only, never to a
    # Service's ClusterIP, and the EndpointSlices it reads hold loopback addresses only.
    listed = {kind: testbed.kubectl_json("get", kind, "-n", loop.namespace)["items"] for kind in ("pods", "services")}
    pods = {item["status"]["podIP"] for item in listed["pods"]}
    cluster_ips = {item["spec"]["clusterIP"] for item in listed["services"]}
    assert peers.seen and all(ipaddress.ip_address(peer) in LOOPBACK for peer in peers.seen), peers.seen
    assert peers.seen & pods and not peers.seen & cluster_ips, (peers.seen, pods, cluster_ips)
    slices = testbed.kubectl_json("get", "endpointslices", "-n", loop.namespace)["items"]
    addresses = [a for s in slices for e in s.get("endpoints") or [] for a in e["addresses"]]
    assert addresses and all(ipaddress.ip_address(a) in LOOPBACK for a in addresses), addresses


def test_a_weight_change_moves_traffic_and_a_removed_variant_gets_none(closed_loop, testbed, kube, record_property):
    body = service("step", [("main", 90), ("canary", 10)])
    host = body["spec"]["routing"]["host"]
    loop = closed_loop(body, 0.0, proxy_metrics=TRAEFIK_METRICS)
    loop.eventually(lambda: answered_by(host, {"main", "canary"}), timeout=90)

    # A canary step, 10% -> 50%: once the HTTPRoute says so, the measured share follows within one
    # scaling interval (measured up to the end of the first 100 requests that show it: an upper bound).
    patched = time.monotonic()
    testbed.kubectl(
        "patch", "infsvc", loop.name, "-n", loop.namespace, "--type=merge",
        "-p", '{"spec": {"variants": [{"name": "main", "weight": 50}, {"name": "canary", "weight": 50}]}}',
    )  # fmt: skip
    weighted = eventually(lambda: routed(kube, loop).get("canary") == 50 and time.monotonic(), 30, 0.1)

    def half() -> bool:
        share = through_traefik(host, 100, concurrency=8).shares().get("canary", 0.0)
        return abs(share - 0.5) <= 0.05

    eventually(half, timeout=30, every=0.0, describe=loop.describe)
    moved_s = time.monotonic() - weighted
    print(
        f"\nweight 10% -> 50%: the operator rewrote the HTTPRoute {weighted - patched:.1f}s after the spec's change, "
        f"the measured traffic moved within {moved_s:.1f}s of the route's"
    )
    record_property("spec_to_route_s", round(weighted - patched, 1))
    record_property("route_to_traffic_s", round(moved_s, 1))
    assert moved_s <= INTERVAL_S

    # The canary removed: once the route has dropped it, not one request reaches it.
    testbed.kubectl(
        "patch", "infsvc", loop.name, "-n", loop.namespace, "--type=merge",
        "-p", '{"spec": {"variants": [{"name": "main", "weight": 100}]}}',
    )  # fmt: skip
    loop.eventually(lambda: answered_by(host, {"main"}), timeout=30)
    received = through_traefik(host, 2_000)
    print(f"after removing the canary: {dict(received.answers)}")
    assert received.answers == {("main", 200): 2_000}, received


ROLLOUT_STEPS = [
    {"weight": 20, "pauseSeconds": 10},
    {"weight": 60, "pauseSeconds": 60},
    {"weight": 100, "pauseSeconds": 0},
]


def canary_share(received: Received) -> float:
    return received.of("main-canary", 200) / max(1, received.of(status=200))


def test_a_canary_rollout_step_moves_measured_traffic_within_a_scaling_interval(
    closed_loop, testbed, kube, record_property
):
    body = service("rollout", [("main", 100)])
    spec = body["spec"]
    spec["model"] = {"name": "resnet50", "repository": "s3://models/vision", "version": "1"}
    spec["rollout"] = {
        "canary": {
            "steps": ROLLOUT_STEPS,
            "analysisIntervalSeconds": INTERVAL_S,
            "checks": [{"metric": "errorRatePercent", "max": 5}],
            "failureLimit": 3,
        }
    }
    host = spec["routing"]["host"]
    loop = closed_loop(body, 0.0, proxy_metrics=TRAEFIK_METRICS)
    loop.eventually(lambda: answered_by(host, {"main"}, count=10, concurrency=1), timeout=90)
    loop.eventually(lambda: loop.status().get("revisions"), 30)

    # A new model version rolls out as a canary: 20% of main's traffic, then (its analyses passed)
    # 60%. The step is the rollout controller's; the time runs from the HTTPRoute's change.
    with OpenLoad(host, rate=40) as load:
        patch = '{"spec": {"model": {"version": "2"}}}'
        testbed.kubectl("patch", "infsvc", loop.name, "-n", loop.namespace, "--type=merge", "-p", patch)
        first = ROLLOUT_STEPS[0]["weight"]
        loop.eventually(lambda: routed(kube, loop).get("main-canary") == first, 120)
        second = ROLLOUT_STEPS[1]["weight"]
        stepped = eventually(
            lambda: routed(kube, loop).get("main-canary") == second and time.monotonic(), 60, 0.05, loop.describe
        )
        state = next(iter(loop.status().get("rollouts") or []), {})
        # The first one-second round, begun after the change, whose canary share is nearer the new
        # weight than the old; then 10 s more at the new weight.
        midway = (first + second) / 200
        eventually(lambda: any(canary_share(r) >= midway for began, r in load.rounds if began >= stepped), 30)
        time.sleep(10)
    moved = next(began + r.seconds for began, r in load.rounds if began >= stepped and canary_share(r) >= midway)
    moved_s = moved - stepped
    before = [r for began, r in load.rounds if began + r.seconds < stepped and r.of("main-canary", 200)]
    after = [r for began, r in load.rounds if began >= moved]
    share_before = sum(r.of("main-canary", 200) for r in before) / max(1, sum(r.of(status=200) for r in before))
    share_after = sum(r.of("main-canary", 200) for r in after) / max(1, sum(r.of(status=200) for r in after))
    answers_after = sum(r.of(status=200) for r in after)
    print(
        f"\ncanary step {first}% -> {second}% (rollout {state.get('phase')}, step {state.get('step')}): measured "
        f"{share_before:.1%} before, {share_after:.1%} of {answers_after} answers after; the traffic moved within "
        f"{moved_s:.1f}s of the HTTPRoute's change"
    )
    record_property("rollout_step_route_to_traffic_s", round(moved_s, 1))
    record_property("rollout_step_shares", {"before": round(share_before, 3), "after": round(share_after, 3)})
    assert state.get("step") == 1 and state.get("weight") == second, state
    assert moved_s <= INTERVAL_S
    assert abs(share_after - second / 100) <= 0.07, (share_after, answers_after)
    assert all(r.errors == {} for _, r in load.rounds), [r.errors for _, r in load.rounds if r.errors]


def test_queue_full_503s_reach_the_client_and_traefik_counts_them(closed_loop, record_property):
    # One replica of a slow model (a batch of at most 2 takes 40 ms) with room for 2 waiting: 16
    # clients at once find its queue full most of the time.
    slow = load_profile("h100-resnet50").model_copy(
        update={"service_time": ServiceTime(floor_ms=40, base_ms=0, per_item_ms=0.001), "pauses": Pauses()}
    )
    config = {"maxBatchSize": 2, "dynamicBatching": {"maxQueueSize": 2}}
    body = service("busy", [("main", 100)], model_config=config)
    host = body["spec"]["routing"]["host"]
    loop = closed_loop(body, 0.0, proxy_metrics=TRAEFIK_METRICS, service=slow)
    loop.eventually(lambda: answered_by(host, {"main"}, count=10, concurrency=1), timeout=90)
    before = traefik_counts(backend(loop, "main")).get("503", 0.0)

    received = through_traefik(host, 2_000, concurrency=16)
    refused = received.of("main", 503)
    print(f"\n{received.total} requests past capacity: {dict(received.answers)}")
    assert received.errors == {} and refused > 0 and received.of(status=200) + refused == 2_000, received

    def counted() -> float | None:
        delta = traefik_counts(backend(loop, "main")).get("503", 0.0) - before
        return delta if delta == refused else None

    loop.eventually(counted, timeout=10)
    record_property("queue_full_503s", {"load_generator": refused, "traefik": refused})

    # The testbed's Prometheus scrapes Traefik: the same counter, per backend, with its code label.
    def scraped() -> list:
        query = "traefik_service_requests_total%7Bcode%3D%22503%22%7D"
        answer = urllib.request.urlopen(f"{loop.prometheus.url}/api/v1/query?query={query}", timeout=3).read()
        return [r for r in json.loads(answer)["data"]["result"] if "-busy-main-" in r["metric"]["service"]]

    loop.eventually(scraped, timeout=15)


class OpenLoad(Repeating):
    """`rate` requests a second through Traefik in one-second rounds until stopped: each round's
    answers, with the time (monotonic) it began."""

    def __init__(self, host: str, rate: int, concurrency: int = 16):
        super().__init__(every=0.0)
        self.host, self.rate, self.concurrency = host, rate, concurrency
        self.rounds: list[tuple[float, Received]] = []

    def step(self) -> None:
        began = time.monotonic()
        received = through_traefik(self.host, self.rate, self.concurrency, seconds=1.5, rate=self.rate)
        self.rounds.append((began, received))


def test_a_fallback_shed_moves_measured_traffic_within_a_scaling_interval(closed_loop, testbed, kube, record_property):
    # main: one replica of 2 requests per 40 ms, 50/s, that may not grow; the offered 90/s are more
    # than it serves, so the operator sheds the excess to the fallback variant `small`.
    slow = load_profile("h100-resnet50").model_copy(
        update={"service_time": ServiceTime(floor_ms=40, base_ms=0, per_item_ms=0.001), "pauses": Pauses()}
    )
    body = service("shed", [("main", 100), ("small", 0)], {"maxBatchSize": 2, "dynamicBatching": {"maxQueueSize": 4}})
    spec = body["spec"]
    spec["model"]["serving"] = slow.to_wire()
    spec["variants"] = [
        {"name": "main", "weight": 100, "maxReplicas": 1},
        {"name": "small", "weight": 0, "minReplicas": 1, "maxReplicas": 1},
    ]
    spec["fallback"] = {"variant": "small", "rpsPerReplica": 50, "restoreSeconds": 10}
    spec["autoscaling"]["demand"] = {"source": "traefik"}
    spec["autoscaling"]["targets"] = {
        "capacityUtilizationPercent": 80,
        "queueDepthPerReplica": 0,
        "gpuUtilizationPercent": 0,
    }
    host = spec["routing"]["host"]
    loop = closed_loop(body, 0.0, proxy_metrics=TRAEFIK_METRICS)
    loop.eventually(lambda: answered_by(host, {"main"}, count=10, concurrency=1), timeout=90)
    assert routed(kube, loop).get("small", 0) == 0

    with OpenLoad(host, rate=90) as load:
        started = time.monotonic()
        weighted = eventually(
            lambda: routed(kube, loop).get("small", 0) > 0 and time.monotonic(), 150, describe=loop.describe
        )
        eventually(lambda: any(r.of("small", 200) for began, r in load.rounds if began >= weighted - 1), 2 * INTERVAL_S)
    # The end of the first one-second round with answers from the fallback: an upper bound of when it began.
    moved = next(began + r.seconds for began, r in load.rounds if began >= weighted - 1 and r.of("small", 200))
    moved_s = moved - weighted
    after = [r for began, r in load.rounds if began >= moved]
    share = sum(r.of("small", 200) for r in after) / max(1, sum(r.of(status=200) for r in after))
    print(
        f"\nshed {weighted - started:.1f}s into the load, to {routed(kube, loop)}; the fallback answered "
        f"within {moved_s:.1f}s of the weight change, {share:.1%} of the answers since"
    )
    record_property("shed_weight_to_traffic_s", round(moved_s, 1))
    assert moved_s <= INTERVAL_S
