"""Scaling an LLM in tokens: demand and capacity in weighted tokens, TTFT/TPOT/KV guards."""

from __future__ import annotations

import pytest
from test_scaling_policy import replicas, run

from unbusy.scaling import tokens
from unbusy.scaling.demand import Demand
from unbusy.scaling.policy import PolicyState, ReplicaSample

TOKENS_ONLY = {"queueDepthPerReplica": 0, "gpuUtilizationPercent": 0, "capacityUtilizationPercent": 80}
# A replica that prefills 20,000 prompt tokens/s or generates 2,000 output tokens/s: a prompt token
# costs a tenth of an output token.
COSTS = tokens.TokenCosts(prompt_per_second=20_000, output_per_second=2_000)
CONV = (1154, 211)  # mean prompt and output tokens of a conversation request (Azure 2023)
CODE = (2047, 27)


def llm(n: int, rps: float, mix: tuple[int, int], latency: tokens.Latency | None = None, **pod) -> tokens.Observation:
    """n ready replicas serving `rps` requests of `mix` evenly, the edge counting the same."""
    prompt, output = mix
    each = tokens.PodTokens(rps * prompt / n, rps * output / n, **pod)
    return tokens.observation(
        n,
        replicas(n).samples,
        [each] * n,
        Demand(rps, 0.0, "nginx", True),
        rps,
        latency or tokens.Latency(),
        COSTS,
    )


def test_a_request_costs_its_output_tokens_plus_its_prompt_at_a_tenth():
    assert COSTS.weighted(1154, 211) == pytest.approx(211 + 115.4)
    assert tokens.per_request(COSTS, 10 * 1154, 10 * 211, 10) == pytest.approx(326.4)
    assert tokens.per_request(COSTS, 0, 0, 0) is None


def test_the_same_requests_per_second_need_more_replicas_as_the_mix_moves_from_code_to_conv():
    # 14 rps of code is 14 x (27 + 204.7) = 3,244 tok/s: 2 replicas at 80% of 2,000 (2.03, within 10%);
    # 14 rps of conversations is 4,570 tok/s: 3. A requests-per-second rule sees no change.
    code, conv = run(llm(2, 14, CODE), targets=TOKENS_ONLY), run(llm(2, 14, CONV), targets=TOKENS_ONLY)
    assert code.replicas == 2 and conv.replicas == 3
    # Each conversation replica served 2,285 tok/s with no request waiting: it can do at least that.
    assert conv.reason.startswith("demand 4.57k tok/s (nginx 14 rps x 326 tok/req, 503s included) / capacity 2.28k")
    assert "-> 3 replicas" in conv.reason
    assert conv.metrics["demand_rps"] == pytest.approx(4570, rel=1e-3)


def test_refused_requests_count_at_the_tokens_a_request_costs_now():
    obs = llm(2, 10, CONV)
    edge = Demand(14, 4, "envoy-gateway", True)  # the engines finished 10 rps; the edge refused 4 more
    demand = tokens.demand(edge, [tokens.PodTokens(5 * 1154, 5 * 211)] * 2, 10, COSTS)
    assert demand.rps == pytest.approx(14 * 326.4) and demand.rejected_rps == pytest.approx(4 * 326.4)
    assert obs.unit == tokens.TOKENS and obs.capacity_hint == 2_000


def test_without_the_edge_the_demand_is_what_the_engines_served_and_says_so():
    demand = tokens.demand(None, [tokens.PodTokens(11540, 2110)], 10, COSTS)
    assert demand.rps == pytest.approx(3264) and not demand.measurable
    assert tokens.demand(None, [tokens.PodTokens(None, None)], 10, COSTS) is None


