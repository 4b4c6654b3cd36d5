"""serving/llm.py: the continuous-batching engine step by step, its limits, and its closed forms against it."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest
import yaml

from unbusy.serving.llm import (
    _MIDDLES,
    Engine,
    LlmProfile,
    Request,
    SizeHistogram,
    StepTime,
    TokenMix,
    fraction_within,
    load_llm_profile,
    saturated_rps,
    step_s,
    token_capacity,
    ttft_p99_s,
)
from unbusy.sim.llm import TOKEN_BUCKETS, Buckets, mix_sizes

# An 8B-like replica on an H100 (not a measured one: the engine's rules are what is tested here).
PROFILE = LlmProfile(
    step=StepTime(base_ms=8, per_prompt_token_ms=0.06, per_sequence_ms=0.05, per_kv_token_ms=0.00004),
    kv_cache_tokens=200_000,
    max_batched_tokens=8192,
    max_sequences=256,
)


def run(profile: LlmProfile, requests: list[Request], until: float = 1e6) -> Engine:
    engine = Engine(profile)
    for request in sorted(requests, key=lambda r: r.arrival_s):
        engine.advance_to(request.arrival_s)
        engine.submit(request)
    engine.advance_to(until)
    return engine


def poisson_load(profile: LlmProfile, sizes, rate: float, seconds: float, seed: int = 1) -> tuple[Engine, list]:
    rng, t, requests = random.Random(seed), 0.0, []
    engine = Engine(profile)
    while (t := t + rng.expovariate(rate)) < seconds:
        engine.advance_to(t)
        request = Request(t, *rng.choice(sizes))
        requests.append(request)
        engine.submit(request)
    return engine, requests


def test_one_request_takes_a_prefill_step_then_a_decode_step_per_token():
    step = PROFILE.step
    request = Request(0.0, prompt=1000, output=5)
    run(PROFILE, [request])
    assert request.ttft_s == pytest.approx(step.seconds(1000, 0, 0))
    # Decode step j attends to the prompt and the j tokens generated so far.
    decode = sum(step.seconds(0, 1, 1000 + j) for j in range(1, 5))
    assert request.done_s == pytest.approx(request.ttft_s + decode)
    assert request.tpot_s == pytest.approx(decode / 4)


def test_a_long_prompt_is_prefilled_in_chunks_of_the_token_budget():
    profile = replace(PROFILE, max_batched_tokens=1000)
    request = Request(0.0, prompt=2500, output=1)
    engine = run(profile, [request])
    assert request.ttft_s == pytest.approx(3 * profile.step.seconds(0, 0, 0) + 2500 * 0.06 / 1000)
    assert engine.prompt_tokens == 2500 and engine.output_tokens == 1


def test_a_request_arriving_during_a_step_joins_the_next_one():
    first, second = Request(0.0, 4000, 2), Request(0.001, 100, 2)
    run(PROFILE, [first, second])
    assert first.first_token_s == pytest.approx(PROFILE.step.seconds(4000, 0, 0))
    assert second.first_token_s > first.first_token_s


def test_requests_wait_for_room_in_the_kv_cache_and_are_refused_past_the_waiting_limit():
    small = replace(PROFILE, kv_cache_tokens=3000, max_waiting=1)
    first, second, third = Request(0.0, 2000, 50), Request(0.01, 2000, 50), Request(0.02, 2000, 50)
    run(small, [first, second, third])
    assert second.first_token_s >= first.done_s  # no room beside the first: it waited for it to finish
    assert third.refused and third.done_s is None  # one was already waiting


def test_a_request_that_could_never_fit_the_kv_cache_is_refused():
    request = Request(0.0, 190_000, 20_000)
    run(PROFILE, [request])
    assert request.refused


def test_a_full_kv_cache_preempts_the_newest_sequence_which_is_recomputed_and_finishes():
    tight = replace(PROFILE, kv_cache_tokens=3500, block_size=16)  # both prompts fit, not their outputs
    requests = [Request(0.0, 1500, 400), Request(0.0, 1500, 400)]
    engine = run(tight, requests)
    assert engine.preemptions >= 1
    assert all(r.done_s is not None for r in requests)
    assert engine.output_tokens == 800  # each token generated once: a recompute is prefill, not output
    assert engine.prompt_tokens == 3000  # counted at the first token: the recompute is not counted again
    assert sum(r.preempted for r in requests) == engine.preemptions
    assert engine.kv_used == 0 and engine.context == 0
    for request in requests:  # each took its 399 decode steps: none was finished early by a stale entry
        assert request.done_s - request.first_token_s >= 399 * tight.step.seconds(0, 1, 1500)


def test_a_preempted_sequence_readmitted_is_not_finished_by_its_old_entry():
    """Found by comparing runs: the preempted sequence's first finishing entry outlived it and ended it
    early once it was readmitted (775 of 918 tokens generated)."""
    tight = replace(PROFILE, kv_cache_tokens=2766, block_size=16, max_batched_tokens=512)
    sizes = [(0.28, 386, 68), (0.52, 1147, 268), (0.72, 547, 278), (0.81, 721, 264), (1.52, 961, 40)]
    requests = [Request(*size) for size in sizes]
    engine = run(tight, requests)
    assert engine.preemptions >= 1
    assert engine.output_tokens == 918 and engine.context == 0 and not engine.decoding
    fastest = tight.step.seconds(0, 1, 0)
    assert all(r.done_s - r.first_token_s >= (r.output - 1) * fastest for r in requests)


def test_counters_add_up_under_load():
    sizes = mix_sizes("conv")
    engine, requests = poisson_load(PROFILE, sizes, rate=6.0, seconds=120)
    engine.advance_to(1e6)
    assert all(r.done_s is not None for r in requests)
    assert engine.output_tokens == sum(r.output for r in requests)
    assert engine.prompt_tokens == sum(r.prompt for r in requests)
    assert engine.context == 0 and engine.prefill_held == 0 and not engine.waiting


@pytest.mark.parametrize("mix", ["conv", "code"])
def test_saturated_rps_is_what_an_overloaded_engine_serves(mix):
    sizes = mix_sizes(mix)
    capacity = saturated_rps(PROFILE, TokenMix.from_sizes(list(sizes)))
    engine, requests = poisson_load(PROFILE, sizes, rate=1.5 * capacity, seconds=400)
    admitted = {id(r) for r in requests if r.first_token_s is not None and r.first_token_s >= 100}
    served = len(admitted) / (engine.now - 100)
    assert served == pytest.approx(capacity, rel=0.05)


def test_token_capacity_is_the_work_model_of_the_api():
    mix = TokenMix.from_sizes(list(mix_sizes("conv")))
    prompt_capacity, output_capacity = token_capacity(PROFILE, mix)
    rate = saturated_rps(PROFILE, mix)
    assert prompt_capacity == pytest.approx(1000 / 0.06)
    # A saturated replica: prompt_rate / P + output_rate / O = 1.
    assert rate * mix.prompt / prompt_capacity + rate * mix.output / output_capacity == pytest.approx(1)


def test_the_mean_step_grows_with_the_load_and_saturation_is_unbounded():
    mix = TokenMix.from_sizes(list(mix_sizes("conv")))
    capacity = saturated_rps(PROFILE, mix)
    steps = [step_s(PROFILE, mix, f * capacity) for f in (0.1, 0.5, 0.9)]
    assert steps == sorted(steps) and steps[0] > PROFILE.step.base_ms / 1000
    assert ttft_p99_s(PROFILE, mix, 1.0) == math.inf


@pytest.mark.parametrize(
    ("mix", "fraction", "response_ms"),
    [("conv", 0.3, 0), ("conv", 0.6, 0), ("code", 0.3, 0), ("code", 0.6, 0), ("conv", 0.6, 40), ("code", 0.3, 40)],
)
def test_ttft_p99_closed_form_is_near_the_engine(mix, fraction, response_ms):
    """The closed form reads the p99 from the prompt distribution and an M/G/1 prefill queue (and the
    exponential way to the client): it read 0.78-1.03 of the engine's p99 from 0.2 to 0.8 of capacity
    (2,400 s runs, no response time): held to 0.7-1.2 here."""
    profile = replace(PROFILE, response_ms=response_ms)
    sizes = mix_sizes(mix)
    token_mix = TokenMix.from_sizes(list(sizes))
    engine, requests = poisson_load(profile, sizes, fraction * saturated_rps(profile, token_mix), seconds=900)
    engine.advance_to(1e6)
    ttfts = sorted(r.ttft_s for r in requests if r.arrival_s > 60)
    engine_p99 = ttfts[int(0.99 * len(ttfts))]
    assert 0.7 <= ttft_p99_s(profile, token_mix, fraction) / engine_p99 <= 1.2


def test_a_first_token_takes_an_exponential_time_of_mean_response_ms_to_the_client():
    """What bench/llmcal's H100 runs showed of the way from the engine to the client where nothing
    waits: spread as an exponential (median 0.69x, p99 4.6x the mean), drawn per request, seeded."""
    profile = replace(PROFILE, response_ms=40)
    requests = [Request(10.0 * k, 100, 2) for k in range(2000)]  # one at a time: the engine alone is constant
    run(profile, requests)
    alone = [Request(0.0, 100, 2)]
    run(replace(profile, response_ms=0), alone)
    gaps = sorted(1000 * (r.ttft_s - alone[0].ttft_s) for r in requests)
    assert sum(gaps) / len(gaps) == pytest.approx(40, rel=0.1)
    assert gaps[1000] == pytest.approx(40 * math.log(2), rel=0.15)
    assert gaps[1980] == pytest.approx(40 * math.log(100), rel=0.25)
    again = [Request(10.0 * k, 100, 2) for k in range(2000)]
    run(profile, again)
    assert [r.ttft_s for r in again] == [r.ttft_s for r in requests]


def test_profile_round_trips_through_yaml_and_names_a_wrong_field(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(PROFILE.to_document()))
    assert load_llm_profile(str(path)) == PROFILE
    assert "kvCacheTokens" in PROFILE.to_document()["llm"]
    path.write_text(
        "llm:\n  step: {baseMs: 1, perPromptTokenMs: 0, perSequenceMs: 0, perKvTokenMs: 0}\n  kvTokens: 5\n"
    )
    with pytest.raises(ValueError, match="kv_tokens"):
        load_llm_profile(str(path))
    with pytest.raises(ValueError, match="neither an LLM profile"):
        load_llm_profile("no-such-profile")


def test_fraction_within_is_the_load_whose_ttft_p99_meets_the_slo():
    mix = TokenMix.from_sizes(list(mix_sizes("conv")))
    fraction = fraction_within(PROFILE, mix, 1.0)
    assert 0 < fraction < 1
    assert ttft_p99_s(PROFILE, mix, fraction) <= 1.0 < ttft_p99_s(PROFILE, mix, fraction + 0.002)
    assert fraction_within(PROFILE, mix, 2.0) > fraction
    assert fraction_within(PROFILE, mix, 0.01) == 0  # a 4,000-token prompt alone takes longer


# --- the spread of the sizes, from the engine's size histograms --------------------------------


def _histogram(sizes: list[int], bounds: tuple[float, ...] = TOKEN_BUCKETS) -> SizeHistogram:
    """`sizes` as the engine's histogram counts them, read back from its `_bucket` series."""
    counted = Buckets(bounds)
    for size in sizes:
        counted.observe(size)
    return SizeHistogram.from_cumulative(zip((*bounds, math.inf), counted.cumulative(), strict=True))


