"""The InferenceService spec: what a platform engineer asks for."""

from __future__ import annotations

import re
import string
from typing import Annotated, ClassVar, Literal

from pydantic import Field, create_model, field_validator

from unbusy.api.base import (
    DNS_LABEL_PATTERN,
    DURATION_PATTERN,
    PERCENT_OR_COUNT_PATTERN,
    ApiModel,
    KubeObject,
    Quantity,
    Rule,
)

MAX_VARIANTS = 8
DEFAULT_IMAGE = "nvcr.io/nvidia/tritonserver:25.01-py3"
DEFAULT_VARIANT = "main"


# --- model -------------------------------------------------------------------------------


class DynamicBatching(ApiModel):
    preferred_batch_sizes: list[int] = Field(
        default_factory=list,
        max_length=16,
        description="Batch sizes Triton should prefer to form (e.g. [4, 8]). Empty lets Triton pick.",
    )
    max_queue_delay_microseconds: int = Field(
        100,
        ge=0,
        le=10_000_000,
        description="How long Triton may hold a request to fill a batch, in microseconds.",
    )
    max_queue_size: int = Field(
        64,
        ge=0,
        le=1_000_000,
        description="Requests queued per model instance beyond which Triton rejects new ones "
        "at once (HTTP 503) instead of queueing forever. 0 means unbounded.",
    )
    priority_levels: int = Field(
        0,
        ge=0,
        le=16,
        description="Number of request priority levels (0 disables priorities). Level 1 is the highest.",
    )
    default_priority_level: int | None = Field(
        None, ge=1, le=16, description="Priority of requests that name none; defaults to the lowest level."
    )


class WarmupInput(ApiModel):
    name: str = Field(max_length=128, description="Model input name.")
    data_type: str = Field(pattern=r"^TYPE_[A-Z0-9]+$", max_length=32, description="Triton data type, e.g. TYPE_FP32.")
    dims: list[int] = Field(min_length=1, max_length=8, description="Input shape without the batch dimension.")


class Warmup(ApiModel):
    batch_size: int = Field(1, ge=1, le=4096, description="Batch size of the warm-up requests.")
    iterations: int = Field(1, ge=1, le=100, description="How many warm-up requests Triton sends at load.")
    inputs: list[WarmupInput] = Field(
        min_length=1, max_length=16, description="Inputs to fill with random data during warm-up."
    )


class ModelConfig(ApiModel):
    """The parts of Triton's config.pbtxt the operator manages; the rest is auto-completed by Triton."""

    backend: str | None = Field(
        None,
        pattern=r"^[a-z0-9_]+$",
        max_length=64,
        description="Triton backend (onnxruntime, tensorrt, pytorch, python, vllm ...).",
    )
    max_batch_size: int = Field(8, ge=0, le=4096, description="Largest batch Triton may form; 0 disables batching.")
    dynamic_batching: DynamicBatching | None = Field(
        default_factory=DynamicBatching, description="Dynamic batching; omit to turn it off."
    )
    response_cache: bool = Field(False, description="Cache responses of identical requests in Triton.")
    instance_count: int = Field(1, ge=1, le=64, description="Model instances per GPU (instance_group count).")
    warmup: Warmup | None = Field(None, description="Warm-up requests Triton runs before it reports ready.")


class ServiceTime(ApiModel):
    floor_ms: float = Field(
        ge=0, le=60_000, description="Shortest time any batch takes (ms): below it the model is launch-bound."
    )
    base_ms: float = Field(
        ge=0, le=60_000, description="Time of a batch: baseMs + perItemMs x requests, at least floorMs."
    )
    per_item_ms: float = Field(gt=0, le=60_000, description="Time each request adds to its batch (ms).")


class GpuUtilizationCurve(ApiModel):
    ceiling: float = Field(gt=0, le=1, description="GPU utilisation (0-1) a saturated replica reads (NVML, DCGM).")
    exponent: float = Field(gt=0, le=4, description="The reading at a fraction x of capacity is ceiling x x^exponent.")


class Pauses(ApiModel):
    per_second: float = Field(0, ge=0, le=100, description="How often a replica stalls (per second), busy or idle.")
    per_execution: float = Field(
        0, ge=0, le=1, description="Share of executions (batches) that stall, each ending that much later."
    )
    ms: float = Field(0, ge=0, le=10_000, description="How long each stall lasts (ms).")


class Serving(ApiModel):
    """How one replica serves the model, measured on a real Triton: print it with `unbusy calibrate`."""

    measured: str = Field("", max_length=512, description="Where, on what and how it was measured.")
    service_time: ServiceTime = Field(description="Time a batch of n requests takes.")
    gpu_utilization: GpuUtilizationCurve = Field(description="GPU utilisation read at a given load.")
    pauses: Pauses = Field(default_factory=Pauses, description="Stalls of the serving process (tail latency).")
    ready_seconds: float = Field(ge=0, le=7200, description="From tritonserver's start to the model ready.")


# Triton backends whose LLM metrics Unbusy knows, each named as its engine.
LLM_BACKENDS = ("vllm", "tensorrtllm")
LlmEngine = Literal["vllm", "tensorrtllm", "python"]


class LlmSlo(ApiModel):
    ttft_p99_ms: float = Field(
        gt=0,
        le=600_000,
        description="Time to first token, p99 target (ms): the guard the scaling loop keeps, and the alert's limit.",
    )
    tpot_p99_ms: float | None = Field(
        None,
        gt=0,
        le=60_000,
        description="Time per output token after the first, p99 target (ms); alerted on where the engine reports "
        "it (vllm, python), not scaled on.",
    )


class LlmCapacity(ApiModel):
    """What one saturated replica serves, in tokens: it is saturated when prompt tokens/s over
    promptTokensPerSecond plus output tokens/s over outputTokensPerSecond reaches 1."""

    prompt_tokens_per_second: float = Field(
        gt=0,
        le=10_000_000,
        description="Prompt (prefill) tokens per second a replica serves when it does nothing else; the starting "
        "value of what the operator learns.",
    )
    output_tokens_per_second: float = Field(
        gt=0,
        le=1_000_000,
        description="Output (decode) tokens per second a replica serves when it does nothing else; the starting "
        "value of what the operator learns.",
    )


