"""The metric series Triton, the DCGM exporter and the proxies in front of Triton export, and
safe PromQL selectors for them.

Every query Unbusy writes (alert rules, the dashboard, the scaling loop) names its series and
builds its label matchers here, so that a metric rename or a relabelling change is one edit,
and so that no value taken from a spec ever reaches PromQL unescaped.

Label convention (set by the ServiceMonitor/PodMonitor that render/monitors.py writes):
Triton's series carry `namespace`, `pod`, `inferenceservice` and `variant` target labels,
the last two copied from the pod labels. The DCGM exporter runs elsewhere (GPU Operator),
scraped with honorLabels and its Kubernetes mapping on, so its series name the GPU's pod in
`namespace` and `pod` only: they are selected by a regex over the variants' pod names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

# --- Triton (port 8002; own labels `model` and `version`) ---------------------------------
PENDING_REQUESTS = "nv_inference_pending_request_count"  # gauge: requests queued or executing
QUEUE_DURATION_US = "nv_inference_queue_duration_us"  # counter: cumulative queue time
REQUEST_DURATION_US = "nv_inference_request_duration_us"  # counter: cumulative end-to-end time
REQUEST_SUCCESS = "nv_inference_request_success"  # counter
REQUEST_FAILURE = "nv_inference_request_failure"  # counter, label `reason`
INFERENCE_COUNT = "nv_inference_count"  # counter of inferences (batch items, not requests)
EXEC_COUNT = "nv_inference_exec_count"  # counter of executions (batches): count / exec = the mean batch
# Summary quantiles exist only with --metrics-config=summary_latencies=true (deployment.py sets it).
REQUEST_SUMMARY_US = "nv_inference_request_summary_us"
# The failure reason of a request refused because the queue was full: Triton's HTTP 503.
REJECTED = "REJECTED"
MODEL = "model"  # Triton's own label naming the model of a series

# Triton's time to first response (ms), with --metrics-config=histogram_latencies=true: for a
# decoupled, streaming LLM backend, the time to first token as Triton saw it.
FIRST_RESPONSE_MS = "nv_inference_first_response_histogram_ms"  # histogram
BUCKET, SUM, COUNT = "_bucket", "_sum", "_count"  # a histogram's series
LE = "le"

# --- LLM engines on Triton (labels `model` and `version`, as Triton's own) ------------------
# tests/contract/test_llm_contract.py checks every name and label here against the backends'
# documented exposition and source (tests/contract/data/, with their commits).
# The vLLM backend (github.com/triton-inference-server/vllm_backend, src/utils/metrics.py), with
# REPORT_CUSTOM_METRICS on: iteration counters and per-request histograms; no scheduler gauges.
VLLM_PROMPT_TOKENS = "vllm:prompt_tokens_total"  # counter, per prefill iteration
VLLM_OUTPUT_TOKENS = "vllm:generation_tokens_total"  # counter, per decode iteration
VLLM_TTFT_SECONDS = "vllm:time_to_first_token_seconds"  # histogram
VLLM_TPOT_SECONDS = "vllm:time_per_output_token_seconds"  # histogram: each output token after the first
VLLM_E2E_SECONDS = "vllm:e2e_request_latency_seconds"  # histogram, per finished request
VLLM_REQUEST_PROMPT_TOKENS = "vllm:request_prompt_tokens"  # histogram, per finished request
VLLM_REQUEST_OUTPUT_TOKENS = "vllm:request_generation_tokens"  # histogram, per finished request
# vLLM's own scheduler gauges (vllm/v1/metrics/loggers.py); the vLLM backend does not export them,
# a Python-backend LLM (engine python) may.
VLLM_RUNNING = "vllm:num_requests_running"
VLLM_WAITING = "vllm:num_requests_waiting"
VLLM_KV_USED = "vllm:kv_cache_usage_perc"  # fraction 0-1 (vLLM >= 0.9; gpu_cache_usage_perc before)
# The TensorRT-LLM backend (tensorrtllm_backend, now NVIDIA/TensorRT-LLM triton_backend/,
# inflight_batcher_llm/src/custom_metrics_reporter): gauges per iteration, one label each.
TRTLLM_REQUESTS = "nv_trt_llm_request_metrics"  # gauge
TRTLLM_REQUEST_TYPE = "request_type"
TRTLLM_SCHEDULED = "scheduled"  # requests in this iteration's batch
TRTLLM_WAITING = "waiting"  # active requests not scheduled this iteration
TRTLLM_KV_BLOCKS = "nv_trt_llm_kv_cache_block_metrics"  # gauge
TRTLLM_KV_BLOCK_TYPE = "kv_cache_block_type"
TRTLLM_KV_FRACTION = "fraction"  # used blocks / max blocks
# Per-request token counts, observed when a request ends (in the backend since Nov 2024): the sums count tokens.
TRTLLM_INPUT_TOKENS = "nv_llm_input_token_len"  # histogram
TRTLLM_OUTPUT_TOKENS = "nv_llm_output_token_len"  # histogram
TRTLLM_TOKEN_TYPE = "response_metric_type"
TRTLLM_INPUT = "total_input_tokens"
TRTLLM_OUTPUT = "total_output_tokens"

# --- DCGM exporter -------------------------------------------------------------------------
GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"  # percent; not reported for MIG instances
GR_ENGINE_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"  # ratio 0-1; reported per MIG instance too
FB_USED = "DCGM_FI_DEV_FB_USED"  # MiB
FB_FREE = "DCGM_FI_DEV_FB_FREE"  # MiB

# --- the edge: every request a client sent, refused ones included --------------------------
# What each proxy calls its request counter and labels; tests/contract/test_edge_contract.py
# checks them against the projects' source at the versions pinned in testbed/versions.env.
# ingress-nginx (k8s.io/ingress-nginx, internal/ingress/metric/collectors/socket.go): counted
# when a request completes, labelled with the HTTP status and the nginx location that took it.
NGINX_REQUESTS = "nginx_ingress_controller_requests"  # counter
NGINX_STATUS = "status"  # the response's HTTP status code, e.g. 503
NGINX_INGRESS = "ingress"  # the Ingress of the location: the primary's, for canary requests too
NGINX_SERVICE = "service"  # that Ingress's backend Service
NGINX_CANARY = "canary"  # the canary backend's upstream name when a canary took the request, else empty
# Prometheus renames a scraped label that clashes with a target label to exported_<name>: the
# Ingress's `namespace` without honorLabels (ingress-nginx's chart default).
EXPORTED_NAMESPACE = "exported_namespace"
# Envoy, as Envoy Gateway configures it (github.com/envoyproxy/gateway): per-cluster upstream
# responses by code class ("2".."5").
ENVOY_UPSTREAM_RESPONSES = "envoy_cluster_upstream_rq_xx"  # counter
ENVOY_CLUSTER = "envoy_cluster_name"
ENVOY_CODE_CLASS = "envoy_response_code_class"
ENVOY_SERVER_ERRORS = "5"  # the class of 5xx responses: Envoy counts no single code per cluster here
# Istio (istio.io/istio): requests as the reporting proxy saw them.
ISTIO_REQUESTS = "istio_requests_total"  # counter
ISTIO_REPORTER = "reporter"  # source (a client proxy, the ingress gateway), destination or waypoint
# The reporters that see a request before the server does (Istio's own dashboards add these two):
# a request Triton refuses is counted once, and one refused on the way is counted too.
ISTIO_CLIENT_REPORTERS = ("source", "waypoint")
ISTIO_SERVICE = "destination_service_name"
ISTIO_SERVICE_NAMESPACE = "destination_service_namespace"
ISTIO_RESPONSE_CODE = "response_code"
# Traefik v3 (github.com/traefik/traefik/v3, pkg/observability/metrics/prometheus.go): requests a
# load-balancer service's servers answered, counted per server proxy (pkg/server/service), with
# the status code. Its Kubernetes Gateway provider makes each backendRef of an HTTPRoute rule one
# such service (render/routing.py traefik_service_regex); a request to a backend with no ready
# server is answered 503 before any server proxy and counted under no service.
TRAEFIK_SERVICE_REQUESTS = "traefik_service_requests_total"  # counter
TRAEFIK_SERVICE = "service"  # <service>@<provider>
TRAEFIK_CODE = "code"  # the response's HTTP status code, e.g. 503
# The status of a request refused because no replica could take it: Triton's queue was full,
# or no replica was ready.
BUSY_STATUS = "503"

# --- kube-state-metrics (labels namespace, deployment; scraped with honorLabels) -----------
DEPLOYMENT_REPLICAS_AVAILABLE = "kube_deployment_status_replicas_available"
DEPLOYMENT_REPLICAS_SPEC = "kube_deployment_spec_replicas"

# --- target labels -------------------------------------------------------------------------
NAMESPACE = "namespace"
POD = "pod"
INFERENCE_SERVICE = "inferenceservice"
VARIANT = "variant"
DEPLOYMENT = "deployment"
QUANTILE = "quantile"
REASON = "reason"

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_OPERATORS = ("=", "!=", "=~", "!~")
# Inside a PromQL double-quoted string a raw newline ends the query with an error, and a quote
# or backslash would end or bend the string: these are what a value must not carry raw.
_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"}
# RE2's metacharacters. Not Python's re.escape: it also escapes spaces and '#', which RE2
# (Prometheus' regex engine) rejects as unknown escapes.
_REGEX_META = frozenset("\\.+*?()|[]{}^$")
# A Deployment's pods are <deployment>-<pod-template-hash>-<random suffix>, both lowercase
# alphanumerics. Requiring exactly these two parts keeps <isvc>-<variant> from also matching
# the pods of a Deployment whose name merely starts with it (isvc `a`, variant `b` must not
# match isvc `a-b`, variant `c`).
_POD_SUFFIX = "-[a-z0-9]+-[a-z0-9]+"


def quote(value: str) -> str:
    """`value` as a PromQL string literal that cannot end the string or the selector early."""
    return '"' + "".join(_STRING_ESCAPES.get(char, char) for char in value) + '"'


def escape_regex(value: str) -> str:
    """`value` as an RE2 regex that matches exactly that text."""
    return "".join("\\" + char if char in _REGEX_META else char for char in value)


def matcher(label: str, value: str, op: str = "=") -> str:
    """One label matcher, e.g. namespace="ml"; the value is escaped, the label name checked."""
    if not _LABEL_NAME.match(label):
        raise ValueError(f"{label!r} is not a Prometheus label name")
    if op not in _OPERATORS:
        raise ValueError(f"{op!r} is not a PromQL matcher operator; use one of {', '.join(_OPERATORS)}")
    return f"{label}{op}{quote(value)}"


def number(value: float) -> str:
    """A number as a PromQL literal: 90 rather than 90.0, and every digit of 0.25."""
    value = float(value)  # defaults of the spec are ints: pydantic does not coerce defaults
    return str(int(value)) if math.isfinite(value) and value.is_integer() else repr(value)


def selector(*matchers: str) -> str:
    """Matchers joined into a selector, in the order given (so queries read the same every time)."""
    return "{" + ",".join(matchers) + "}"


def names_regex(names: Iterable[str]) -> str:
    """An anchored regex that matches any of `names` exactly."""
    unique = sorted(dict.fromkeys(names))
    if not unique:
        raise ValueError("at least one name is needed: an empty alternation would match the empty string")
    return "^(?:" + "|".join(escape_regex(name) for name in unique) + ")$"


def pod_regex(deployments: Iterable[str]) -> str:
    """An anchored regex that matches the pod names of these Deployments and of no other."""
    return names_regex(deployments).removesuffix("$") + _POD_SUFFIX + "$"


def triton_selector(namespace: str, inference_service: str, *extra: str, variant: str | None = None) -> str:
    """Triton series of one InferenceService (or of one of its variants), selected by target labels."""
    scope = [matcher(NAMESPACE, namespace), matcher(INFERENCE_SERVICE, inference_service)]
    return selector(*scope, *([matcher(VARIANT, variant)] if variant else []), *extra)


def dcgm_selector(namespace: str, deployments: Iterable[str], *extra: str) -> str:
    """DCGM series of the GPUs held by the pods of these Deployments."""
    return selector(matcher(NAMESPACE, namespace), matcher(POD, pod_regex(deployments), "=~"), *extra)


def deployment_selector(namespace: str, deployments: Iterable[str], *extra: str) -> str:
    """kube-state-metrics series of these Deployments."""
    return selector(matcher(NAMESPACE, namespace), matcher(DEPLOYMENT, names_regex(deployments), "=~"), *extra)


@dataclass(frozen=True)
class Scope:
    """Where one InferenceService's series live; the selectors above, bound to it.

    `deployments` are its variants' Deployment names (render.meta.variant_name); a scope of
    one variant sets `variant` and names that variant's Deployment only.
    """

    namespace: str
    inference_service: str
    deployments: tuple[str, ...]
    variant: str | None = None

    def triton(self, *extra: str) -> str:
        return triton_selector(self.namespace, self.inference_service, *extra, variant=self.variant)

    def dcgm(self, *extra: str) -> str:
        return dcgm_selector(self.namespace, self.deployments, *extra)

    def deployment(self, *extra: str) -> str:
        return deployment_selector(self.namespace, self.deployments, *extra)

    def pending_total(self, model: str) -> str:
        """Every request pending (queued or executing) in the scope's Tritons for `model`: the
        queue-depth input of the scaling loop and of KEDA's queue trigger alike."""
        return f"sum({PENDING_REQUESTS}{self.triton(matcher(MODEL, model))})"


# --- per-GPU values, in the unit people read ----------------------------------------------


def gpu_utilization_percent(dcgm: str, mig: bool) -> str:
    """Busy percent of each GPU (or MIG slice) the selector picks.

    DCGM does not report DCGM_FI_DEV_GPU_UTIL for MIG instances; the graphics engine activity
    (a 0-1 ratio) is what it reports per slice, so MIG reads that, scaled to percent.
    """
    return f"100 * {GR_ENGINE_ACTIVE}{dcgm}" if mig else f"{GPU_UTIL}{dcgm}"


def gpu_memory_percent(dcgm: str) -> str:
    """Framebuffer used, in percent of the total, of each GPU (or MIG slice) the selector picks."""
    return f"100 * {FB_USED}{dcgm} / ({FB_USED}{dcgm} + {FB_FREE}{dcgm})"
