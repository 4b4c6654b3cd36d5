"""spec.model: the Triton model to serve, the config.pbtxt the operator writes for it, and how
one replica serves it (the measured profile `unbusy calibrate` prints)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from unbusy.api.base import ApiModel, Quantity, Rule
from unbusy.api.llm import LLM_BACKENDS, Llm


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
