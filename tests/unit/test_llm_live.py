"""sim/llm_live.py: the metrics emulator's LLM fleet, one engine per pod, a tick at a time."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from unbusy.serving.llm import LlmProfile, StepTime
from unbusy.sim.llm import TOKEN_BUCKETS, MixShift, mix_sizes, one_two_five
from unbusy.sim.llm_live import E2E_BUCKETS, LlmLiveFleet

PROFILE = LlmProfile(
    step=StepTime(base_ms=10, per_prompt_token_ms=0.05, per_sequence_ms=0.3, per_kv_token_ms=0.00004),
    kv_cache_tokens=200_000,
    max_batched_tokens=4096,
    max_sequences=128,
)
A, B, C = "llm-main-abc12-aaaaa", "llm-main-abc12-bbbbb", "llm-canary-def34-ccccc"


def run(fleet: LlmLiveFleet, rps: float, pods: dict, seconds: int, weights: dict | None = None) -> None:
    for _ in range(seconds):
        fleet.tick(rps, pods, weights)


def test_vllms_bucket_bounds():
    assert one_two_five(1000) == (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
    assert TOKEN_BUCKETS[-1] == 100_000 and E2E_BUCKETS[-1] == 7680.0


def test_requests_are_split_over_the_ready_pods_and_by_the_routes_weights():
    fleet = LlmLiveFleet(PROFILE, MixShift("code"), seed=1)
    run(fleet, 6, {A: ("main", True), B: ("main", True), C: ("canary", False)}, 20)
    a, b, c = (fleet.pods[name] for name in (A, B, C))
    assert c.arrived == 0  # not ready: nothing sent to it
    assert abs(a.arrived - b.arrived) <= 1  # round robin, as nginx
    assert a.arrived + b.arrived == sum(arrived for arrived, _ in fleet.history) == fleet.arrived(0, 20) > 80

    weighted = LlmLiveFleet(PROFILE, MixShift("code"), seed=1)
    run(weighted, 6, {A: ("main", True), C: ("canary", True)}, 30, {"main": 90, "canary": 10})
    main, canary = weighted.pods[A].arrived, weighted.pods[C].arrived
    assert canary == pytest.approx((main + canary) / 10, abs=1)  # smooth weighted round robin: exact to a request


def test_with_no_ready_pod_every_request_is_refused():
    fleet = LlmLiveFleet(PROFILE, MixShift("conv"), seed=2)
    run(fleet, 5, {A: ("main", False)}, 10)
    assert fleet.rejected_fraction(10) == 1.0
    assert fleet.ttft_p99(0, 10) == math.inf  # refused: never answered
    assert fleet.pods[A].arrived == 0
    run(fleet, 5, {A: ("main", True)}, 5, weights={})  # routes not read yet: nothing routes a request
    assert fleet.rejected_fraction(5) == 1.0


def test_a_pods_series_count_what_its_engine_served():
    fleet = LlmLiveFleet(PROFILE, MixShift("conv"), seed=3)
    run(fleet, 3, {A: ("main", True)}, 40)
    pod = fleet.pods[A]
    engine = pod.engine
    first = [r for r in fleet.requests if r.ttft_s is not None]
    done = [r for r in fleet.requests if r.done_s is not None]
    assert 0 < len(done) < len(first) <= pod.arrived  # some still generate, some still wait for a first token
    # TTFT at the first token; TPOT for each output token after the first; the rest when a request ends.
    assert pod.ttft.count == len(first) and pod.ttft.total == pytest.approx(sum(r.ttft_s for r in first))
    assert pod.served == pod.e2e.count == pod.prompts.count == len(done)
    assert pod.prompts.total == sum(r.prompt for r in done) and pod.outputs.total == sum(r.output for r in done)
    assert pod.tpot.count == sum(r.output - 1 for r in done)
    # The engine's counters: prompt tokens at the first token, every output token generated.
    assert engine.prompt_tokens == sum(r.prompt for r in first)
    assert engine.output_tokens >= pod.outputs.total
    assert 0 < pod.gpu_busy <= 1 and 0 < engine.kv_fraction < 1


def test_the_mix_moves_while_running(tmp_path):
    long = [size for size in mix_sizes("conv") if size[0] >= 2000]
    fleet = LlmLiveFleet(PROFILE, MixShift("code"), seed=4)
    pods = {A: ("main", True), B: ("main", True)}
    run(fleet, 8, pods, 20)
    fleet.set_mix(MixShift("code", "conv"), over_s=40)
    run(fleet, 8, pods, 40)
    requests = list(fleet.requests)

    def outputs(since: float, until: float) -> float:
        chosen = [r.output for r in requests if since <= r.arrival_s < until]
        return sum(chosen) / len(chosen)

    # Code requests generate ~28 tokens, conversations ~211: the second half of the move is mostly conv.
    assert outputs(0, 20) < 60 < outputs(40, 60)
    assert all(r.arrival_s >= 20 for r in requests if r.output > 1000)  # code has no such outputs

    path = tmp_path / "long.csv"  # a mix of conversations with long prompts, as MixShift reads one from a file
    path.write_text("context_tokens,generated_tokens\n" + "".join(f"{p},{o}\n" for p, o in long))
    fleet.set_mix(MixShift(str(path)))
    run(fleet, 8, pods, 10)
    assert min(r.prompt for r in fleet.requests if r.arrival_s >= 60) >= 2000


def test_an_engine_at_its_waiting_limit_refuses_and_the_measured_ttft_counts_the_waiting():
    small = replace(PROFILE, kv_cache_tokens=20_000, max_waiting=4)
    fleet = LlmLiveFleet(small, MixShift("conv"), seed=5)
    run(fleet, 20, {A: ("main", True)}, 20)  # far past what one replica serves
    pod = fleet.pods[A]
    assert pod.rejected > 0 and fleet.rejected_fraction(20) > 0.1
    assert len(pod.engine.waiting) <= 4
    # Those refused count as never answered: the p99 of an overloaded window is inf.
    assert fleet.ttft_p99(5, 20) == math.inf


def test_the_same_seed_and_calls_give_the_same_fleet():
    def figures(seed: int) -> tuple:
        fleet = LlmLiveFleet(PROFILE, MixShift("conv"), seed=seed)
        run(fleet, 4, {A: ("main", True), B: ("main", True)}, 15)
        return tuple((p.served, p.engine.prompt_tokens, p.ttft.total) for p in fleet.pods.values())

    assert figures(7) == figures(7) != figures(8)