def test_a_size_histogram_parses_prometheus_buckets_in_any_order():
    rows = [(math.inf, 10.0), (2.0, 4.0), (1.0, 1.0), (5.0, 9.0)]
    assert SizeHistogram.from_cumulative(rows) == SizeHistogram((1.0, 2.0, 5.0), (1.0, 3.0, 5.0, 1.0))
    assert SizeHistogram.from_cumulative([(1.0, 0.0), (math.inf, 0.0)]) is None  # nothing observed
    assert SizeHistogram.from_cumulative([(1.0, 3.0), (2.0, 3.0)]) is None  # no +Inf: not the whole
    assert SizeHistogram.from_cumulative([(math.inf, 3.0)]) is None  # no finite bucket: no spread
    # A counter reset inside the rate window reads as a smaller cumulative count: no negative bucket.
    assert SizeHistogram.from_cumulative([(1.0, 5.0), (2.0, 4.0), (math.inf, 6.0)]).counts == (5.0, 0.0, 1.0)


@pytest.mark.parametrize("mix", ["conv", "code"])
def test_second_moments_from_vllms_buckets_are_near_the_sizes(mix):
    """E[x^2] / E[x]^2 of the Azure mixes, from the sizes and from vLLM's 1-2-5 buckets of them: within
    6% (an exponential would say 2: conv's outputs are 1.60, code's 5.61)."""
    sizes = mix_sizes(mix)
    for values in ([p for p, _ in sizes], [o for _, o in sizes]):
        mean = sum(values) / len(values)
        exact = sum(v * v for v in values) / len(values) / mean**2
        assert _histogram(values).squared_ratio(mean) == pytest.approx(exact, rel=0.06)