class Llm(ApiModel):
    """A large language model served by a decoupled (streaming) backend: scaled on tokens and time
    to first token, not on Triton's request queue, which such a backend keeps near 0."""

    engine: LlmEngine | None = Field(
        None,
        description="Whose metric names to read: vllm (Triton's vLLM backend), tensorrtllm (Triton's TensorRT-LLM "
        "backend) or python (a Python-backend LLM that exports the vLLM names); defaults from config.backend "
        "(vllm, tensorrtllm, else python).",
    )
    slo: LlmSlo = Field(description="Latency targets per request.")
    capacity: LlmCapacity = Field(description="Tokens per second a replica serves at saturation.")
    kv_cache_tokens: int | None = Field(
        None,
        ge=256,
        le=100_000_000,
        description="The engine's KV cache per replica in tokens (blocks x tokens per block, not blocks), where "
        "known: the limit on tokens in flight, for engines that report no KV use.",
    )


class Model(ApiModel):
    rules: ClassVar = (
        Rule(
            "!has(self.llm) || !has(self.llm.engine) || !has(self.config) || !has(self.config.backend)"
            " || !(self.config.backend in ['vllm', 'tensorrtllm']) || self.llm.engine == self.config.backend",
            "must match config.backend where that is vllm or tensorrtllm: the engine names the metrics "
            "Unbusy reads, and that backend exports its own (or leave engine out)",
            lambda m: (
                m.llm is None
                or m.llm.engine is None
                or m.config is None
                or m.config.backend not in LLM_BACKENDS
                or m.llm.engine == m.config.backend
            ),
            ".llm.engine",
        ),
    )

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$", max_length=128, description="Triton model name inside the repository."
    )
    repository: str = Field(
        pattern=r"^(s3|gs)://[a-z0-9][a-z0-9.\-]*(/[A-Za-z0-9._\-/]*)?$|^pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/[A-Za-z0-9._\-/]*)?$",
        max_length=512,
        description="Model repository: s3://bucket/path, gs://bucket/path or pvc://claim/path.",
    )
    version: str | None = Field(
        None, pattern=r"^[0-9]+$", max_length=16, description="Model version to serve; the latest when omitted."
    )
    gpu_memory: Quantity | None = Field(
        None, description="GPU memory the model needs at run time (e.g. 14Gi); drives gpu.migProfile=auto."
    )
    config: ModelConfig | None = Field(
        None,
        description="Model configuration the operator writes as config.pbtxt; omit to use the repository's own.",
    )
    serving: Serving | None = Field(
        None, description="Measured serving behaviour (`unbusy calibrate`) for `unbusy simulate`; optional."
    )
    llm: Llm | None = Field(
        None,
        description="Serve a large language model: scale on tokens per second and time to first token "
        "(vLLM, TensorRT-LLM or a Python-backend LLM).",
    )

    def llm_engine(self) -> str | None:
        """llm.engine with its default resolved from config.backend; None for a model that is no LLM."""
        if self.llm is None:
            return None
        if self.llm.engine is not None:
            return self.llm.engine
        backend = self.config.backend if self.config is not None else None
        return backend if backend in LLM_BACKENDS else "python"


# --- triton ------------------------------------------------------------------------------


class Resources(ApiModel):
    requests: dict[str, Quantity] = Field(
        default_factory=lambda: {"cpu": "2", "memory": "8Gi"}, description="CPU / memory requests."
    )
    limits: dict[str, Quantity] = Field(default_factory=lambda: {"memory": "16Gi"}, description="CPU / memory limits.")


class Triton(ApiModel):
    image: str = Field(DEFAULT_IMAGE, max_length=512, description="Triton Inference Server image.")
    args: list[str] = Field(
        default_factory=list, max_length=64, description="Extra tritonserver arguments, appended last."
    )
    resources: Resources = Field(default_factory=Resources, description="CPU and memory for the Triton container.")
    env: list[KubeObject] = Field(default_factory=list, max_length=64, description="Extra environment variables.")
    startup_timeout_seconds: int = Field(
        900, ge=30, le=7200, description="Time allowed for pulling weights and loading the model before restarts."
    )
    termination_grace_period_seconds: int = Field(
        60, ge=0, le=3600, description="Time a terminating replica gets to drain in-flight requests."
    )
    service_account_name: str | None = Field(
        None, max_length=253, description="ServiceAccount of the Triton pods (e.g. one with bucket access)."
    )


# --- gpu ---------------------------------------------------------------------------------

GpuProduct = Literal["A100-40GB", "A100-80GB", "H100-80GB", "H100-94GB", "H200-141GB"]


class Gpu(ApiModel):
    rules: ClassVar = (
        Rule(
            "has(self.count) != has(self.migProfile)",
            "set exactly one of count (whole GPUs) or migProfile (a MIG slice)",
            lambda gpu: (gpu.count is None) != (gpu.mig_profile is None),
        ),
        Rule(
            "!has(self.migProfile) || has(self.product)",
            "required with migProfile: MIG profiles differ per GPU product",
            lambda gpu: gpu.mig_profile is None or gpu.product is not None,
            ".product",
        ),
    )

    count: int | None = Field(None, ge=1, le=16, description="Whole GPUs per replica.")
    mig_profile: str | None = Field(
        None,
        pattern=r"^(auto|[1-7]g\.[0-9]+gb(\+me)?)$",
        max_length=16,
        description="MIG profile per replica (e.g. 1g.10gb), or auto: the smallest that holds model.gpuMemory.",
    )
    product: GpuProduct | None = Field(None, description="GPU product to run on; selects nodes by product label.")
    mig_strategy: Literal["mixed", "single"] = Field(
        "mixed", description="The NVIDIA device plugin's MIG strategy in the cluster."
    )
    memory_headroom_percent: int = Field(
        10, ge=0, le=100, description="Headroom over model.gpuMemory when choosing a MIG profile automatically."
    )


# --- scheduling --------------------------------------------------------------------------