def test_capacity_is_learned_in_tokens_from_replicas_with_requests_waiting_while_ttft_misses_its_slo():
    # Two replicas with requests waiting while TTFT misses its SLO serve 5 rps x (50 + 100) = 750
    # weighted tok/s each, not the 2,000 assumed: the estimate moves towards it by the smoothing step.
    missing = tokens.Latency(ttft_p99_ms=2600, ttft_slo_ms=2000)
    obs = llm(2, 10, (1000, 50), missing, waiting=3)
    assert [s.served_rate for s in obs.samples] == [pytest.approx(750)] * 2
    decision = run(obs, targets=TOKENS_ONLY)
    assert decision.state.capacity == pytest.approx(2000 + 0.3 * (750 - 2000))
    idle = llm(2, 10, (1000, 50), missing, waiting=0)
    assert run(idle, targets=TOKENS_ONLY).state.capacity == 2000


def test_requests_waiting_within_the_slo_teach_nothing():
    # A continuous-batching engine holds new prompts for the next step's token budget at any load.
    within = tokens.Latency(ttft_p99_ms=400, ttft_slo_ms=2000)
    obs = llm(2, 10, (1000, 50), within, waiting=3)
    assert all(s.queue_depth_min is None for s in obs.samples)
    assert run(obs, targets=TOKENS_ONLY).state.capacity == 2000


def test_ttft_over_its_slo_with_requests_waiting_adds_one_more_than_are_ready():
    over = tokens.Latency(ttft_p99_ms=2600, ttft_slo_ms=2000)
    decision = run(llm(4, 5, CODE, over, waiting=1), targets=TOKENS_ONLY)  # the demand alone asks for 1
    assert decision.replicas == 5
    assert "ttft p99 2.6e+03ms > limit 2000ms: one more than the 4 ready" in decision.reason
    # However far over: an engine keeps what it queued, and more replicas do not drain it at once.
    far = tokens.Latency(ttft_p99_ms=9000, ttft_slo_ms=2000)
    assert run(llm(4, 5, CODE, far, waiting=1), targets=TOKENS_ONLY).replicas == 5


def test_a_ttft_miss_with_nobody_waiting_now_is_the_windows_past():
    # The p99 over the window remembers the requests that waited; the fleet has caught up since.
    over = tokens.Latency(ttft_p99_ms=9000, ttft_slo_ms=2000)
    obs = llm(4, 5, CODE, over, waiting=0)
    assert obs.guards == () and run(obs, targets=TOKENS_ONLY).replicas == 1


def test_requests_waiting_now_are_demand_to_serve_within_a_minute():
    quiet, queued = llm(2, 10, CONV), llm(2, 10, CONV, waiting=60)  # 120 waiting in all
    assert queued.demand.rps == pytest.approx(quiet.demand.rps + 120 * 326.4 / 60)
    assert "10 rps + 120 waiting x 326 tok/req" in queued.demand.source


def test_a_guard_under_its_limit_does_not_hold_a_scale_in():
    under = tokens.Latency(ttft_p99_ms=300, ttft_slo_ms=2000, tpot_p99_ms=20, tpot_slo_ms=100, kv_used=0.2)
    assert run(llm(4, 5, CODE, under), targets=TOKENS_ONLY).replicas == 1


def test_a_full_kv_cache_and_a_slow_tpot_each_ask_for_more():
    assert run(llm(2, 2, CODE, tokens.Latency(kv_used=0.99)), targets=TOKENS_ONLY).replicas == 3
    slow = tokens.Latency(tpot_p99_ms=150, tpot_slo_ms=100)
    assert run(llm(2, 2, CODE, slow), targets=TOKENS_ONLY).replicas == 3


def test_guards_count_ready_replicas_only():
    obs = llm(3, 5, CODE, tokens.Latency(ttft_p99_ms=3000, ttft_slo_ms=2000), waiting=1)
    loading = type(obs)(**{**obs.__dict__, "samples": (*obs.samples[:2], ReplicaSample(ready=False))})
    assert run(loading, PolicyState(), targets=TOKENS_ONLY).replicas == 3  # 2 ready + 1: the third is on its way


# --- a mix priced by the engine's profile (spec.model.llm.profile) ---------------------------------


def _priced(mix: tuple[int, int], rps: float = 10.0, slo_ms: float = 60_000.0) -> tokens.TokenCosts:
    from test_llm_serving import PROFILE

    prompt, output = mix
    pods = [tokens.PodTokens(rps * prompt / 2, rps * output / 2)] * 2
    return tokens.priced(COSTS, tokens.Pricing(PROFILE, 0.8), pods, rps, slo_ms)