def test_sizes_past_the_last_bound_spread_as_the_histograms_sum_says():
    """TensorRT-LLM's bounds end at 1000: a mix of 2,000-token prompts is all past it, its mean from the sum."""
    values = [1000 + round(-1000 * math.log(1 - (i + 0.5) / 1000)) for i in range(1000)]  # 1000 + Exp(1000)
    mean = sum(values) / len(values)
    estimated = _histogram(values, (10, 50, 100, 500, 1000))
    exact = sum(v * v for v in values) / len(values) / mean**2
    assert estimated.squared_ratio(mean) == pytest.approx(exact, rel=0.02)
    median = estimated.quantiles(mean, [0.5])[0]
    assert median == pytest.approx(1000 + 1000 * math.log(2), rel=0.02)


def test_a_mix_spread_as_its_histograms_say_prices_near_its_sizes():
    """From the means alone (exponential sizes) the closed forms underprice what a replica serves of
    conv; the histograms' second moments bring it nearer the sizes' own (what remains: conv's prompt
    and output are not independent, E[p o] = 0.92 E[p] E[o], which no histogram of one says)."""
    sizes = list(mix_sizes("conv"))
    exact = TokenMix.from_sizes(sizes)
    prompts, outputs = _histogram([p for p, _ in sizes]), _histogram([o for _, o in sizes])
    spread = TokenMix.from_means(exact.prompt, exact.output, prompts, outputs)
    exponential = TokenMix.from_means(exact.prompt, exact.output)
    assert exponential.output_squared == 2 * exact.output**2
    assert spread.output_squared == pytest.approx(exact.output_squared, rel=0.06)
    truth, by_means, by_spread = (saturated_rps(PROFILE, m) for m in (exact, exponential, spread))
    assert by_means < by_spread < truth
    # The TTFT tail reads the prompts' quantiles (past p90) from the buckets: off the sizes' by about half
    # what an exponential's of the same mean is (0.52 of it).
    tail = [i for i, q in enumerate(_MIDDLES) if q > 0.9]
    off = {m: sum(abs(m.prompts[i] - exact.prompts[i]) for i in tail) for m in (spread, exponential)}
    assert off[spread] < 0.6 * off[exponential]