class TopologySpread(ApiModel):
    enabled: bool = Field(True, description="Spread replicas across topology domains.")
    topology_key: str = Field("topology.kubernetes.io/zone", max_length=253, description="Node label to spread by.")
    max_skew: int = Field(1, ge=1, le=100, description="Largest allowed difference in replicas between domains.")
    when_unsatisfiable: Literal["ScheduleAnyway", "DoNotSchedule"] = Field(
        "ScheduleAnyway", description="Whether spreading is a preference or a hard rule."
    )


class Scheduling(ApiModel):
    node_selector: dict[str, str] = Field(default_factory=dict, description="Extra node labels to require.")
    tolerations: list[KubeObject] = Field(default_factory=list, max_length=32, description="Extra tolerations.")
    affinity: KubeObject | None = Field(None, description="Pod affinity / anti-affinity, as in a PodSpec.")
    topology_spread: TopologySpread = Field(default_factory=TopologySpread, description="Spread across zones.")
    priority_class_name: str | None = Field(None, max_length=253, description="PriorityClass of Triton pods.")
    spot: bool = Field(False, description="Tolerate the spot / preemptible taints of GKE, EKS and AKS.")


# --- variants ----------------------------------------------------------------------------


class Variant(ApiModel):
    rules: ClassVar = (
        Rule(
            "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
            "must be <= maxReplicas",
            lambda v: v.min_replicas is None or v.max_replicas is None or v.min_replicas <= v.max_replicas,
            ".minReplicas",
        ),
    )

    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=20, description="Variant name, e.g. stable, canary.")
    weight: int = Field(ge=0, le=100, description="Share of traffic in percent; weights add up to 100.")
    model_version: str | None = Field(
        None, pattern=r"^[0-9]+$", max_length=16, description="Overrides model.version for this variant."
    )
    model_repository: str | None = Field(
        None, max_length=512, description="Overrides model.repository for this variant."
    )
    image: str | None = Field(None, max_length=512, description="Overrides triton.image for this variant.")
    config: ModelConfig | None = Field(
        None, description="Overrides model.config for this variant (e.g. a new configuration as a canary)."
    )
    min_replicas: int | None = Field(None, ge=0, le=1000, description="Overrides autoscaling.minReplicas.")
    max_replicas: int | None = Field(None, ge=1, le=1000, description="Overrides autoscaling.maxReplicas.")


class Fallback(ApiModel):
    """Shed to a smaller model instead of answering 503 while new replicas start."""

    variant: str = Field(
        pattern=DNS_LABEL_PATTERN,
        max_length=20,
        description="The variant of spec.variants that takes the traffic the others cannot serve with their ready "
        "replicas (usually weight 0: a smaller, faster model).",
    )
    rps_per_replica: float = Field(
        gt=0,
        le=1_000_000,
        description="Requests per second one replica of the fallback answers at saturation (unbusy calibrate, "
        "or a load test): what it can take is its ready replicas x this x utilizationPercent.",
    )
    max_percent: int = Field(50, ge=1, le=100, description="Most of the traffic, in percent, moved to the fallback.")
    shed_above_percent: int = Field(
        95,
        ge=50,
        le=100,
        description="A variant keeps demand up to this share of its ready replicas' capacity and sheds the rest.",
    )
    utilization_percent: int = Field(
        90, ge=10, le=100, description="Share of the fallback's ready capacity that shed traffic may fill."
    )
    restore_seconds: int = Field(
        60,
        ge=0,
        le=3600,
        description="Weight moves back once the ready replicas have covered the demand for this long.",
    )


# --- rollout -----------------------------------------------------------------------------


# A variant's canary runs beside it as this extra track until promoted or rolled back.
CANARY_SUFFIX = "-canary"


class CanaryStep(ApiModel):
    weight: int = Field(ge=1, le=100, description="Share of the variant's traffic the canary takes, in percent.")
    pause_seconds: int = Field(
        60, ge=0, le=86400, description="How long the canary stays at this weight, passing every analysis."
    )


class RolloutCheck(ApiModel):
    rules: ClassVar = (
        Rule(
            "has(self.max) != has(self.maxRatioToStable)",
            "set exactly one of max (an absolute limit) or maxRatioToStable (a limit relative to the stable "
            "version over the same window)",
            lambda c: (c.max is None) != (c.max_ratio_to_stable is None),
            ".max",
        ),
    )

    metric: Literal["p99LatencyMs", "errorRatePercent", "queueTimeMs"] = Field(
        description="p99LatencyMs: Triton's p99 request latency (its summary, the slowest pod); errorRatePercent: "
        "failed requests in percent, Triton's failures and, where the edge is read (autoscaling.demand), "
        "its 503s; queueTimeMs: mean time a request waits in Triton's queue."
    )
    max: float | None = Field(None, ge=0, description="The canary fails the check above this value.")
    max_ratio_to_stable: float | None = Field(
        None,
        ge=1,
        le=100,
        description="The canary fails the check above the stable version's value times this, over the same window.",
    )


def _default_steps() -> list[CanaryStep]:
    return [CanaryStep(weight=w) for w in (10, 25, 50, 100)]


def _default_checks() -> list[RolloutCheck]:
    return [
        RolloutCheck(metric="p99LatencyMs", max_ratio_to_stable=1.5),
        RolloutCheck(metric="errorRatePercent", max=1),
    ]


class CanaryStrategy(ApiModel):
    """A new model version, image or model config of a variant runs as its canary first."""

    rules: ClassVar = (
        Rule(
            "self.steps.map(s, s.weight).isSorted()",
            "the steps' weights must rise (e.g. 10, 25, 50, 100)",
            lambda c: [s.weight for s in c.steps] == sorted(s.weight for s in c.steps),
            ".steps",
        ),
    )

    steps: list[CanaryStep] = Field(
        default_factory=_default_steps,
        min_length=1,
        max_length=20,
        description="Weights the canary takes in turn, each held for its pauseSeconds; promoted after the last.",
    )
    analysis_interval_seconds: int = Field(
        30, ge=5, le=3600, description="How often the checks are measured, each over the last interval."
    )
    checks: list[RolloutCheck] = Field(
        default_factory=_default_checks, min_length=1, max_length=8, description="What the canary must pass."
    )
    failure_limit: int = Field(
        2, ge=1, le=100, description="Failed analyses after which the canary is rolled back (weight 0, removed)."
    )


