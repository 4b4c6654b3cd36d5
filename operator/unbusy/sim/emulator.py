"""A metrics emulator: Triton's and the DCGM exporter's /metrics for every Ready pod of an
InferenceService, computed from simulated replicas (sim/live.py) under a request rate.

Pods come from the caller (a function returning {pod name: (variant, ready)}, read from the
API server), so kwok's pods appear and go as the operator scales. Every second the emulator
moves the fleet on by one tick; Prometheus scrapes /metrics as it would Triton (port 8002)
and the DCGM exporter. Series and labels are series.py's, with the target labels the
ServiceMonitor's relabelling adds (namespace, inferenceservice, variant, pod) already on,
since one emulator stands in for many scrape targets.

Given the InferenceService and its routing.provider nginx, it also serves what ingress-nginx's
controller would count in front of those pods: `nginx_ingress_controller_requests` per variant,
200 for each request a replica answered and 503 for each it refused (or, with no replica
ready, every request: nginx has no endpoint to send it to), labelled as the controller labels
a request the Ingresses Unbusy renders took (render/edge.py says how).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from unbusy import series
from unbusy.api import InferenceService
from unbusy.render import meta, routing
from unbusy.render.context import RenderContext
from unbusy.serving.model import ServiceModel
from unbusy.sim.live import TICK_S, Fault, LiveFleet, Tally

log = logging.getLogger("unbusy.emulator")

PodLister = Callable[[], Mapping[str, tuple[str, bool]]]
WeightLister = Callable[[], Mapping[str, int]]  # variant -> weight, as the routes in front split traffic
MODEL_ERROR = "BACKEND"  # the failure reason of a request the model itself failed
FAILURE_REASONS = (series.REJECTED, "CANCELED", MODEL_ERROR, "OTHER")  # the reasons Triton labels failures with
SERVER_ERROR = "500"  # the status the edge answers for a request Triton failed
GPU_MODEL = "NVIDIA H100 80GB HBM3"
FB_TOTAL_MIB = 81559
FB_USED_MIB = 18432  # a model loaded: constant, as it is on a real GPU between loads
# The constant labels ingress-nginx's collector puts on every series, as its Helm chart deploys it.
NGINX_CONTROLLER = {
    "controller_namespace": "ingress-nginx",
    "controller_class": "k8s.io/ingress-nginx",
    "controller_pod": "ingress-nginx-controller-7d4db76476-x8m2p",
}
ANSWERED = "200"
INFERENCE_METHOD = "POST"  # Triton's HTTP inference requests

_TYPES = {
    series.REQUEST_SUCCESS: "counter",
    series.REQUEST_FAILURE: "counter",
    series.INFERENCE_COUNT: "counter",
    series.EXEC_COUNT: "counter",
    series.PENDING_REQUESTS: "gauge",
    series.QUEUE_DURATION_US: "counter",
    series.REQUEST_DURATION_US: "counter",
    series.REQUEST_SUMMARY_US: "summary",
    series.GPU_UTIL: "gauge",
    series.GR_ENGINE_ACTIVE: "gauge",
    series.FB_USED: "gauge",
    series.FB_FREE: "gauge",
}


def _labels(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f"{k}={series.quote(v)}" for k, v in labels.items()) + "}"


class Emulator:
    def __init__(
        self,
        pods: PodLister,
        *,
        namespace: str,
        inference_service: str,
        model: str,
        service: ServiceModel,
        rps: float = 0.0,
        version: str = "1",
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        isvc: InferenceService | None = None,
        weights: WeightLister | None = None,
        variant_services: Mapping[str, ServiceModel] | None = None,
    ) -> None:
        self.list_pods, self.list_weights = pods, weights
        self.namespace, self.inference_service, self.model, self.version = namespace, inference_service, model, version
        self.fleet = LiveFleet(service, seed=seed, variant_models=variant_services)
        self.rps = rps
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pods: Mapping[str, tuple[str, bool]] = {}
        self._weights: Mapping[str, int] | None = None
        # ingress-nginx in front: the InferenceService its Ingresses come from, with routing.provider nginx.
        routed = isvc is not None and isvc.spec.routing is not None and isvc.spec.routing.provider == "nginx"
        self._ingress_of = isvc if routed else None
        self._at_the_edge: dict[tuple[str, str], float] = {}  # (variant, HTTP status) -> requests, cumulative
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = emulator.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # one line per scrape is noise
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self._threads = [
            threading.Thread(target=self.server.serve_forever, name="emulator-http", daemon=True),
            threading.Thread(target=self._run, name="emulator-tick", daemon=True),
        ]

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> Emulator:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        for thread in self._threads:
            thread.join(5)

    # --- load and what it did ------------------------------------------------------------

    def set_rate(self, rps: float) -> None:
        """The trace's request rate from the next tick on."""
        with self._lock:
            self.rps = rps

    def degrade(self, variant: str, latency_ms: float = 0.0, error_fraction: float = 0.0) -> None:
        """From the next tick on, the variant's replicas answer `latency_ms` slower and fail
        `error_fraction` of the requests they serve (a bad canary)."""
        with self._lock:
            self.fleet.faults[variant] = Fault(latency_ms, error_fraction)

    def rejected_fraction(self, window_s: int = 30) -> float:
        """Requests refused (queue full or no ready pod) over the last `window_s` seconds."""
        with self._lock:
            return self.fleet.rejected_fraction(window_s)

    def take_tally(self) -> Tally:
        """The requests that arrived, were refused and answered (with their latencies) since the last call."""
        with self._lock:
            return self.fleet.take_tally()

    def weights(self) -> dict[str, int] | None:
        """{variant: weight} as the routes split traffic at the last tick (None without routes)."""
        with self._lock:
            return dict(self._weights) if self._weights is not None else None

    def tick(self) -> None:
        """One second of load on the pods the API server lists now (the last known on a failed read)."""
        try:
            self._pods = dict(self.list_pods())
            self._weights = dict(self.list_weights()) if self.list_weights else None
        except Exception as error:  # an API server hiccup must not stop the clock
            log.warning("listing pods or routes failed, keeping the last lists: %s", error)
        with self._lock:
            before = {name: (pod.served, pod.rejected, pod.failed) for name, pod in self.fleet.pods.items()}
            self.fleet.tick(self.rps, self._pods, self._weights)
            if self._ingress_of is not None:
                self._count_at_the_edge(self._ingress_of, before)

    def _count_at_the_edge(self, isvc: InferenceService, before: Mapping[str, tuple[float, float, float]]) -> None:
        """What ingress-nginx counted this tick: the requests each variant's replicas answered, failed or refused."""
        for name, pod in self.fleet.pods.items():
            served, refused, failed = before.get(name, (0.0, 0.0, 0.0))
            counts = (
                (ANSWERED, pod.served - served - (pod.failed - failed)),
                (SERVER_ERROR, pod.failed - failed),
                (series.BUSY_STATUS, pod.rejected - refused),
            )
            for status, count in counts:
                key = (pod.variant, status)
                self._at_the_edge[key] = self._at_the_edge.get(key, 0.0) + count
        if not any(ready for _, ready in self._pods.values()):
            arrived, _ = self.fleet.history[-1]
            key = (self._primary(isvc), series.BUSY_STATUS)  # no endpoint behind the primary Ingress: 503
            self._at_the_edge[key] = self._at_the_edge.get(key, 0.0) + arrived

    @staticmethod
    def _primary(isvc: InferenceService) -> str:
        """The variant behind the primary Ingress (weights add up to 100: one carries traffic)."""
        return routing.nginx_weighted(isvc, RenderContext())[0][0]

    def _nginx_labels(self, isvc: InferenceService, variant: str, status: str) -> dict[str, str]:
        """The labels ingress-nginx gives a request to `variant`: the primary Ingress's location
        took it, and a canary backend's upstream name says where it went if not to the primary."""
        primary, spec = self._primary(isvc), isvc.spec.routing
        return {
            series.NGINX_STATUS: status,
            "method": INFERENCE_METHOD,
            "path": spec.path,
            series.NAMESPACE: isvc.metadata.namespace,
            series.NGINX_INGRESS: routing.route_name(isvc),
            series.NGINX_SERVICE: meta.variant_name(isvc, primary),
            series.NGINX_CANARY: "" if variant == primary else routing.nginx_upstream(isvc, variant),
            "host": spec.host,  # the controller's --metrics-per-host, on by default
            **NGINX_CONTROLLER,
        }

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.tick()
            next_at += TICK_S
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    # --- exposition ----------------------------------------------------------------------

    def render(self) -> str:
        """The text a scrape of every Ready pod's Triton and DCGM exporter would return, merged."""
        samples: dict[str, list[str]] = {name: [] for name in _TYPES}

        def add(name: str, labels: Mapping[str, str], value: float) -> None:
            samples[name].append(f"{name}{_labels(labels)} {value:.6g}")

        with self._lock:
            for name, pod in sorted(self.fleet.pods.items()):
                if not self._pods.get(name, ("", False))[1]:
                    continue  # not Ready: Triton's model is not loaded, nothing to scrape yet
                triton = {
                    series.NAMESPACE: self.namespace,
                    series.INFERENCE_SERVICE: self.inference_service,
                    series.VARIANT: pod.variant,
                    series.POD: name,
                    "model": self.model,
                    "version": self.version,
                }
                add(series.REQUEST_SUCCESS, triton, int(pod.served - pod.failed))
                failures = {series.REJECTED: pod.rejected, MODEL_ERROR: pod.failed}
                for reason in FAILURE_REASONS:
                    add(series.REQUEST_FAILURE, {**triton, series.REASON: reason}, int(failures.get(reason, 0)))
                add(series.INFERENCE_COUNT, triton, int(pod.served))
                add(series.EXEC_COUNT, triton, int(pod.executions))
                add(series.PENDING_REQUESTS, triton, round(pod.pending))
                add(series.QUEUE_DURATION_US, triton, int(pod.queue_us))
                add(series.REQUEST_DURATION_US, triton, int(pod.request_us))
                p99 = pod.record.latency.quantile(0.99)
                if p99 is not None:
                    add(series.REQUEST_SUMMARY_US, {**triton, series.QUANTILE: "0.99"}, p99 * 1000)
                gpu = {
                    "gpu": "0",
                    "UUID": f"GPU-emulated-{name}",
                    "modelName": GPU_MODEL,
                    series.NAMESPACE: self.namespace,
                    series.POD: name,
                    "container": "triton",
                }
                add(series.GPU_UTIL, gpu, round(100 * pod.gpu_busy))
                add(series.GR_ENGINE_ACTIVE, gpu, pod.gpu_busy)
                add(series.FB_USED, gpu, FB_USED_MIB)
                add(series.FB_FREE, gpu, FB_TOTAL_MIB - FB_USED_MIB)
            types = dict(_TYPES)
            if self._ingress_of is not None:
                types[series.NGINX_REQUESTS] = "counter"
                samples[series.NGINX_REQUESTS] = []
                for (variant, status), count in sorted(self._at_the_edge.items()):
                    add(series.NGINX_REQUESTS, self._nginx_labels(self._ingress_of, variant, status), int(count))
        lines = []
        for name, kind in types.items():
            lines += [f"# TYPE {name} {kind}", *samples[name]]
        return "\n".join(lines) + "\n"
