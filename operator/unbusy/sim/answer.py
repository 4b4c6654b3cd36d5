"""Every Ready pod's address answering Triton's HTTP inference protocol in real time, as the
calibrated replica would: the emulator's pods as servers a real proxy sends requests to.

A kwok pod has an address on the loopback range (testbed/nodes.yaml) and no process behind it;
here each Ready pod gets one HTTP server on its ip:8000, with one dynamic batcher behind it
that follows Triton's rules as serving/batcher.py states them (the same Batcher, run on the wall
clock instead of simulated time):

- an idle instance starts a batch once the saturated batch is queued or the oldest request has
  waited max_queue_delay; a busy one takes the oldest queued requests as soon as it is free;
- a request that finds max_queue requests waiting is refused at once: 503 "Exceeds maximum
  queue size", as Triton answers it;
- a batch of b takes service_s(b); the serving process stalls pauses.ms at Poisson times and in
  a share of its executions.

What each replica does is written into a sim/live.py Pod, as the fleet simulator's replicas write
theirs, so that the emulator's /metrics shows Triton's counters of the real requests (Emulator,
with `answer`).

An answer says which pod and variant gave it (headers Unbusy-Pod, Unbusy-Variant), so that a
load generator counts per variant what it received, not what the emulator's books say.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from unbusy.serving.batcher import Batcher
from unbusy.sim.live import Pod

log = logging.getLogger("unbusy.answer")

AddressLister = Callable[[], Mapping[str, tuple[str, str]]]  # Ready pod -> (variant, its IP)
POD_HEADER, VARIANT_HEADER = "Unbusy-Pod", "Unbusy-Variant"
QUEUE_FULL = "Exceeds maximum queue size"  # Triton's words for a request refused on arrival
ANSWER_TIMEOUT_S = 60.0  # a request still unanswered then (a stopped replica) gets a 500
_INFER = re.compile(r"^/v2/models/(?P<model>[^/]+)(/versions/(?P<version>[^/]+))?/infer$")
_MODEL_READY = re.compile(r"^/v2/models/(?P<model>[^/]+)(/versions/[^/]+)?/ready$")


class LiveBatcher:
    """One model instance with Triton's dynamic batcher, on the wall clock; its counters go to `pod`."""

    def __init__(self, batcher: Batcher, pod: Pod | None = None, seed: int = 0) -> None:
        self.batcher = batcher
        self.pod = pod or Pod("")
        self._rng = random.Random(seed)
        self._lock = threading.Condition()
        self._waiting: deque[tuple[float, threading.Event]] = deque()  # admitted, not yet in a batch
        self._stopped = False
        self._next_stall = self._stall_after(time.monotonic())
        self._thread = threading.Thread(target=self._run, name="live-batcher", daemon=True)
        self._thread.start()

    def infer(self) -> int:
        """One request, and the HTTP status Triton answers it with: 200 once its batch has run,
        503 when refused (the queue was full), 500 when the replica stopped before running it."""
        done = threading.Event()
        with self._lock:
            if self.batcher.max_queue and len(self._waiting) >= self.batcher.max_queue:
                self.pod.rejected += 1
                return 503
            if self._stopped:
                return 500
            self._waiting.append((time.monotonic(), done))
            self.pod.replica.pending = len(self._waiting)
            self._lock.notify()
        answered = done.wait(ANSWER_TIMEOUT_S)
        with self._lock:
            return 200 if answered and not self._stopped else 500

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify()
        self._thread.join(5)

    def _stall_after(self, now: float) -> float:
        per_second = self.batcher.stalls_per_second
        return now + self._rng.expovariate(per_second) if per_second > 0 else float("inf")

    def _next_batch(self) -> list[tuple[float, threading.Event]] | None:
        """Wait until a batch may start (None once stopped), and take it off the queue."""
        most = self.batcher.saturated_batch
        with self._lock:
            while not self._waiting and not self._stopped:
                self._lock.wait()
            opens = self._waiting[0][0] + self.batcher.max_queue_delay_s if self._waiting else 0.0
            while not self._stopped and len(self._waiting) < most and (left := opens - time.monotonic()) > 0:
                self._lock.wait(left)
            if self._stopped:
                for _, done in self._waiting:  # unanswered: their handlers answer 500 at once
                    done.set()
                return None
            batch = [self._waiting.popleft() for _ in range(min(most, len(self._waiting)))]
            self.pod.replica.pending = len(self._waiting)
            return batch

    def _run(self) -> None:
        batcher = self.batcher
        while (batch := self._next_batch()) is not None:
            start = time.monotonic()
            while self._next_stall + batcher.stall_s < start:  # stalls over while the instance idled
                self._next_stall = self._stall_after(self._next_stall)
            if self._next_stall <= start:  # in a stall at a random time: no batch starts during it
                start = self._next_stall + batcher.stall_s
                self._next_stall = self._stall_after(self._next_stall)
            end = start + batcher.service_s(len(batch))
            if self._next_stall < end:  # a stall while the batch runs ends it that much later
                end += batcher.stall_s
                self._next_stall = self._stall_after(self._next_stall)
            if self._rng.random() < batcher.stalls_per_execution:
                end += batcher.stall_s
            time.sleep(max(0.0, end - time.monotonic()))
            with self._lock:
                replica = self.pod.replica
                replica.served += len(batch)
                replica.executions += 1
                replica.busy_s += end - start
                for arrived, _ in batch:
                    replica.waited_s += start - arrived
                    self.pod.record.latency.add((end - arrived) * 1000, 1)
            for _, done in batch:
                done.set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the listen backlog: a proxy opens many connections at once under a step

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the peer, or the pod's own stop, closed the connection mid-answer: nothing to tell
        super().handle_error(request, client_address)


