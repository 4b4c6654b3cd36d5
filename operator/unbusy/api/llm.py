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