class Rollout(ApiModel):
    canary: CanaryStrategy | None = Field(
        None,
        description="Progressive delivery: a changed modelVersion, modelRepository, image or model config of a "
        "variant is served by a canary that takes traffic step by step, promoted or rolled back on its checks. "
        "Without it a change replaces the variant in place (a rolling update).",
    )
    max_surge: str = Field(
        "25%", pattern=PERCENT_OR_COUNT_PATTERN, max_length=8, description="Extra replicas during an update."
    )
    max_unavailable: str = Field(
        "10%", pattern=PERCENT_OR_COUNT_PATTERN, max_length=8, description="Replicas that may be down in an update."
    )
    revision_history_limit: int = Field(5, ge=0, le=100, description="Old ReplicaSets kept for rollback.")
    progress_deadline_seconds: int = Field(
        1200, ge=60, le=86400, description="Time before an update without progress is reported as failed."
    )


# --- routing -----------------------------------------------------------------------------


class RateLimit(ApiModel):
    rps: int | None = Field(None, ge=1, le=1_000_000, description="Requests per second per client IP.")
    burst_multiplier: int = Field(5, ge=1, le=100, description="Burst allowed above rps, as a multiple of it.")
    connections: int | None = Field(None, ge=1, le=100_000, description="Concurrent connections per client IP.")


class Timeouts(ApiModel):
    connect_seconds: int = Field(5, ge=1, le=3600, description="Upstream connect timeout.")
    read_seconds: int = Field(60, ge=1, le=3600, description="Upstream read timeout (long for LLM responses).")
    send_seconds: int = Field(60, ge=1, le=3600, description="Upstream send timeout.")


class GatewayRef(ApiModel):
    name: str = Field(max_length=253, description="Gateway the HTTPRoute attaches to.")
    namespace: str | None = Field(None, max_length=63, description="Gateway namespace; the service's when omitted.")
    section_name: str | None = Field(None, max_length=253, description="Listener of the Gateway.")


class Routing(ApiModel):
    provider: Literal["nginx", "gateway"] = Field(
        "nginx", description="nginx: ingress-nginx with canary annotations; gateway: Gateway API HTTPRoute."
    )
    host: str = Field(
        pattern=r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        max_length=253,
        description="Host name clients use.",
    )
    path: str = Field("/", pattern=r"^/[A-Za-z0-9._~/\-]*$", max_length=256, description="Path prefix.")
    tls_secret_name: str | None = Field(None, max_length=253, description="TLS certificate Secret for the host.")
    ingress_class_name: str = Field("nginx", max_length=253, description="IngressClass (provider nginx).")
    gateway: GatewayRef | None = Field(None, description="Gateway to attach to (provider gateway).")
    rate_limit: RateLimit | None = Field(None, description="Token-bucket rate limits at the edge (provider nginx).")
    load_balancing: Literal["ewma", "round_robin"] = Field(
        "ewma", description="ewma sends requests to the replica with the lowest recent latency."
    )
    session_affinity: Literal["none", "cookie"] = Field("none", description="Sticky sessions by cookie.")
    timeouts: Timeouts = Field(default_factory=Timeouts, description="Upstream timeouts.")


# --- autoscaling -------------------------------------------------------------------------


class ScalingRules(ApiModel):
    stabilization_window_seconds: int = Field(
        ge=0, le=3600, description="Use the highest (up) or lowest (down) recommendation over this window."
    )
    max_pods_per_step: int = Field(ge=1, le=1000, description="Most replicas added or removed per period.")
    max_percent_per_step: int = Field(ge=1, le=1000, description="Most replicas added or removed per period, in %.")
    period_seconds: int = Field(15, ge=1, le=1800, description="Length of a step period.")


def _scale_up() -> ScalingRules:
    return ScalingRules(stabilization_window_seconds=0, max_pods_per_step=4, max_percent_per_step=100)


def _scale_down() -> ScalingRules:
    return ScalingRules(
        stabilization_window_seconds=300, max_pods_per_step=1, max_percent_per_step=10, period_seconds=60
    )


class Behavior(ApiModel):
    scale_up: ScalingRules = Field(default_factory=_scale_up, description="Fast up (defaults as HPA).")
    scale_down: ScalingRules = Field(default_factory=_scale_down, description="Slow down: 5 min window, 1 pod/min.")


class Targets(ApiModel):
    """Metric targets; 0 turns a metric off (a CRD field cannot be set to null)."""

    queue_depth_per_replica: int = Field(
        8, ge=0, le=100_000, description="Pending requests per replica to aim for (Triton's queue); 0: off."
    )
    gpu_utilization_percent: int = Field(
        80,
        ge=0,
        le=100,
        description="GPU utilisation to aim for (DCGM; GR engine activity under MIG), modes operator and hpa; 0: off.",
    )
    cpu_utilization_percent: int = Field(
        70, ge=0, le=100, description="CPU utilisation target, used in hpa mode only; 0: off."
    )
    capacity_utilization_percent: int = Field(
        80,
        ge=0,
        le=100,
        description="Share of each replica's capacity the demand may fill: replicas = ceil(demand / "
        "(capacity x this)), the main rule in operator mode; 0: off (queue and GPU rules only).",
    )


