"""spec.model.llm: a large language model, scaled on tokens and time to first token."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from unbusy.api.base import ApiModel

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


class LlmStepTime(ApiModel):
    """t(step) = baseMs + perPromptTokenMs x tokens prefilled + perSequenceMs x sequences decoding +
    perKvTokenMs x tokens attended; a step that also prefills prices its decoding sequences and their
    tokens at mixedSequenceMs and mixedKvTokenMs where given."""

    base_ms: float = Field(ge=0, le=10_000, description="A step's fixed time (ms).")
    per_prompt_token_ms: float = Field(ge=0, le=1_000, description="Each prompt token prefilled in the step (ms).")
    per_sequence_ms: float = Field(ge=0, le=1_000, description="Each sequence decoding in the step (ms).")
    per_kv_token_ms: float = Field(ge=0, le=1_000, description="Each cached token attended in the step (ms).")
    mixed_sequence_ms: float | None = Field(
        None,
        ge=0,
        le=1_000,
        description="Each sequence decoding in a step that also prefills (ms); unset: perSequenceMs.",
    )
    mixed_kv_token_ms: float | None = Field(
        None,
        ge=0,
        le=1_000,
        description="Each cached token attended in a step that also prefills (ms); unset: perKvTokenMs.",
    )


class LlmProfile(ApiModel):
    """The engine's step-time model as `unbusy calibrate` fits it from measurements (its output's `llm:`
    block pastes here as is)."""

    step: LlmStepTime = Field(description="Time of one continuous-batching step.")
    kv_cache_tokens: int = Field(ge=256, le=100_000_000, description="KV cache per replica, in tokens.")
    max_batched_tokens: int = Field(ge=1, le=1_000_000, description="Tokens a step takes at most (prefill budget).")
    max_sequences: int = Field(256, ge=1, le=100_000, description="Sequences a step runs at most.")
    block_size: int = Field(16, ge=1, le=4096, description="KV cache allocation unit, in tokens.")
    max_waiting: int = Field(0, ge=0, le=1_000_000, description="Requests waiting past which new ones are refused.")
    kv_reserve: float = Field(0.01, ge=0, lt=1, description="Share of the KV cache kept for running sequences.")
    scheduled_ahead: int = Field(0, ge=0, le=8, description="Steps already scheduled when a request arrives.")
    response_ms: float = Field(0.0, ge=0, le=60_000, description="Engine-to-client time of a token (ms).")
    response_per_running_ms: float = Field(
        0.0,
        ge=0,
        le=60_000,
        description="What each running request adds to a first token's engine-to-client time (ms).",
    )
    gpu_busy_reading: float = Field(1.0, ge=0, le=1, description="GPU utilisation read while the engine is busy.")
    ready_seconds: float = Field(0.0, ge=0, le=86_400, description="Start to ready, as measured (informational).")
    measured: str = Field("", max_length=2000, description="Provenance: model, device, engine, data.")


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
    profile: LlmProfile | None = Field(
        None,
        description="The engine's measured step-time model (`unbusy calibrate` of your engine's sweep): with it "
        "each mix seen is priced by the engine's closed forms -- the tokens a saturated replica serves of it, and "
        "the load at which slo.ttftP99Ms holds -- instead of one prompt/output line for every mix. capacity stays "
        "the unit the status counts in.",
    )