# Decoding beside a prefill at its own price, as the H100's step logs show (bench/llmcal/README.md).
MIXED = replace(PROFILE, step=replace(PROFILE.step, mixed_sequence_ms=0.3, mixed_kv_token_ms=0.0001))


def test_a_step_that_prefills_prices_its_decoding_apart_and_a_profile_without_that_price_reads_as_before():
    step = MIXED.step
    assert step.seconds(0, 10, 5000) == pytest.approx((8 + 0.05 * 10 + 0.00004 * 5000) / 1000)
    assert step.seconds(100, 10, 5000) == pytest.approx((8 + 0.06 * 100 + 0.3 * 10 + 0.0001 * 5000) / 1000)
    assert PROFILE.step.seconds(100, 10, 5000) == pytest.approx((8 + 6 + 0.05 * 10 + 0.00004 * 5000) / 1000)
    assert "mixedSequenceMs" not in PROFILE.to_document()["llm"]["step"]
    assert LlmProfile.from_document(MIXED.to_document()) == MIXED


@pytest.mark.parametrize("mix", ["conv", "code"])
def test_saturated_rps_with_a_mixed_price_is_near_what_an_overloaded_engine_serves(mix):
    """The closed form takes the share of steps that prefill as the prompts a step takes over the token
    budget: here it reads 1.15 (conv: 0.11 of the steps prefill in the closed form, 0.32 in the engine, whose
    admissions come in bursts as the KV cache frees) and 0.97 (code) of what the engine serves; on the fitted
    H100 profiles 0.94-1.00 (bench/llmcal/README.md)."""
    sizes = mix_sizes(mix)
    capacity = saturated_rps(MIXED, TokenMix.from_sizes(list(sizes)))
    assert capacity < saturated_rps(PROFILE, TokenMix.from_sizes(list(sizes)))
    engine, requests = poisson_load(MIXED, sizes, rate=1.5 * capacity, seconds=400)
    admitted = {id(r) for r in requests if r.first_token_s is not None and r.first_token_s >= 100}
    assert len(admitted) / (engine.now - 100) == pytest.approx(capacity, rel=0.20)


def test_the_first_tokens_way_grows_with_the_requests_running():
    profile = replace(PROFILE, response_ms=20, response_per_running_ms=0.5)
    engine = Engine(profile)
    for _ in range(30):
        engine.submit(Request(0.0, 100, 50))
    engine.advance_to(0.001)
    assert engine.response_s() == pytest.approx((20 + 0.5 * engine.running) / 1000) and engine.running == 30
    run(profile, requests := [Request(0.0, 100, 50) for _ in range(30)])
    assert {r.running_at_first_token for r in requests} == {29}  # the others running beside it