class Capacity(ApiModel):
    """Requests per second one replica answers at saturation: learned from Triton's counters."""

    rps_per_replica: float | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description="Starting value for a new model (default: from model.serving when set); then learned from "
        "the served rate of replicas that were saturated (queue never drained, and refusing or running full "
        "batches) or served more than it, kept within half to twice this.",
    )
    startup_seconds: int | None = Field(
        None,
        ge=0,
        le=3600,
        description="How long a new replica takes to serve (scheduling, image pull, model load): what demand "
        "grows by at the observed rate meanwhile, and over the two intervalSeconds the reading it acts on is "
        "old, is added as headroom; a burst over within it is held for. Default: learned, the median of the "
        "variant's latest pods from creation to Ready (status.learned), 60 until one has started; a value "
        "given here is used as it is.",
    )
    panic_threshold: float = Field(
        2.0,
        ge=1.1,
        le=10,
        description="Burst mode (Knative's panic): when demand reaches this multiple of the ready replicas' "
        "capacity, scale out at once past the step limits and do not scale in for panicWindowSeconds.",
    )
    panic_window_seconds: int = Field(60, ge=0, le=3600, description="How long burst mode lasts after its trigger.")
    burst_recurrence_seconds: int = Field(
        600,
        ge=0,
        le=86400,
        description="Bursts (demand jumping to panicThreshold x its least of the last intervals, a burst shorter "
        "than the rate window read from the edge's 503s) that start within this long of the previous one recur: "
        "between them the fleet keeps the replicas the largest of them needs at full capacity, until this long "
        "after the last of them began. A burst over within startupSeconds holds so alone (replicas ordered for it "
        "come too late; only kept ones serve the next). 0: off.",
    )


class Forecast(ApiModel):
    enabled: bool = Field(False, description="Scale out ahead of a rising request rate; never scales in on it.")
    horizon_seconds: int = Field(
        120, ge=15, le=3600, description="How far ahead to project; at least the model's load time."
    )
    window_seconds: int = Field(600, ge=60, le=86400, description="History the trend is fitted over.")


class Seasonal(ApiModel):
    """A floor from the demand one period ago: a daily (or weekly) peak is met before it arrives."""

    rules: ClassVar = (
        Rule(
            "self.leadSeconds < self.periodSeconds",
            "must be shorter than periodSeconds",
            lambda s: s.lead_seconds < s.period_seconds,
            ".leadSeconds",
        ),
    )

    enabled: bool = Field(
        False,
        description="Hold at least the replicas that the most demand of the same time one period ago, "
        "over the next leadSeconds, needs at the capacity target (Prometheus must keep that much history).",
    )
    period_seconds: int = Field(
        86400, ge=600, le=2419200, description="How far back the same time is: 86400 a day, 604800 a week."
    )
    lead_seconds: int = Field(
        900,
        ge=60,
        le=86400,
        description="How far ahead of the same time the floor looks: a peak of a period ago is met this long "
        "before it comes back; at least the start-up.",
    )
    percent: int = Field(
        100, ge=1, le=200, description="Share of that past demand the floor holds: below 100 trusts the past less."
    )


# Values a spec.autoscaling.demand.query template may use; each becomes a quoted PromQL string
# (the variant's), except $window: the loop's rate window as a PromQL duration, e.g. 60s.
PROMQL_PLACEHOLDERS = ("namespace", "inferenceservice", "variant", "service", "window")
# The edge a demand source reads, and the routing.provider that renders it.
EDGE_PROVIDERS = {"nginx": "nginx", "envoy-gateway": "gateway", "istio": "gateway"}


class DemandMetric(ApiModel):
    """Where the scaling loop reads each variant's offered load, refused requests included."""

    rules: ClassVar = (
        Rule(
            "self.source == 'promql' ? has(self.query) : !has(self.query) && !has(self.rejectedQuery)",
            "required with source promql, and query and rejectedQuery go with source promql only",
            lambda d: d.query is not None if d.source == "promql" else d.query is None and d.rejected_query is None,
            ".query",
        ),
    )

    source: Literal["auto", "nginx", "envoy-gateway", "istio", "promql", "triton"] = Field(
        "auto",
        description="nginx: ingress-nginx's request counter of the variant's Ingress; envoy-gateway or istio: "
        "the Gateway's (routing.provider gateway); promql: query below; triton: Triton's served rate, which "
        "cannot see demand beyond capacity; auto: nginx with routing.provider nginx, triton otherwise.",
    )
    query: str | None = Field(
        None,
        max_length=4096,
        description="source promql: requests per second offered to one variant, refused ones included. "
        "$namespace, $inferenceservice, $variant and $service (the variant's Service) become quoted strings, "
        "e.g. {svc=$service}; $window the rate window; $$ a literal $.",
    )
    rejected_query: str | None = Field(
        None,
        max_length=4096,
        description="source promql: of those, the ones refused with HTTP 503, with the same placeholders; "
        "without it the loop reads none refused and the busy-rate alert is not rendered.",
    )

    @field_validator("query", "rejected_query")
    @classmethod
    def _known_placeholders(cls, template: str | None) -> str | None:
        if template is None:
            return None
        parsed = string.Template(template)
        unknown = sorted(set(parsed.get_identifiers()) - set(PROMQL_PLACEHOLDERS))
        if not parsed.is_valid() or unknown:
            allowed = ", ".join(f"${name}" for name in PROMQL_PLACEHOLDERS)
            found = (
                f"unknown placeholder {', '.join(f'${name}' for name in unknown)}"
                if unknown
                else "a $ that starts no placeholder"
            )
            raise ValueError(f"{found}: use {allowed}, or $$ for a literal $")
        return template


class Keda(ApiModel):
    """KEDA's Prometheus scaler, for autoscaling mode keda."""

    server_address: str = Field(
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        max_length=512,
        description="Prometheus as KEDA reaches it, e.g. http://prometheus-operated.monitoring.svc:9090.",
    )
    failure_threshold: int = Field(
        3,
        ge=1,
        le=100,
        description="Failed reads of Prometheus in a row after which KEDA falls back to what "
        "autoscaling.onMetricsMissing says: hold keeps the current replicas, minReplicas goes there.",
    )