class PodServer:
    """One pod's Triton HTTP endpoint, ip:port: health, model readiness and inference."""

    def __init__(self, name: str, variant: str, ip: str, port: int, model: str, batcher: Batcher, seed: int = 0):
        self.name, self.variant, self.model = name, variant, model
        self.replica = LiveBatcher(batcher, Pod(variant), seed)
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        pod = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: a proxy reuses its connections to a backend

            def setup(self) -> None:
                super().setup()
                with pod._lock:
                    pod._connections.add(self.request)

            def finish(self) -> None:
                with pod._lock:
                    pod._connections.discard(self.request)
                super().finish()

            def _answer(self, status: int, document: dict | None = None) -> None:
                body = json.dumps(document).encode() if document is not None else b""
                self.send_response(status)
                self.send_header(POD_HEADER, pod.name)
                self.send_header(VARIANT_HEADER, pod.variant)
                if body:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                ready = _MODEL_READY.match(path)
                if path in ("/v2/health/ready", "/v2/health/live") or (ready and ready["model"] == pod.model):
                    self._answer(200)
                elif path == f"/v2/models/{pod.model}":
                    self._answer(200, {"name": pod.model, "platform": "emulated", "versions": ["1"]})
                else:
                    self._answer(404, {"error": f"unknown path {path}"})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                infer = _INFER.match(self.path.split("?")[0])
                if not infer or infer["model"] != pod.model:
                    self._answer(404, {"error": f"Request for unknown model: '{infer and infer['model']}'"})
                elif (status := pod.replica.infer()) == 200:
                    version = infer["version"] or "1"
                    self._answer(200, {"model_name": pod.model, "model_version": version, "outputs": []})
                else:
                    self._answer(status, {"error": QUEUE_FULL if status == 503 else "model unloaded"})

            def log_message(self, *args: object) -> None:  # one line per request is noise
                pass

        self.server = _Server((ip, port), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, name=f"pod-{name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """The pod is gone: its listener and its open connections close (a proxy's kept-alive ones too,
        which would otherwise reach this pod's handlers after another pod took its address)."""
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):  # closed by the peer already
                    connection.shutdown(socket.SHUT_RDWR)
        self.replica.stop()


class Answerers:
    """A PodServer on each Ready pod's address, following the pods as sync() is told them."""

    def __init__(self, model: str, batcher_of: Callable[[str], Batcher], port: int, seed: int = 0) -> None:
        self.model, self.batcher_of, self.port, self.seed = model, batcher_of, port, seed
        self.servers: dict[str, PodServer] = {}  # pod -> its server

    def sync(self, pods: Mapping[str, tuple[str, str]]) -> None:
        """Serve exactly `pods` (Ready pod -> (variant, IP)): new ones start answering, gone ones stop."""
        for name in [n for n, s in self.servers.items() if pods.get(n) != (s.variant, s.server.server_address[0])]:
            self.servers.pop(name).stop()
        for name, (variant, ip) in sorted(pods.items()):
            if name in self.servers:
                continue
            try:
                seed = self.seed + len(self.servers)
                self.servers[name] = PodServer(name, variant, ip, self.port, self.model, self.batcher_of(variant), seed)
            except OSError as error:  # an address not on this machine: say so, serve the others
                log.warning("pod %s: cannot answer on %s:%d: %s", name, ip, self.port, error)

    def pods(self) -> dict[str, Pod]:
        """Each answering pod's counters, as Triton keeps them."""
        return {name: server.replica.pod for name, server in self.servers.items()}

    def stop(self) -> None:
        self.sync({})
