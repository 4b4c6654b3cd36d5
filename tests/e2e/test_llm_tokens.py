"""End to end, an LLM: the request rate stays flat while the prompts grow, and the operator scales out
on tokens before time to first token leaves its SLO; a requests-per-second rule would not have.

The emulator's LLM mode serves one engine per Ready kwok pod (serving/llm.py, sim/llm_live.py) and
exports what a Python-backend LLM exports in vLLM's names; ingress-nginx's counter at the edge counts
every request. A real Prometheus scrapes it and the operator reads that Prometheus, in tokens. The
engine is the H100-calibrated Llama 1B (serving/profiles/llm-h100-llama-1b.yaml, fitted from
bench/data's runs of a real tritonserver), and the spec carries that profile (spec.model.llm.profile):
the operator prices each mix it sees by it.

Load: a flat rate, 1.1x what one replica serves of the Azure trace's conversations (a third of what it
serves of code requests: 2,048 prompt and 28 output tokens on average against 1,155 and 211), for a
rate window once the replica serves. Then the sizes move: code -> conversations over 30 s, held 40 s,
-> conversations with prompts of 2,000 tokens or more (3,538 and 80) over 30 s, held 30 s. Counted in
requests nothing changed, counted in tokens the demand grows ~3x, and one replica leaves the TTFT SLO.

Measured figures are printed (pytest -s) and attached to the report as user properties.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import pytest
from builders import ON_KWOK, manifest

from unbusy import timestamps
from unbusy.api import load
from unbusy.api.spec import DEFAULT_VARIANT
from unbusy.render.edge import demand_queries
from unbusy.scaling.source import PrometheusSource
from unbusy.serving.llm import TokenMix, load_llm_profile, saturated_rps, token_capacity, ttft_p99_s
from unbusy.sim.llm import MixShift, mix_sizes
from unbusy.sim.llm_live import LlmLiveFleet

if TYPE_CHECKING:
    from conftest import Loop  # the fixture's type; conftest is not importable at run time

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NAME = "llm"
PROFILE = load_llm_profile("llm-h100-llama-1b")
CODE = TokenMix.from_sizes(list(mix_sizes("code")))
CODE_RPS = saturated_rps(PROFILE, CODE)  # what one replica serves of code requests
RPS = round(1.1 * saturated_rps(PROFILE, TokenMix.from_sizes(list(mix_sizes("conv")))), 1)
# A few times the closed-form TTFT p99 of one replica at 80% of the code mix, to the 100 ms.
TTFT_SLO_S = math.ceil(2 * ttft_p99_s(PROFILE, CODE, 0.8) * 10) / 10
TARGET = 0.8  # capacityUtilizationPercent, and the rps rule's
TOLERANCE = 0.1  # autoscaling.tolerance (the default), and the rps rule's
INTERVAL_S = 5
MOVE_S = 30  # each move of the mix
CONV_S = 40  # the conversations, held
LONG_S = 30  # the long prompts, held
WINDOW_S = 15  # of the emulator's own TTFT p99: three scaling intervals of arrivals
EDGE_WINDOW_S = 60  # the operator's rate window (controller/autoscale.py WINDOW_S)


def service() -> dict:
    prompt, output = token_capacity(PROFILE, CODE)
    rules = {"maxPercentPerStep": 100, "periodSeconds": INTERVAL_S}
    return manifest(
        ON_KWOK
        | {
            "model": {
                "name": "llama-1b",
                "repository": "s3://models/llm",
                "config": {"backend": "python", "maxBatchSize": 0},
                "llm": {
                    "engine": "python",
                    "slo": {"ttftP99Ms": TTFT_SLO_S * 1000},
                    "capacity": {"promptTokensPerSecond": round(prompt), "outputTokensPerSecond": round(output)},
                    "kvCacheTokens": PROFILE.kv_cache_tokens,
                    "profile": PROFILE.to_document()["llm"],
                },
            },
            "routing": {"provider": "nginx", "host": "llm.example.com"},
            "autoscaling": {
                "mode": "operator",
                "minReplicas": 1,
                "maxReplicas": 4,
                "intervalSeconds": INTERVAL_S,
                "demand": {"source": "nginx"},
                "targets": {
                    "capacityUtilizationPercent": round(100 * TARGET),
                    "queueDepthPerReplica": 0,
                    "gpuUtilizationPercent": 0,
                },
                "capacity": {"startupSeconds": 5},  # a kwok pod is Ready within seconds
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0, "maxPodsPerStep": 2, **rules},
                    "scaleDown": {"stabilizationWindowSeconds": 600, "maxPodsPerStep": 1, **rules},
                },
            },
        },
        name=NAME,
    )


def rps_rule(rate: float, current: int = 1) -> int:
    """The HPA's rule on requests/s with one replica's code capacity at the target: ceil(current x
    ratio), no change while the ratio is within the tolerance."""
    ratio = rate / (CODE_RPS * TARGET)
    return current if abs(ratio - 1) <= TOLERANCE else max(1, math.ceil(current * ratio))


def long_prompts(tmp_path) -> str:
    """A mix of the conversations with prompts of 2,000 tokens or more, as MixShift reads one from a file."""
    path = tmp_path / "conv-long.csv"
    rows = "".join(f"{p},{o}\n" for p, o in mix_sizes("conv") if p >= 2000)
    path.write_text("context_tokens,generated_tokens\n" + rows)
    return str(path)


def one_replica(schedule: list[tuple[float, MixShift, float]], until: float) -> list[tuple[float, float]]:
    """The same seeded arrivals and mix moves on one replica all along: (window start, TTFT p99 s)."""
    fleet = LlmLiveFleet(PROFILE, MixShift("code"))
    moves = iter(schedule)
    move = next(moves, None)
    while fleet.now < until:
        while move is not None and fleet.now >= move[0]:
            fleet.set_mix(move[1], move[2])
            move = next(moves, None)
        fleet.tick(RPS, {"one": ("main", True)})
    start = schedule[0][0]
    return [(t, fleet.ttft_p99(t, t + WINDOW_S)) for t in range(int(start), int(until - WINDOW_S), WINDOW_S)]


def test_scales_out_on_tokens_before_ttft_leaves_the_slo(closed_loop, record_property, tmp_path) -> None:
    loop: Loop = closed_loop(service(), RPS, llm=PROFILE, mix=MixShift("code"))
    emulator = loop.emulator
    measured: dict[str, object] = {}

    def note(key: str, value: object) -> None:
        measured[key] = round(value, 3) if isinstance(value, float) else value
        record_property(key, measured[key])
        print(f"{key}: {measured[key]}")

    note("rps", RPS)
    note("code_rps_per_replica", CODE_RPS)
    note("ttft_slo_s", TTFT_SLO_S)

    loop.eventually(lambda: loop.replicas() == (1, 1), 90)
    loop.eventually(lambda: loop.condition("ScalingActive").get("status") == "True", 60)

    source = PrometheusSource(loop.prometheus.url)
    body = service()
    isvc = load({**body, "metadata": {**body["metadata"], "namespace": loop.namespace}})
    edge_query = demand_queries(isvc, DEFAULT_VARIANT, 1.0, EDGE_WINDOW_S).requests
    decisions: list[tuple[float, dict]] = []  # (the emulator's clock at the decision, lastScaling)
    edge: list[tuple[float, float]] = []  # (the emulator's clock, the edge's requests/s over the window)
    replicas: list[tuple[float, tuple[int, int]]] = []

    def watch(seconds: float) -> None:
        """Once a second: replicas and a new lastScaling; every interval, the edge's rate as the operator reads it."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            now, wall = emulator.now, time.time()
            replicas.append((now, loop.replicas()))
            last = loop.status().get("lastScaling")
            if last and (not decisions or decisions[-1][1] != last):
                age = wall - timestamps.parse(last["time"]).timestamp()  # whole seconds: up to 1 s early
                decisions.append((now - max(0.0, age), last))
            if len(replicas) % INTERVAL_S == 0 and (rate := source.value(edge_query)) is not None:
                edge.append((now, rate))
            time.sleep(max(0.0, 1 - (time.time() - wall)))

    # The code mix, flat: one replica serves it, for a full rate window of answered requests (the
    # edge's counter of answers starts with the first one: until a window has passed its rate reads
    # low, and rising).
    serving = emulator.now
    watch(EDGE_WINDOW_S + INTERVAL_S)
    start = emulator.now
    long = long_prompts(tmp_path)
    schedule = [
        (start, MixShift("code", "conv"), MOVE_S),
        (start + MOVE_S + CONV_S, MixShift("conv", long), MOVE_S),
        (start + 2 * MOVE_S + CONV_S, MixShift(long), 0.0),
    ]
    for at, mix, over in schedule:
        watch(max(0.0, at - emulator.now))
        emulator.set_mix(mix, over)
    watch(LONG_S)
    end = emulator.now

    # The first scale-out, on tokens.
    outs = [(t, d) for t, d in decisions if d["toReplicas"] > d["fromReplicas"] and t >= start - INTERVAL_S]
    assert outs, f"no scale-out: decisions {decisions}, replicas {replicas[-1]}; {loop.describe()}"
    decided_at, first = outs[0]
    note("scale_out_reason", first["reason"])
    note("scale_out_after_move_s", decided_at - start)
    assert "tok/s" in first["reason"] and first["fromReplicas"] == 1, first
    # TTFT p99 of the requests that arrived in the window before the decision (all answered by now).
    before = emulator.ttft_p99(decided_at - WINDOW_S, decided_at)
    note("ttft_p99_before_scale_out_s", before)
    assert before is not None and before <= TTFT_SLO_S, (before, TTFT_SLO_S)

    # After it: TTFT p99 within the SLO in most windows.
    windows = [
        (t, emulator.ttft_p99(t, t + WINDOW_S)) for t in range(int(decided_at), int(end - WINDOW_S) + 1, WINDOW_S)
    ]
    within = [p99 is not None and p99 <= TTFT_SLO_S for _, p99 in windows]
    note("ttft_p99_windows_after_s", [round(p99 or 0, 2) for _, p99 in windows])
    note("windows_within_slo", f"{sum(within)}/{len(windows)}")
    assert len(windows) >= 3 and sum(within) >= 0.8 * len(windows), windows
    note("replicas_at_end", loop.replicas())
    note("scale_outs", [(round(t - start), d["fromReplicas"], d["toReplicas"]) for t, d in decisions])

    # Counted in requests, nothing moved: clients sent a flat rate, below what one replica serves of
    # code requests, and the edge read it so (it counts a request when it ends, as ingress-nginx
    # does, so its rate also moves with the requests in flight); an rps rule on it (the HPA's: ceil
    # of rate over capacity x target, none within the tolerance) asks for one replica at every reading.
    offered = [
        emulator.arrived(t - EDGE_WINDOW_S, t) / EDGE_WINDOW_S for t in range(int(start), int(end) + 1, INTERVAL_S)
    ]
    note("offered_rps_min_max", (round(min(offered), 2), round(max(offered), 2)))
    assert all(abs(rate - RPS) <= 0.1 * RPS for rate in offered), offered
    read = [(t, rate) for t, rate in edge if t >= serving + EDGE_WINDOW_S]
    counted = [rate for _, rate in read]
    note("edge_rps_min_max", (round(min(counted), 2), round(max(counted), 2)))
    # The edge counts a request when it ends, so while the mix moves its rate moves with the requests
    # in flight (conversations take seconds each, longer as a replica fills): it reads what ended.
    ended = [emulator.ended(t - EDGE_WINDOW_S, t) / EDGE_WINDOW_S for t, _ in read]
    note("ended_rps_min_max", (round(min(ended), 2), round(max(ended), 2)))
    off = [rate / truth - 1 for (_, rate), truth in zip(read, ended, strict=True) if truth]
    note("edge_vs_ended_max", max(map(abs, off)))
    assert len(off) == len(read) and max(map(abs, off)) <= 0.1, list(zip(counted, ended, strict=True))
    assert max(counted) < CODE_RPS and max(offered) < CODE_RPS
    by_rps = {rps_rule(rate) for rate in counted}
    note("rps_rule_replicas", sorted(by_rps))
    assert by_rps == {1}

    # And one replica would have left the SLO: the same arrivals on one replica all along.
    alone = one_replica(schedule, end)
    over = [t - start for t, p99 in alone if p99 is not None and p99 > TTFT_SLO_S]
    note("one_replica_ttft_p99_windows_s", [round(p99 or 0, 2) for _, p99 in alone])
    note("one_replica_leaves_slo_after_move_s", over[0] if over else None)
    assert over, alone
    assert decided_at - start < over[0], (decided_at - start, over[0])
