"""A load generator of real HTTP: Triton inference requests through a proxy, counted by what came back.

Each answer is counted by the variant that gave it (the emulator's pods say so in a header,
sim/answer.py) and its status; an answer without that header came from the proxy itself (a 502
or 503 with no endpoint behind it, say). Requests run over a few persistent connections, one
thread each, at most `count` of them and for at most `seconds`: a bounded load that stops by itself.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from unbusy.sim.answer import VARIANT_HEADER

PROXY = ""  # the variant of an answer the proxy gave itself
# The body of a small inference request (KServe v2 / Triton's HTTP protocol).
BODY = json.dumps({"inputs": [{"name": "INPUT0", "shape": [1, 1], "datatype": "FP32", "data": [0.0]}]}).encode()


@dataclass
class Received:
    """What the load generator got back: (variant, HTTP status) -> answers, and when (s) it sent them."""

    answers: Counter[tuple[str, int]] = field(default_factory=Counter)
    seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)  # connection failures, by exception type

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
        hostname, port = address.rsplit(":", 1)
        connection = http.client.HTTPConnection(hostname, int(port), timeout=30)
        while take():
            try:
                connection.request("POST", path, BODY, {"Host": host, "Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                key = (response.getheader(VARIANT_HEADER) or PROXY, response.status)
                with lock:
                    received.answers[key] += 1
            except (OSError, http.client.HTTPException) as error:
                connection.close()  # reconnects on the next request
                with lock:
                    received.errors[type(error).__name__] += 1
        connection.close()

    threads = [threading.Thread(target=worker, name=f"load-{i}", daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    received.seconds = time.monotonic() - start
    return received