class Autoscaling(ApiModel):
    rules: ClassVar = (
        Rule(
            "self.minReplicas <= self.maxReplicas",
            "must be <= maxReplicas",
            lambda a: a.min_replicas <= a.max_replicas,
            ".minReplicas",
        ),
        Rule(
            "self.mode != 'keda' || has(self.keda)",
            "required with mode keda: the Prometheus address KEDA reads",
            lambda a: a.mode != "keda" or a.keda is not None,
            ".keda",
        ),
        Rule(
            "self.mode != 'keda' || self.targets.queueDepthPerReplica > 0"
            " || self.targets.capacityUtilizationPercent > 0",
            "mode keda scales on queueDepthPerReplica and capacityUtilizationPercent: set at least one above 0",
            lambda a: (
                a.mode != "keda" or a.targets.queue_depth_per_replica > 0 or a.targets.capacity_utilization_percent > 0
            ),
            ".targets",
        ),
        Rule(
            "self.mode != 'keda' || self.targets.capacityUtilizationPercent == 0 || has(self.capacity.rpsPerReplica)",
            "required with mode keda and targets.capacityUtilizationPercent above 0: KEDA cannot learn a "
            "replica's capacity (or set capacityUtilizationPercent to 0 to scale on the queue only)",
            lambda a: (
                a.mode != "keda"
                or a.targets.capacity_utilization_percent == 0
                or a.capacity.rps_per_replica is not None
            ),
            ".capacity.rpsPerReplica",
        ),
    )

    mode: Literal["operator", "hpa", "keda", "none"] = Field(
        "operator",
        description="operator: Unbusy scales from Prometheus; hpa: render HorizontalPodAutoscalers; keda: render "
        "KEDA ScaledObjects with the operator's queries; none: fixed.",
    )
    min_replicas: int = Field(1, ge=0, le=1000, description="Fewest replicas per variant.")
    max_replicas: int = Field(10, ge=1, le=1000, description="Most replicas per variant.")
    targets: Targets = Field(default_factory=Targets, description="Metric targets; the largest demand wins.")
    tolerance: float = Field(0.1, ge=0, le=1, description="No change while metric/target is within 1 +- this.")
    behavior: Behavior = Field(default_factory=Behavior, description="Stabilisation windows and step limits.")
    on_metrics_missing: Literal["hold", "minReplicas"] = Field(
        "hold", description="When metrics are missing: keep the last good count, or go to minReplicas."
    )
    forecast: Forecast = Field(default_factory=Forecast, description="Predictive scale-out.")
    seasonal: Seasonal = Field(
        default_factory=Seasonal, description="A floor from the demand of the same time yesterday or last week."
    )
    capacity: Capacity = Field(default_factory=Capacity, description="Capacity per replica and burst mode.")
    demand: DemandMetric = Field(
        default_factory=DemandMetric, description="Where each variant's offered load is read, refused requests too."
    )
    interval_seconds: int = Field(
        15, ge=5, le=600, description="How often the operator evaluates (operator mode) or KEDA polls (keda mode)."
    )
    keda: Keda | None = Field(None, description="KEDA's Prometheus scaler (mode keda).")


# --- alerts ------------------------------------------------------------------------------


class AlertRule(ApiModel):
    enabled: bool = Field(True, description="Render this alert.")
    threshold: float = Field(ge=0, description="Value beyond which the alert fires.")
    for_: str = Field(alias="for", pattern=DURATION_PATTERN, max_length=8, description="How long it must hold.")
    severity: Literal["info", "warning", "critical"] = Field("warning", description="severity label.")


def _alert(name: str, threshold: float, for_: str, severity: str = "warning") -> type[AlertRule]:
    """An AlertRule whose fields default to this alert's own thresholds (the seeds' values)."""
    return create_model(
        name,
        __base__=AlertRule,
        threshold=(float, Field(threshold, ge=0, description="Value beyond which the alert fires.")),
        for_=(
            str,
            Field(for_, alias="for", pattern=DURATION_PATTERN, max_length=8, description="How long it must hold."),
        ),
        severity=(Literal["info", "warning", "critical"], Field(severity, description="severity label.")),
    )


class SloAlert(ApiModel):
    """An alert whose threshold is an SLO of spec.model.llm."""

    enabled: bool = Field(True, description="Render this alert (LLMs only).")
    for_: str = Field(alias="for", pattern=DURATION_PATTERN, max_length=8, description="How long it must hold.")
    severity: Literal["info", "warning", "critical"] = Field(description="severity label.")

    def rule(self, threshold: float) -> AlertRule:
        return AlertRule(enabled=self.enabled, threshold=threshold, for_=self.for_, severity=self.severity)


def _slo_alert(name: str, for_: str, severity: str) -> type[SloAlert]:
    """A SloAlert whose fields default to this alert's own."""
    return create_model(
        name,
        __base__=SloAlert,
        for_=(
            str,
            Field(for_, alias="for", pattern=DURATION_PATTERN, max_length=8, description="How long it must hold."),
        ),
        severity=(Literal["info", "warning", "critical"], Field(severity, description="severity label.")),
    )


TtftAlert = _slo_alert("TtftAlert", "5m", "critical")
TpotAlert = _slo_alert("TpotAlert", "5m", "warning")
KvCacheAlert = _alert("KvCacheAlert", 90, "5m")
TokenCapacityAlert = _alert("TokenCapacityAlert", 90, "10m")
P99LatencyAlert = _alert("P99LatencyAlert", 1.0, "5m", "critical")
GpuMemoryAlert = _alert("GpuMemoryAlert", 90, "3m")
ErrorRateAlert = _alert("ErrorRateAlert", 5, "5m", "critical")
QueueDepthAlert = _alert("QueueDepthAlert", 50, "2m")
GpuUtilizationAlert = _alert("GpuUtilizationAlert", 90, "5m")
BusyRateAlert = _alert("BusyRateAlert", 1, "5m")


