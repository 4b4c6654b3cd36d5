"""Scaling an LLM: Unbusy in tokens beside an HPA on GPU utilisation, KEDA on the engine's waiting
requests, the reactive floor and the oracle, on a measured LLM profile and a token mix.

    .venv/bin/python bench/scaling.py --llm-profile h100-llama-1b                # diurnal and the mix shift
    .venv/bin/python bench/scaling.py --llm-profile h100-llama-1b --trace diurnal --mix conv --json
    .venv/bin/python bench/scaling.py --llm-profile h100-llama-1b --smoke --json  # short, for CI

The fleets are sim/llm.py's: replicas of the profile's continuous-batching engine (serving/llm.py),
request sizes drawn from the Azure LLM trace's mixes, every fleet seeing the very same requests
(checked below). The policies:
- unbusy: policy.decide on the operator's observation in weighted tokens (sim/llm_tokens.py:
  the edge's requests times the tokens a request costs, TTFT/TPOT/KV guards), with the spec a
  platform engineer writes: capacity the profile's tokens per second on the trace's first mix (a
  benchmark of the traffic they had), capacityUtilizationPercent 80, the TTFT SLO;
- unbusy+profile: the same spec with llm.profile, the engine's step-time model (what `unbusy
  calibrate` fits): each mix seen priced by its closed forms (scaling/tokens.py priced), the
  capacity of that mix and the load at which the TTFT SLO holds;
- hpa-gpu: an HPA on GPU utilisation at 70% with the HPA's defaults (the GPU reading as NVML gives it);
- keda-waiting: KEDA's Prometheus scaler on vllm:num_requests_waiting as an AverageValue of 5 a
  replica, polled every 30 s, with the HPA KEDA makes (KServe's and vLLM's production stack's recipe);
- reactive-floor: knows the present load in replicas (each second's requests over what a replica
  serves of that second's mix) exactly and at once, at full capacity;
- oracle: knows the trace and the mix, orders what the load a start-up ahead needs at 80%.
Traces: the built-in shapes in requests per second, at half the starting fleet's capacity on the
first mix; `mixshift` holds the requests per second flat for an hour while the mix moves from code
to conv (each conversation request costs ~1.4x a code request in weighted tokens: prompts shorter,
outputs 8x longer), which no requests-per-second rule sees.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from tables import markdown

from unbusy.api.autoscaling import Autoscaling
from unbusy.scaling.policy import decide
from unbusy.scaling.tokens import Pricing
from unbusy.serving.llm import LlmProfile, saturated_rps, ttft_p99_s
from unbusy.sim.baselines import HPA_SYNC_S, KedaQueue, Oracle, hpa_autoscaling
from unbusy.sim.llm import (
    LlmSimConfig,
    LlmSimResult,
    MixShift,
    default_observe,
    observe_engine_waiting,
    replicas_needed,
    simulate_llm,
)
from unbusy.sim.llm_tokens import first_mix_costs, observer
from unbusy.sim.traces import Trace, builtin

BASE_LOAD = 0.5  # built-in shapes start at this share of the starting fleet's capacity
INITIAL_REPLICAS = 2
BOUNDS = (1, 64)
HPA_GPU_TARGET = 70
KEDA_WAITING_THRESHOLD = 5
ORACLE_UTILISATION = 0.8
# The default TTFT SLO: what a replica at the spec's 80% target gives at p99 on the costlier end of the
# mix, with half again to spare: a fleet that keeps its target meets it.
SLO_MARGIN = 1.5
MIX_SHIFT = "code->conv"
TRACES = {"diurnal": None, "mixshift": MIX_SHIFT}  # trace -> its mix (None: the command line's)
SPEC = {
    "mode": "operator",
    "targets": {"queueDepthPerReplica": 0, "gpuUtilizationPercent": 0, "capacityUtilizationPercent": 80},
}


def default_slo_ms(profile: LlmProfile, mix: MixShift) -> float:
    ends = [mix.token_mix(0, 1), mix.token_mix(1, 1)]
    return 1000 * SLO_MARGIN * max(ttft_p99_s(profile, end, ORACLE_UTILISATION) for end in ends)


def trace_of(name: str, base_rps: float) -> Trace:
    if name == "mixshift":
        return Trace("mixshift", (1.5 * base_rps,) * 3600)  # 75% of the starting fleet on the first mix
    if name == "smoke":  # 3x for 5 minutes between 2 quiet minutes, and 3 to settle
        return Trace("smoke-step", (base_rps,) * 120 + (3 * base_rps,) * 300 + (base_rps,) * 180)
    return builtin(name, base_rps)


def contenders(config: LlmSimConfig, trace: Trace, ttft_slo_ms: float) -> dict[str, tuple[LlmSimConfig, Any, Any]]:
    """Each policy with the config it runs under and how it observes the fleet."""
    costs = first_mix_costs(config.profile, config.mix, trace.seconds)
    pricing = Pricing(config.profile, SPEC["targets"]["capacityUtilizationPercent"] / 100)
    spec = Autoscaling.model_validate(
        {
            **SPEC,
            "minReplicas": config.bounds[0],
            "maxReplicas": config.bounds[1],
            "capacity": {"startupSeconds": int(config.startup_s)},
        }
    )
    keda = KedaQueue(KEDA_WAITING_THRESHOLD)
    needed = replicas_needed(config, trace)
    oracle = Oracle(needed, 1.0, 1.0, ORACLE_UTILISATION, config.startup_s, HPA_SYNC_S)
    planned = replace(config, policy=spec.model_copy(update={"interval_seconds": HPA_SYNC_S}))
    return {
        "unbusy": (replace(config, policy=spec), decide, observer(costs, ttft_slo_ms)),
        "unbusy+profile": (replace(config, policy=spec), decide, observer(costs, ttft_slo_ms, pricing=pricing)),
        "hpa-gpu": (replace(config, policy=hpa_autoscaling(utilisation=HPA_GPU_TARGET)), decide, default_observe),
        "keda-waiting": (replace(config, policy=keda.autoscaling), keda, observe_engine_waiting),
        "reactive-floor": (planned, replace(oracle, utilisation=1.0, lookahead_s=0), default_observe),
        "oracle": (planned, oracle, default_observe),
    }


def run_trace(config: LlmSimConfig, trace: Trace, ttft_slo_ms: float) -> dict[str, LlmSimResult]:
    results = {
        name: simulate_llm(cfg, trace, policy, observe)
        for name, (cfg, policy, observe) in contenders(config, trace, ttft_slo_ms).items()
    }
    loads = {tuple(m.load_rps for m in r.minutes) for r in results.values()}
    assert len(loads) == 1, "the policies did not see the same arrivals"
    return results


def rows(trace: Trace, mix: MixShift, results: dict[str, LlmSimResult]) -> list[dict[str, Any]]:
    oracle = results["oracle"].gpu_hours
    return [
        {
            "policy": name,
            "trace": trace.name,
            "mix": str(mix),
            **r.figures(),
            "gpu_hours_vs_oracle": round(r.gpu_hours / oracle, 3) if oracle else None,
        }
        for name, r in results.items()
    ]


def table(
    trace: Trace, config: LlmSimConfig, ttft_slo_ms: float, results: dict[str, LlmSimResult], profile: str
) -> str:
    first = config.mix.token_mix(0, trace.seconds)
    costs = first_mix_costs(config.profile, config.mix, trace.seconds)
    prompt, output = costs.prompt_per_second, costs.output_per_second
    head = (
        f"trace {trace.name} ({trace.seconds} s), mix {config.mix}, profile {profile}: "
        f"{saturated_rps(config.profile, first):.2f} rps a replica on the first mix ({prompt:,.0f} prompt or "
        f"{output:,.0f} output tok/s), TTFT SLO p99 <= {ttft_slo_ms:,.0f} ms, start-up {config.startup_s:g} s, "
        f"bounds {config.bounds[0]}..{config.bounds[1]}\n"
    )
    header = ("policy", "refused %", "TTFT p99 ms", "TPOT p99 ms", "SLO min %", "GPU-h", "GPU-h / oracle")
    lines = [header]
    oracle = results["oracle"].gpu_hours
    for name, r in results.items():
        ratio = r.gpu_hours / oracle if oracle else math.nan
        ttft = "-" if r.ttft_p99_ms is None else f"{r.ttft_p99_ms:,.0f}"
        tpot = "-" if r.tpot_p99_ms is None else f"{r.tpot_p99_ms:,.1f}"
        lines.append(
            (
                name,
                f"{r.refused_pct:.3f}",
                ttft,
                tpot,
                f"{r.slo_minutes_pct:.1f}",
                f"{r.gpu_hours:.2f}",
                f"{ratio:.2f}x",
            )
        )
    return head + "\n" + markdown(lines) + "\n"


def configure(profile: LlmProfile, mix: MixShift, startup_s: float | None, seed: int, slo_ms: float) -> LlmSimConfig:
    return LlmSimConfig(
        profile=profile,
        mix=mix,
        policy=None,
        bounds=BOUNDS,
        initial_replicas=INITIAL_REPLICAS,
        ttft_slo_s=slo_ms / 1000,
        startup_s=startup_s if startup_s is not None else max(60.0, profile.ready_seconds),
        seed=seed,
    )


def base_rps(profile: LlmProfile, mix: MixShift) -> float:
    return BASE_LOAD * INITIAL_REPLICAS * saturated_rps(profile, mix.token_mix(0, 1))
