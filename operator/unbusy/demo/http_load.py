"""Load generators of real HTTP: Triton inference requests through a proxy, counted by what came back.

Each answer is counted by the variant that gave it (the emulator's pods say so in a header,
sim/answer.py) and its status; an answer without that header came from the proxy itself (a 502
or 503 with no endpoint behind it, say).

- send(): at most `count` requests over a few persistent connections, one thread each, for at most
  `seconds`: a bounded load that stops by itself;
- OpenLoad: Poisson arrivals at a rate that may change, until stopped (the demo's load step): each
  request waits for no answer before the next is sent, taken by a free connection (one thread each,
  more opened as the answers slow down).
"""

from __future__ import annotations

import http.client
import json
import queue
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from unbusy.sim.answer import VARIANT_HEADER
from unbusy.sim.stats import Histogram

PROXY = ""  # the variant of an answer the proxy gave itself
# The body of a small inference request (KServe v2 / Triton's HTTP protocol).
BODY = json.dumps({"inputs": [{"name": "INPUT0", "shape": [1, 1], "datatype": "FP32", "data": [0.0]}]}).encode()


@dataclass
class Received:
    """What the load generator got back: (variant, HTTP status) -> answers, and when (s) it sent them."""

    answers: Counter[tuple[str, int]] = field(default_factory=Counter)
    seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)  # connection failures, by exception type
    sent: int = 0  # requests sent (OpenLoad: in the span counted)
    latency: Histogram = field(default_factory=Histogram)  # of the 200s, ms from when each was due (OpenLoad)

    @property
    def total(self) -> int:
        return sum(self.answers.values())

    def of(self, variant: str | None = None, status: int | None = None) -> int:
        return sum(n for (v, s), n in self.answers.items() if variant in (None, v) and status in (None, s))

    def shares(self, status: int = 200) -> dict[str, float]:
        """Each variant's share of the answers with `status`."""
        answered = self.of(status=status)
        by_variant = Counter({v: n for (v, s), n in self.answers.items() if s == status})
        return {variant: n / answered for variant, n in by_variant.items()} if answered else {}


def send(
    address: str,
    host: str,
    path: str,
    count: int,
    concurrency: int = 8,
    seconds: float = 120.0,
    rate: float | None = None,
) -> Received:
    """POST up to `count` inference requests to `address` (host:port) for Host `host` and path `path`
    (a route's prefix followed by Triton's /v2/models/<model>/infer), over `concurrency` connections,
    for at most `seconds`; at most `rate` per second all together when given."""
    received = Received()
    lock = threading.Lock()
    sent = 0
    start = time.monotonic()
    deadline = start + seconds

    def take() -> bool:
        nonlocal sent
        with lock:
            if sent >= count or time.monotonic() >= deadline:
                return False
            due = start + sent / rate if rate else 0.0
            sent += 1
        if due > time.monotonic():
            time.sleep(due - time.monotonic())
        return True

    def worker() -> None:
        connection = _connection(address)
        while take():
            answer = _post(connection, host, path)
            with lock:
                _count(received, answer)
        connection.close()

    threads = [threading.Thread(target=worker, name=f"load-{i}", daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    received.seconds = time.monotonic() - start
    return received


TIMEOUT_S = 30.0


def _connection(address: str) -> http.client.HTTPConnection:
    hostname, port = address.rsplit(":", 1)
    return http.client.HTTPConnection(hostname, int(port), timeout=TIMEOUT_S)


def _post(connection: http.client.HTTPConnection, host: str, path: str) -> tuple[str, int] | str:
    """One inference request: (the answering variant, the status), or the exception's name."""
    try:
        connection.request("POST", path, BODY, {"Host": host, "Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.getheader(VARIANT_HEADER) or PROXY, response.status
    except (OSError, http.client.HTTPException) as error:
        connection.close()  # reconnects on the next request
        return type(error).__name__


def _count(received: Received, answer: tuple[str, int] | str) -> None:
    if isinstance(answer, str):
        received.errors[answer] += 1
    else:
        received.answers[answer] += 1


class OpenLoad:
    """Inference requests to `address` (host:port) for Host `host` and `path`, arriving at `rate` a
    second (Poisson) until stop(); take() returns what was sent and what came back since its last
    call. A request is due at its arrival whether or not earlier ones were answered (an open loop):
    a free connection takes it, and a new one opens when none is free, up to `connections`; its
    latency runs from when it was due."""

    def __init__(self, address: str, host: str, path: str, rate: float, connections: int = 512, seed: int = 0):
        self.address, self.host, self.path, self.connections = address, host, path, connections
        self.rate = rate
        self._rng = random.Random(seed)
        self._due: queue.SimpleQueue[float | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._received = Received()
        self._idle = 0
        self._workers: list[threading.Thread] = []
        self._stop = threading.Event()
        self._arrivals = threading.Thread(target=self._arrive, name="load-arrivals", daemon=True)

    def __enter__(self) -> OpenLoad:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> OpenLoad:
        self._arrivals.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._arrivals.ident is not None:  # started
            self._arrivals.join(5)
        for _ in self._workers:
            self._due.put(None)
        for worker in self._workers:
            worker.join(TIMEOUT_S)

    def set_rate(self, rate: float) -> None:
        """Arrivals at `rate` a second from the next one on."""
        self.rate = rate

    def take(self) -> Received:
        """What was sent, and what came back (with the 200s' latencies), since the last call."""
        with self._lock:
            received, self._received = self._received, Received()
        return received

    def _arrive(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            rate = self.rate
            if rate <= 0:
                self._stop.wait(0.1)
                due = time.monotonic()
                continue
            due += self._rng.expovariate(rate)
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            with self._lock:
                self._received.sent += 1
                start = self._idle == 0 and len(self._workers) < self.connections
                if start:
                    self._idle += 1  # the new worker, about to take this request
            if start:
                worker = threading.Thread(target=self._work, name=f"load-{len(self._workers)}", daemon=True)
                self._workers.append(worker)
                worker.start()
            self._due.put(due)

    def _work(self) -> None:
        connection = _connection(self.address)
        while (due := self._due.get()) is not None:
            with self._lock:
                self._idle -= 1
            answer = _post(connection, self.host, self.path)
            latency_ms = (time.monotonic() - due) * 1000
            with self._lock:
                _count(self._received, answer)
                if not isinstance(answer, str) and answer[1] == 200:
                    self._received.latency.add(latency_ms, 1)
                self._idle += 1
        connection.close()