class Alerts(ApiModel):
    enabled: bool = Field(True, description="Render a PrometheusRule with the alerts below.")
    p99_latency_seconds: P99LatencyAlert = Field(
        default_factory=P99LatencyAlert, description="P99 request latency above threshold seconds."
    )
    gpu_memory_percent: GpuMemoryAlert = Field(
        default_factory=GpuMemoryAlert, description="GPU framebuffer used above threshold percent."
    )
    error_rate_percent: ErrorRateAlert = Field(
        default_factory=ErrorRateAlert, description="Failed requests above threshold percent."
    )
    queue_depth: QueueDepthAlert = Field(
        default_factory=QueueDepthAlert, description="Pending requests on one replica above threshold."
    )
    gpu_utilization_percent: GpuUtilizationAlert = Field(
        default_factory=GpuUtilizationAlert, description="GPU utilisation above threshold percent."
    )
    busy_rate_percent: BusyRateAlert = Field(
        default_factory=BusyRateAlert,
        description="Requests refused with HTTP 503 at the edge (autoscaling.demand) above threshold percent "
        "of all; not rendered where the edge is not read (source triton).",
    )
    ttft_p99: TtftAlert = Field(
        default_factory=TtftAlert,
        description="LLMs: time to first token, p99 of a variant, above spec.model.llm.slo.ttftP99Ms. "
        "p99LatencySeconds and queueDepth are not rendered for an LLM (a whole generation takes seconds; "
        "its backend queues nothing in Triton).",
    )
    tpot_p99: TpotAlert = Field(
        default_factory=TpotAlert,
        description="LLMs: time per output token, p99 of a variant, above spec.model.llm.slo.tpotP99Ms, where "
        "that is set and the engine reports it (vllm, python).",
    )
    kv_cache_percent: KvCacheAlert = Field(
        default_factory=KvCacheAlert,
        description="LLMs: KV cache of a replica used above threshold percent: new requests wait or are "
        "preempted. Reported by tensorrtllm and python engines, inferred for vllm where llm.kvCacheTokens is set.",
    )
    token_capacity_percent: TokenCapacityAlert = Field(
        default_factory=TokenCapacityAlert,
        description="LLMs: tokens per second a replica serves above threshold percent of its capacity "
        "(prompt/promptTokensPerSecond + output/outputTokensPerSecond of spec.model.llm.capacity).",
    )
    runbook_base_url: str = Field(
        "https://unbusy.dev/runbooks", max_length=512, description="runbook_url is this plus /<AlertName>."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on every alert (e.g. team).")


# --- monitoring --------------------------------------------------------------------------


class Monitoring(ApiModel):
    kind: Literal["ServiceMonitor", "PodMonitor", "none"] = Field(
        "ServiceMonitor", description="How Prometheus Operator discovers Triton's metrics port."
    )
    interval: str = Field("15s", pattern=DURATION_PATTERN, max_length=8, description="Scrape interval.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels on monitors and rules, for Prometheus' selectors (e.g. release)."
    )
    grafana_dashboard: bool = Field(False, description="Render a Grafana dashboard ConfigMap (sidecar label).")


class Disruption(ApiModel):
    enabled: bool = Field(True, description="Render a PodDisruptionBudget per variant.")
    max_unavailable: str = Field(
        "1", pattern=PERCENT_OR_COUNT_PATTERN, max_length=8, description="Replicas a voluntary disruption may take."
    )


# --- network policy ----------------------------------------------------------------------

# Label keys and values as Kubernetes allows them (a prefix/name key; a value of at most 63).
LABEL_KEY_PATTERN = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
LABEL_VALUE_PATTERN = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"
LabelValue = Annotated[str, Field(pattern=LABEL_VALUE_PATTERN, max_length=63)]


class NetworkPeer(ApiModel):
    """Pods allowed to reach Triton: those of one namespace, optionally only those with these labels."""

    namespace: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63, description="Namespace of the pods.")
    pod_labels: dict[str, LabelValue] = Field(
        default_factory=dict, description="Labels the pods must carry; every pod of the namespace when empty."
    )

    # The CRD checks the values; a structural schema cannot constrain map keys, so they are checked here.
    @field_validator("pod_labels")
    @classmethod
    def _label_keys(cls, labels: dict[str, str]) -> dict[str, str]:
        bad = sorted(key for key in labels if len(key) > 317 or not re.match(LABEL_KEY_PATTERN, key))
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))}: not label keys ([prefix/]name of [A-Za-z0-9_.-])")
        return labels


class NetworkPolicy(ApiModel):
    enabled: bool = Field(
        True, description="Render a NetworkPolicy that admits only the peers below to Triton's ports."
    )
    serving: list[NetworkPeer] = Field(
        default_factory=lambda: [NetworkPeer(namespace="ingress-nginx"), NetworkPeer(namespace="unbusy-system")],
        max_length=16,
        description="Who may send requests to Triton's HTTP and gRPC ports: the routing layer (ingress-nginx, "
        "or your Gateway's proxies) and the operator, which asks Triton whether the model is loaded.",
    )
    metrics: list[NetworkPeer] = Field(
        default_factory=lambda: [NetworkPeer(namespace="monitoring")],
        max_length=16,
        description="Who may scrape Triton's metrics port: Prometheus.",
    )


# --- the spec ----------------------------------------------------------------------------