def test_with_a_profile_each_mix_costs_what_the_engine_serves_of_it_in_the_specs_unit():
    from test_llm_serving import PROFILE

    from unbusy.serving.llm import TokenMix, saturated_rps

    for mix in (CONV, CODE):
        costs = _priced(mix)
        assert costs.capacity == COSTS.capacity  # one unit: the learned capacity and the status read it
        # A replica saturated by this mix serves exactly its capacity in the spec's unit.
        saturated = saturated_rps(PROFILE, TokenMix.from_means(*mix))
        assert costs.weighted(saturated * mix[0], saturated * mix[1]) == pytest.approx(COSTS.capacity, rel=1e-6)
    # The spec's one line prices both mixes as it priced the first; the profile sees conv cost more.
    line, conv, code = COSTS.weighted(*CONV) / COSTS.weighted(*CODE), _priced(CONV), _priced(CODE)
    assert conv.weighted(*CONV) / code.weighted(*CODE) != pytest.approx(line, rel=0.05)


def test_without_a_profile_or_anything_finished_the_specs_line_prices_the_mix():
    pods = [tokens.PodTokens(1154.0, 211.0)]
    assert tokens.priced(COSTS, None, pods, 1.0, 1000.0) is COSTS
    from test_llm_serving import PROFILE

    assert tokens.priced(COSTS, tokens.Pricing(PROFILE, 0.8), pods, 0.0, 1000.0) is COSTS


def test_a_tight_ttft_slo_counts_the_demand_at_the_share_of_the_target_it_allows():
    loose, tight = _priced(CONV), _priced(CONV, slo_ms=1.0)
    assert loose.slo_share == 1.0 and 0 < tight.slo_share < 1
    edge, pods = Demand(10, 0.0, "nginx", True), [tokens.PodTokens(5 * 1154, 5 * 211)] * 2
    relaxed, cooler = tokens.demand(edge, pods, 10, loose), tokens.demand(edge, pods, 10, tight)
    assert cooler.rps == pytest.approx(relaxed.rps / tight.slo_share)
    assert "of the target for the TTFT SLO" in cooler.source


def test_a_mix_priced_with_its_size_histograms_takes_their_second_moments():
    """Outputs all of one size (E[o^2] = E[o]^2, the histogram says so) cost a replica less KV and attention
    than exponential ones of the same mean (E[o^2] = 2 E[o]^2): it serves more of them."""
    from test_llm_serving import PROFILE

    from unbusy.serving.llm import SizeHistogram, TokenMix, token_capacity

    pods = [tokens.PodTokens(5 * 1154, 5 * 200)] * 2
    pricing = tokens.Pricing(PROFILE, 0.8)
    # 10 requests/s, every output in (100, 200] (its mean 200), the prompts spread over (500, 2000].
    outputs = SizeHistogram((100, 200, 500), (0.0, 10.0, 0.0, 0.0))
    prompts = SizeHistogram((500, 1000, 2000), (0.0, 4.0, 6.0, 0.0))
    sizes = tokens.Sizes(prompts, outputs)
    spread, exponential = (
        tokens.priced(COSTS, pricing, pods, 10, 60_000, sizes),
        tokens.priced(COSTS, pricing, pods, 10, 60_000),
    )
    assert spread.output_per_second > exponential.output_per_second
    mix = TokenMix.from_means(1154, 200, prompts, outputs)
    assert mix.output_squared == pytest.approx(200**2 * (100**2 + 100 * 200 + 200**2) / 3 / 150**2)
    assert (spread.prompt_per_second, spread.output_per_second) == token_capacity(PROFILE, mix)
    # Only one histogram read: the other keeps the exponential's spread.
    half = tokens.priced(COSTS, pricing, pods, 10, 60_000, tokens.Sizes(outputs=outputs))
    assert half.output_per_second == token_capacity(PROFILE, TokenMix.from_means(1154, 200, None, outputs))[1]
