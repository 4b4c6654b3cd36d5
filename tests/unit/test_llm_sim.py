"""sim/llm.py: an LLM fleet under a trace, what its replicas export, and the scaling loop around it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_llm_serving import PROFILE

from unbusy.api.autoscaling import Autoscaling
from unbusy.api.fallback import Fallback
from unbusy.scaling.policy import Decision, decide
from unbusy.serving.llm import TokenMix, saturated_rps
from unbusy.sim.llm import (
    Buckets,
    LlmFallback,
    LlmSimConfig,
    LlmSimulation,
    MixShift,
    default_observe,
    histogram_quantile,
    mix_sizes,
    observe_engine_waiting,
    rate,
    replicas_needed,
    simulate_llm,
)
from unbusy.sim.llm_tokens import first_mix_costs, observer
from unbusy.sim.traces import Trace

CONV = MixShift.parse("conv")
CAPACITY = saturated_rps(PROFILE, CONV.token_mix(0, 1))
SCALING = Autoscaling.model_validate(
    {"mode": "operator", "minReplicas": 1, "maxReplicas": 8, "targets": {"gpuUtilizationPercent": 0}}
)


def config(**overrides) -> LlmSimConfig:
    base = LlmSimConfig(
        profile=PROFILE, mix=CONV, policy=None, bounds=(1, 8), initial_replicas=2, ttft_slo_s=2.0, startup_s=60
    )
    return replace(base, **overrides)


def flat(rps: float, seconds: int) -> Trace:
    return Trace("flat", (rps,) * seconds)


def test_a_fleet_below_capacity_answers_everything_within_the_slo_and_counts_its_gpu_hours():
    result = simulate_llm(config(), flat(0.6 * CAPACITY, 600))
    assert result.refused_pct == 0 and result.slo_minutes_pct == 100
    assert result.gpu_hours == pytest.approx(2 * 600 / 3600)
    served = sum(m.output_tokens for m in result.minutes) / 600
    assert served == pytest.approx(0.6 * CAPACITY * CONV.token_mix(0, 1).output, rel=0.1)


def test_runs_are_deterministic_and_the_arrivals_do_not_depend_on_the_policy():
    trace = flat(1.5 * CAPACITY, 300)
    fixed = simulate_llm(config(), trace)
    assert simulate_llm(config(), trace) == fixed
    scaled = simulate_llm(config(policy=SCALING), trace)
    assert [m.load_rps for m in scaled.minutes] == [m.load_rps for m in fixed.minutes]


def test_an_overloaded_fleet_misses_the_ttft_slo_and_a_waiting_limit_refuses():
    overloaded = simulate_llm(config(initial_replicas=1), flat(2 * CAPACITY, 300))
    assert overloaded.slo_minutes_pct < 50 and overloaded.refused_pct == 0  # vLLM queues without a limit
    limited = simulate_llm(config(initial_replicas=1, profile=replace(PROFILE, max_waiting=8)), flat(2 * CAPACITY, 300))
    assert limited.refused_pct > 20


def test_a_mix_moving_from_code_to_conv_keeps_the_request_rate_and_grows_the_output():
    shift = MixShift.parse("code->conv")
    result = simulate_llm(config(mix=shift, initial_replicas=4), flat(CAPACITY, 1200))
    first, last = result.minutes[1], result.minutes[-2]
    assert last.load_rps == pytest.approx(first.load_rps, rel=0.2)
    assert last.output_tokens > 3 * first.output_tokens
    assert shift.token_mix(1200, 1200).output == pytest.approx(TokenMix.from_sizes(list(mix_sizes("conv"))).output)


def test_an_unknown_mix_is_named():
    with pytest.raises(ValueError, match="mix 'chat'"):
        MixShift.parse("code->chat")


def test_replicas_export_the_vllm_series_and_triton_pending_stays_near_zero():
    simulation = LlmSimulation(config(), flat(0.8 * CAPACITY, 120))
    simulation.run()
    _, scraped, edge = simulation.scrapes[-1]
    scrape = next(iter(scraped.values()))
    series = scrape.series()
    for name in (
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:gpu_cache_usage_perc",
        'vllm:time_to_first_token_seconds_bucket{le="+Inf"}',
        "vllm:time_per_output_token_seconds_count",
        'vllm:request_prompt_tokens_bucket{le="100000"}',
        'vllm:request_generation_tokens_bucket{le="+Inf"}',
    ):
        assert name in series
    # The sizes of the requests it finished, one observation each.
    assert series["vllm:request_prompt_tokens_count"] == series["vllm:request_success_total"] > 0
    assert series['vllm:request_generation_tokens_bucket{le="+Inf"}'] == series["vllm:request_success_total"]
    assert series["nv_inference_pending_request_count"] == 0
    assert series["vllm:generation_tokens_total"] > 0 and 0 < series["vllm:gpu_cache_usage_perc"] < 1
    assert edge.rps == pytest.approx(0.8 * CAPACITY, rel=0.3) and edge.source == "edge"


def test_the_policy_reads_the_scrapes_after_the_metrics_delay_and_new_replicas_start_up_later():
    seen = []

    def policy(observation, autoscaling, bounds, state, now) -> Decision:
        seen.append((now, observation))
        return Decision(4 if now >= 60 else 2, "test", {}, True, state)

    result = simulate_llm(config(policy=SCALING), flat(CAPACITY, 300), policy=policy)
    observation = seen[-1][1]
    assert observation.current == 4 and observation.demand is not None
    assert observation.samples[0].served_rate > 0 and observation.capacity_hint == pytest.approx(CAPACITY, rel=0.3)
    assert result.minutes[1].ready == pytest.approx(2, abs=0.01)  # ordered at 60 s, ready a start-up later
    assert result.minutes[3].ready == pytest.approx(4)


def test_the_default_observation_rates_are_counter_differences():
    simulation = LlmSimulation(config(), flat(0.5 * CAPACITY, 120))
    simulation.run()
    window = simulation._window(120)
    newest, before = window.replicas[0]
    assert newest.at - before.at == 60  # the operator's rate window: rate(...[60s])
    assert rate(newest, before, "generation_tokens") == pytest.approx(
        (newest.generation_tokens - before.generation_tokens) / 60
    )
    assert default_observe(window, PROFILE, 2).samples[0].queue_depth == 0


def test_keda_on_the_engine_waiting_requests_reads_the_waiting_gauge():
    simulation = LlmSimulation(config(initial_replicas=1), flat(2 * CAPACITY, 120))
    simulation.run()
    window = simulation._window(120)
    waiting = window.replicas[0][0].waiting
    assert waiting > 10 and observe_engine_waiting(window, PROFILE, 1).samples[0].queue_depth == waiting


def test_unbusy_policy_scales_an_llm_fleet_out_under_a_rising_load():
    trace = Trace("rise", tuple(CAPACITY * (0.5 + 2.5 * t / 900) for t in range(900)))
    result = simulate_llm(config(policy=SCALING, initial_replicas=1), trace, policy=decide)
    assert result.minutes[-1].replicas > 2


def test_replicas_needed_is_the_load_over_each_seconds_capacity():
    needed = replicas_needed(config(), flat(2 * CAPACITY, 120))
    assert needed.rps[0] == pytest.approx(2)


def test_histograms_export_cumulative_buckets_as_prometheus_does():
    buckets = Buckets((0.1, 1.0))
    for value in (0.1, 0.5, 2.0):
        buckets.observe(value)
    assert buckets.cumulative() == [1, 2, 3] and buckets.total == pytest.approx(2.6)


def test_histogram_quantile_reads_the_observations_between_two_scrapes_as_prometheus_does():
    before = Buckets((0.1, 1.0, 10.0))
    for value in (0.05, 5.0):
        before.observe(value)
    newest = Buckets(before.bounds, list(before.counts), before.total, before.count)
    for value in [0.5] * 98 + [5.0, 50.0]:
        newest.observe(value)
    assert histogram_quantile(0.5, newest, before) == pytest.approx(0.1 + 0.9 * 50 / 98)
    assert histogram_quantile(0.995, newest, before) == pytest.approx(10.0)  # in +Inf: the top bound
    assert histogram_quantile(0.99, before, before) is None


def test_an_llm_fleet_sheds_to_its_fallback_in_requests_counted_back_from_tokens():
    """One replica at its maxReplicas under twice its load: with a fallback variant (two replicas of a
    smaller LLM, sized in rpsPerReplica) the policy, scaling in tokens, moves the excess to it in
    requests (tokens / what a request costs), and once the backlog of the first scrapes has drained the
    minutes keep the TTFT SLO; without, the engine queues and misses it. The fallback's replicas count
    in the GPU-hours."""
    trace = flat(2 * CAPACITY, 600)
    spec = Autoscaling.model_validate(
        {
            "mode": "operator",
            "minReplicas": 1,
            "maxReplicas": 1,
            "targets": {"queueDepthPerReplica": 0, "gpuUtilizationPercent": 0, "capacityUtilizationPercent": 80},
        }
    )
    observe = observer(first_mix_costs(PROFILE, CONV, trace.seconds), ttft_slo_ms=2000)
    base = config(policy=spec, bounds=(1, 1), initial_replicas=1)
    alone = simulate_llm(base, trace, observe=observe)
    small = replace(PROFILE, step=replace(PROFILE.step, base_ms=PROFILE.step.base_ms / 2))
    fallback_spec = Fallback(variant="small", rps_per_replica=CAPACITY, max_percent=70, shed_above_percent=80)
    fallback = LlmFallback(fallback_spec, small, replicas=2)
    shed = simulate_llm(replace(base, fallback=fallback), trace, observe=observe)
    assert alone.fallback_pct == 0 and alone.slo_minutes_pct < 50
    # Past the first scrapes (the policy reads a window 25 s old), 60% of the requests go to the
    # fallback: what the one replica cannot serve at 80% of its capacity (1 - 0.8 / 2 of the demand),
    # give or take what a request costs in tokens as the counters read it each minute.
    shares = [m.shed / (m.load_rps * 60) for m in shed.minutes[1:]]
    assert sum(shares) / len(shares) == pytest.approx(0.6, abs=0.03) and min(shares) > 0.5 and max(shares) < 0.7
    assert 50 < shed.fallback_pct <= 60 and shed.refused_pct == 0
    assert all(m.within_slo for m in shed.minutes[5:]), [m.ttft_p99_ms for m in shed.minutes]
    assert shed.gpu_hours == pytest.approx(3 * 600 / 3600)
    assert [m.load_rps for m in shed.minutes] == [m.load_rps for m in alone.minutes]


def test_the_operators_view_prices_the_mix_spread_as_the_replicas_size_histograms_say():
    """observe_tokens reads the size histograms' growth over the rate window, summed over the replicas,
    as `sum by (le) (rate(..._bucket[60s]))` does, and prices the mix with them."""
    from unbusy.scaling import tokens
    from unbusy.serving.llm import SizeHistogram
    from unbusy.sim.llm import TOKEN_BUCKETS, Window
    from unbusy.sim.llm_tokens import observe_tokens

    simulation = LlmSimulation(config(), flat(0.8 * CAPACITY, 180))
    simulation.run()
    (_, before, _), (_, newest, edge) = simulation.scrapes[-5], simulation.scrapes[-1]
    window = Window(180.0, tuple((scrape, before[key]) for key, scrape in newest.items()), edge, 15)
    pricing, costs = tokens.Pricing(PROFILE, 0.8), first_mix_costs(PROFILE, CONV, 180)

    def grown(name: str) -> SizeHistogram:
        counts = [0.0] * (len(TOKEN_BUCKETS) + 1)
        for scrape, earlier in window.replicas:
            for i, (n, b) in enumerate(zip(getattr(scrape, name).counts, getattr(earlier, name).counts, strict=True)):
                counts[i] += n - b
        return SizeHistogram(TOKEN_BUCKETS, tuple(counts))

    observed = observe_tokens(window, 2, costs, 2000, pricing=pricing)
    pods = [
        tokens.PodTokens(rate(n, b, "prompt_tokens"), rate(n, b, "generation_tokens"), n.waiting)
        for n, b in window.replicas
    ]
    finished = sum(rate(n, b, "success") for n, b in window.replicas)
    sizes = tokens.Sizes(grown("prompt_sizes"), grown("output_sizes"))
    assert sum(sizes.outputs.counts) == pytest.approx(finished * 60)
    spread = tokens.priced(costs, pricing, pods, finished, 2000, sizes)
    exponential = tokens.priced(costs, pricing, pods, finished, 2000)
    assert observed.demand.rps == pytest.approx(tokens.demand(edge, pods, finished, spread).rps)
    # conv's outputs are tighter than an exponential's: a replica serves more of them than its means say.
    assert spread.output_per_second > exponential.output_per_second