class InferenceServiceSpec(ApiModel):
    """What to serve (model, Triton, GPUs), how traffic splits between variants and how replicas follow load."""

    rules: ClassVar = (
        Rule(
            "!has(self.variants) || size(self.variants) == 0 || self.variants.map(v, v.weight).sum() == 100",
            "the weights must add up to 100",
            lambda spec: not spec.variants or sum(v.weight for v in spec.variants) == 100,
            ".variants",
        ),
        Rule(
            "!has(self.variants) || self.variants.all(v, self.variants.exists_one(w, w.name == v.name))",
            "variant names must be unique",
            lambda spec: len({v.name for v in spec.variants}) == len(spec.variants),
            ".variants",
        ),
        Rule(
            "!has(self.routing) || self.routing.provider != 'nginx' || !has(self.variants)"
            " || self.variants.filter(v, v.weight > 0).size() <= 2",
            "with routing.provider nginx at most two variants may carry weight "
            "(ingress-nginx allows one canary per host and path); use routing.provider gateway for more",
            lambda spec: (
                spec.routing is None
                or spec.routing.provider != "nginx"
                or sum(1 for v in spec.variants if v.weight > 0) <= 2
            ),
            ".variants",
        ),
        Rule(
            "!has(self.routing) || self.routing.provider != 'gateway' || has(self.routing.gateway)",
            "gateway is required with provider gateway",
            lambda spec: spec.routing is None or spec.routing.provider != "gateway" or spec.routing.gateway is not None,
            ".routing.gateway",
        ),
        Rule(
            "!has(self.autoscaling) || !has(self.autoscaling.demand) || !has(self.autoscaling.demand.source)"
            " || !(self.autoscaling.demand.source in ['nginx', 'envoy-gateway', 'istio'])"
            " || (has(self.routing) && self.routing.provider"
            " == (self.autoscaling.demand.source == 'nginx' ? 'nginx' : 'gateway'))",
            "nginx reads the Ingresses of routing.provider nginx, envoy-gateway and istio the HTTPRoute of "
            "routing.provider gateway; promql and triton need no routing",
            lambda spec: (
                spec.autoscaling.demand.source not in EDGE_PROVIDERS
                or (
                    spec.routing is not None and spec.routing.provider == EDGE_PROVIDERS[spec.autoscaling.demand.source]
                )
            ),
            ".autoscaling.demand.source",
        ),
        Rule(
            "!has(self.rollout) || !has(self.rollout.canary) || !has(self.routing) || self.routing.provider != 'nginx'"
            " || !has(self.variants) || self.variants.filter(v, v.weight > 0).size() <= 1",
            "with rollout.canary and routing.provider nginx only one variant may carry weight (its canary takes "
            "ingress-nginx's one canary Ingress); use routing.provider gateway for more",
            lambda spec: (
                spec.rollout.canary is None
                or spec.routing is None
                or spec.routing.provider != "nginx"
                or sum(1 for v in spec.variants if v.weight > 0) <= 1
            ),
            ".variants",
        ),
        Rule(
            "!has(self.fallback) || (has(self.variants) && self.variants.exists(v, v.name == self.fallback.variant))",
            "must name one of spec.variants",
            lambda spec: spec.fallback is None or any(v.name == spec.fallback.variant for v in spec.variants),
            ".fallback.variant",
        ),
        Rule(
            "!has(self.fallback) || (has(self.routing)"
            " && (!has(self.autoscaling) || !has(self.autoscaling.mode) || self.autoscaling.mode == 'operator'))",
            "needs routing (its weights move) and autoscaling.mode operator (its loop moves them)",
            lambda spec: spec.fallback is None or (spec.routing is not None and spec.autoscaling.mode == "operator"),
            ".fallback",
        ),
        Rule(
            "!has(self.fallback) || !has(self.routing) || self.routing.provider != 'nginx' || !has(self.variants)"
            " || self.variants.filter(v, v.weight > 0 && v.name != self.fallback.variant).size() <= 1",
            "with routing.provider nginx only one variant besides the fallback may carry weight (the fallback "
            "takes ingress-nginx's one canary Ingress); use routing.provider gateway for more",
            lambda spec: (
                spec.fallback is None
                or spec.routing is None
                or spec.routing.provider != "nginx"
                or sum(1 for v in spec.variants if v.weight > 0 and v.name != spec.fallback.variant) <= 1
            ),
            ".variants",
        ),
        Rule(
            "!has(self.rollout) || !has(self.rollout.canary) || !has(self.variants)"
            " || self.variants.all(v, !v.name.endsWith('-canary'))",
            "with rollout.canary no variant name may end in -canary: that is the name of a variant's canary",
            lambda spec: spec.rollout.canary is None or not any(v.name.endswith(CANARY_SUFFIX) for v in spec.variants),
            ".variants",
        ),
    )

    replicas: int | None = Field(
        None,
        ge=0,
        le=10000,
        description="Total replicas across variants (scale subresource). Split by weight in autoscaling mode none.",
    )
    model: Model = Field(description="The Triton model to serve.")
    triton: Triton = Field(default_factory=Triton, description="The Triton server container.")
    gpu: Gpu = Field(description="GPUs per replica: whole GPUs or a MIG slice.")
    scheduling: Scheduling = Field(default_factory=Scheduling, description="Where replicas may run.")
    variants: list[Variant] = Field(
        default_factory=list,
        max_length=MAX_VARIANTS,
        description=f"Named variants splitting traffic by weight; one variant '{DEFAULT_VARIANT}' when empty.",
    )
    rollout: Rollout = Field(default_factory=Rollout, description="Rolling-update strategy.")
    fallback: Fallback | None = Field(
        None,
        description="Move traffic the ready replicas cannot serve to a fallback variant instead of 503s "
        "(operator mode, with routing).",
    )
    routing: Routing | None = Field(None, description="External traffic; no Ingress or HTTPRoute when omitted.")
    autoscaling: Autoscaling = Field(default_factory=Autoscaling, description="How replicas follow load.")
    alerts: Alerts = Field(default_factory=Alerts, description="Prometheus alert rules.")
    monitoring: Monitoring = Field(default_factory=Monitoring, description="Prometheus scrape configuration.")
    disruption: Disruption = Field(default_factory=Disruption, description="PodDisruptionBudget.")
    network_policy: NetworkPolicy = Field(
        default_factory=NetworkPolicy, description="Who may reach Triton's ports over the network."
    )

    def effective_variants(self) -> list[Variant]:
        """The variants to render: the spec's, or one that takes all traffic."""
        return list(self.variants) or [Variant(name=DEFAULT_VARIANT, weight=100)]

    def ignored_fields(self) -> list[str]:
        """Fields the spec sets that do nothing for it, each as 'field: why' (the operator warns of them)."""
        targets = self.autoscaling.targets
        if self.model.llm is None or targets.queue_depth_per_replica == 0:
            return []
        return [
            "spec.autoscaling.targets.queueDepthPerReplica: not read with spec.model.llm: an LLM backend takes every "
            "request into its own scheduler at once, so Triton's pending count stays near 0 however loaded it is; "
            "the llm block (capacity in tokens, slo.ttftP99Ms) scales it. Set it to 0"
        ]

    def demand_source(self) -> str:
        """autoscaling.demand.source with auto resolved: the nginx Ingresses Unbusy renders, or Triton."""
        source = self.autoscaling.demand.source
        if source != "auto":
            return source
        return "nginx" if self.routing is not None and self.routing.provider == "nginx" else "triton"
