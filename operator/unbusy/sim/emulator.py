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

Given a lister of the Ready pods' addresses (`answer`), every such pod also answers Triton's
HTTP inference requests on its ip:8000 in real time, as its replica would (sim/answer.py): what
a real proxy in front, the testbed's Traefik, sends there.

LlmEmulator is its LLM mode (spec.model.llm): the same pods, edge and HTTP, with one serving/llm.py
engine per pod (sim/llm_live.py) exporting what a Python-backend LLM exports in vLLM's names.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from unbusy import series
from unbusy.api import InferenceService
from unbusy.render import meta, routing
from unbusy.render.context import RenderContext
from unbusy.serving.llm import LlmProfile
from unbusy.serving.model import ServiceModel
from unbusy.sim.answer import AddressLister, Answerers
from unbusy.sim.live import TICK_S, Fault, LiveFleet, Pod, Tally
from unbusy.sim.llm import MixShift
from unbusy.sim.llm_live import LlmLiveFleet, LlmPod

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

TRITON_TYPES = {
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


# A Python-backend LLM on Triton: Triton's own per-model counters (decoupled: nothing waits in its
# queue), the vLLM names its engine exports through Triton's custom metrics, the GPU's DCGM series.
LLM_TYPES = {
    series.REQUEST_SUCCESS: "counter",
    series.REQUEST_FAILURE: "counter",
    series.INFERENCE_COUNT: "counter",
    series.PENDING_REQUESTS: "gauge",
    series.VLLM_PROMPT_TOKENS: "counter",
    series.VLLM_OUTPUT_TOKENS: "counter",
    series.VLLM_TTFT_SECONDS: "histogram",
    series.VLLM_TPOT_SECONDS: "histogram",
    series.VLLM_E2E_SECONDS: "histogram",
    series.VLLM_REQUEST_PROMPT_TOKENS: "histogram",
    series.VLLM_REQUEST_OUTPUT_TOKENS: "histogram",
    series.VLLM_RUNNING: "gauge",
    series.VLLM_WAITING: "gauge",
    series.VLLM_KV_USED: "gauge",
    series.GPU_UTIL: "gauge",
    series.GR_ENGINE_ACTIVE: "gauge",
    series.FB_USED: "gauge",
    series.FB_FREE: "gauge",
}


def _exact(value: float) -> str:
    """A counter as a client library writes it: whole numbers in full (6 digits would round millions of tokens)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _labels(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f"{k}={series.quote(v)}" for k, v in labels.items()) + "}"


class Emulator:
    TYPES: Mapping[str, str] = TRITON_TYPES  # the series families a pod exports, in exposition order

    def __init__(
        self,
        pods: PodLister,
        *,
        namespace: str,
        inference_service: str,
        model: str,
        service: ServiceModel | None = None,
        rps: float = 0.0,
        version: str = "1",
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        isvc: InferenceService | None = None,
        weights: WeightLister | None = None,
        variant_services: Mapping[str, ServiceModel] | None = None,
        fleet: LiveFleet | LlmLiveFleet | None = None,
        answer: AddressLister | None = None,
        answer_port: int = meta.HTTP_PORT,
    ) -> None:
        self.list_pods, self.list_weights, self.list_addresses = pods, weights, answer
        self.namespace, self.inference_service, self.model, self.version = namespace, inference_service, model, version
        self.fleet = fleet or LiveFleet(service or ServiceModel(), seed=seed, variant_models=variant_services)
        self.rps = rps
        self.answerers = None
        self._answered: dict[str, tuple[float, float]] = {}  # pod -> (served, refused) at the last tick
        if answer is not None:
            if not isinstance(self.fleet, LiveFleet):
                raise ValueError("spec.model.llm: the emulator answers HTTP requests for a fixed-cost model only")
            fleet = self.fleet
            self.answerers = Answerers(model, lambda variant: fleet.model_of(variant).batcher, answer_port, seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pods: Mapping[str, tuple[str, bool]] = {}
        self._weights: Mapping[str, int] | None = None
        # ingress-nginx in front: the InferenceService its Ingresses come from, with routing.provider nginx.
        routed = isvc is not None and isvc.spec.routing is not None and isvc.spec.routing.effective_provider == "nginx"
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
        if self.answerers is not None:
            self.answerers.stop()

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
            if self.answerers is not None:
                self.answerers.sync(self.list_addresses())
        except Exception as error:  # an API server hiccup must not stop the clock
            log.warning("listing pods or routes failed, keeping the last lists: %s", error)
        with self._lock:
            before = {name: (pod.served, pod.rejected, pod.failed) for name, pod in self.fleet.pods.items()}
            if self.answerers is None:
                self.fleet.tick(self.rps, self._pods, self._weights)
            else:
                self._tick_answered(self.answerers)
            if self._ingress_of is not None:
                self._count_at_the_edge(self._ingress_of, before)

    def _tick_answered(self, answerers: Answerers) -> None:
        """A second of the real requests the pods answered (their counters are the answerers'): the
        GPU readings follow what each served, the latency summaries' window moves on."""
        fleet, pods = self.fleet, answerers.pods()
        arrived = rejected = 0.0
        for name, pod in pods.items():
            served, refused = self._answered.get(name, (0.0, 0.0))
            pod.gpu_busy = fleet.model_of(pod.variant).gpu_reading((pod.served - served) / TICK_S)
            pod.record.latency.next_tick()
            arrived += pod.served - served + pod.rejected - refused
            rejected += pod.rejected - refused
        self._answered = {name: (pod.served, pod.rejected) for name, pod in pods.items()}
        fleet.pods = pods
        fleet.history.append((arrived, rejected))
        fleet.now += TICK_S

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
        samples: dict[str, list[str]] = {name: [] for name in self.TYPES}

        def add(name: str, labels: Mapping[str, str], value: float | str, suffix: str = "") -> None:
            """A sample of family `name` (`suffix`: a histogram's _bucket, _sum or _count); a str value as written."""
            text = value if isinstance(value, str) else f"{value:.6g}"
            samples[name].append(f"{name}{suffix}{_labels(labels)} {text}")

        with self._lock:
            for name, pod in sorted(self.fleet.pods.items()):
                if not self._pods.get(name, ("", False))[1]:
                    continue  # not Ready: Triton's model is not loaded, nothing to scrape yet
                self._expose(name, pod, add)
            types = dict(self.TYPES)
            if self._ingress_of is not None:
                types[series.NGINX_REQUESTS] = "counter"
                samples[series.NGINX_REQUESTS] = []
                for (variant, status), count in sorted(self._at_the_edge.items()):
                    add(series.NGINX_REQUESTS, self._nginx_labels(self._ingress_of, variant, status), int(count))
        lines = []
        for name, kind in types.items():
            lines += [f"# TYPE {name} {kind}", *samples[name]]
        return "\n".join(lines) + "\n"

    def _triton_labels(self, name: str, variant: str) -> dict[str, str]:
        """Triton's own labels of a pod's series, and the target labels the ServiceMonitor adds."""
        return {
            series.NAMESPACE: self.namespace,
            series.INFERENCE_SERVICE: self.inference_service,
            series.VARIANT: variant,
            series.POD: name,
            "model": self.model,
            "version": self.version,
        }

    def _gpu(self, name: str, busy: float, add: Callable[..., None]) -> None:
        """The DCGM exporter's series of the pod's GPU, `busy` of the time (0-1)."""
        gpu = {
            "gpu": "0",
            "UUID": f"GPU-emulated-{name}",
            "modelName": GPU_MODEL,
            series.NAMESPACE: self.namespace,
            series.POD: name,
            "container": "triton",
        }
        add(series.GPU_UTIL, gpu, round(100 * busy))
        add(series.GR_ENGINE_ACTIVE, gpu, busy)
        add(series.FB_USED, gpu, FB_USED_MIB)
        add(series.FB_FREE, gpu, FB_TOTAL_MIB - FB_USED_MIB)

    def _expose(self, name: str, pod: Pod, add: Callable[..., None]) -> None:
        """One Ready pod's series: Triton's, and the DCGM exporter's of its GPU."""
        triton = self._triton_labels(name, pod.variant)
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
        self._gpu(name, pod.gpu_busy, add)


class LlmEmulator(Emulator):
    """The emulator of an LLM (spec.model.llm) on a Python-backend engine that exports vLLM's names:
    one serving/llm.py Engine per Ready pod (sim/llm_live.py), requests of sizes drawn from a mix
    the caller may change while running (set_mix); the edge counts them as for any model, a
    request the engine refuses (its waiting limit) being a 503 there. Faults (degrade) and the
    load generator's tally (take_tally) are the fixed-cost fleet's: here ttft_p99 and arrived say
    what the requests met."""

    TYPES = LLM_TYPES
    fleet: LlmLiveFleet

    def __init__(self, pods: PodLister, *, profile: LlmProfile, mix: MixShift, seed: int = 0, **kwargs) -> None:
        super().__init__(pods, fleet=LlmLiveFleet(profile, mix, seed=seed), seed=seed, **kwargs)

    def set_mix(self, mix: MixShift, over_s: float = 0.0) -> None:
        """Request sizes from the next tick on: `mix`, moving from its start to its end over `over_s` seconds."""
        with self._lock:
            self.fleet.set_mix(mix, over_s)

    @property
    def now(self) -> float:
        """The fleet's clock: seconds ticked."""
        with self._lock:
            return self.fleet.now

    def arrived(self, since: float, until: float) -> int:
        """Requests that arrived in [since, until) by the fleet's clock: what clients sent."""
        with self._lock:
            return self.fleet.arrived(since, until)

    def ended(self, since: float, until: float) -> int:
        """Requests that ended in [since, until) by the fleet's clock (LlmLiveFleet.ended)."""
        with self._lock:
            return self.fleet.ended(since, until)

    def ttft_p99(self, since: float, until: float) -> float | None:
        """TTFT p99 (s) of the requests that arrived in [since, until) by the fleet's clock (LlmLiveFleet.ttft_p99)."""
        with self._lock:
            return self.fleet.ttft_p99(since, until)

    def _expose(self, name: str, pod: LlmPod, add: Callable[..., None]) -> None:
        triton = self._triton_labels(name, pod.variant)
        add(series.REQUEST_SUCCESS, triton, _exact(pod.served))
        refused = {MODEL_ERROR: pod.rejected}  # a refusal is the model's own error response
        for reason in FAILURE_REASONS:
            add(series.REQUEST_FAILURE, {**triton, series.REASON: reason}, _exact(refused.get(reason, 0)))
        add(series.INFERENCE_COUNT, triton, _exact(pod.served))
        add(series.PENDING_REQUESTS, triton, 0)  # decoupled: the engine takes every request in at once
        engine = pod.engine
        add(series.VLLM_PROMPT_TOKENS, triton, _exact(engine.prompt_tokens))
        add(series.VLLM_OUTPUT_TOKENS, triton, _exact(engine.output_tokens))
        for family, histogram in (
            (series.VLLM_TTFT_SECONDS, pod.ttft),
            (series.VLLM_TPOT_SECONDS, pod.tpot),
            (series.VLLM_E2E_SECONDS, pod.e2e),
            (series.VLLM_REQUEST_PROMPT_TOKENS, pod.prompts),
            (series.VLLM_REQUEST_OUTPUT_TOKENS, pod.outputs),
        ):
            for bound, count in zip((*histogram.bounds, math.inf), histogram.cumulative(), strict=True):
                le = "+Inf" if bound == math.inf else str(bound)
                add(family, {**triton, series.LE: le}, _exact(count), series.BUCKET)
            add(family, triton, _exact(histogram.total), series.SUM)
            add(family, triton, _exact(histogram.count), series.COUNT)
        add(series.VLLM_RUNNING, triton, engine.running)
        add(series.VLLM_WAITING, triton, len(engine.waiting))
        add(series.VLLM_KV_USED, triton, _exact(engine.kv_fraction))
        self._gpu(name, pod.gpu_busy, add)
