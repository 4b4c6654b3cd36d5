"""A fleet of LLM replicas advanced one second at a time by the caller, for live use: the metrics
emulator's LLM mode (sim/emulator.py, LlmEmulator).

One serving/llm.py Engine per pod, as sim/llm.py runs them, so that the emulator and `unbusy
simulate --llm-profile` cannot drift apart. Each second, Poisson arrivals at the caller's rate at
uniform times within the second, sizes drawn from a MixShift that the caller may change while
running (set_mix: a mix, or one that moves from its start to its end over some seconds), each
request sent to a ready pod by nginx's smooth weighted round robin over the shares the routes give
(LiveFleet.routed: by variant weight, then evenly over the variant's ready pods). A request no
ready pod can take, or that the engine refuses (its waiting limit), is refused: the edge's 503.

Per pod, what a Python-backend LLM exporting vLLM's names counts (series.py): prompt and
generation tokens, the TTFT histogram observed at a request's first token, TPOT (once per output
token after the first), end-to-end latency and the request's prompt and generation tokens observed
when it ends, requests running and waiting and the KV cache's use now, with vLLM's bucket bounds.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from unbusy.serving.llm import P99, Engine, LlmProfile, Request
from unbusy.sim.engine import poisson
from unbusy.sim.live import TICK_S, LiveFleet
from unbusy.sim.llm import TOKEN_BUCKETS, TPOT_BUCKETS, TTFT_BUCKETS, Buckets, MixShift

# The Triton vLLM backend's bounds of end-to-end latency (s) (src/utils/metrics.py).
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)
E2E_BUCKETS = (*E2E_BUCKETS, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)


@dataclass(eq=False)  # by identity: a key of the round robin's credits
class LlmPod:
    """One replica's engine and its cumulative series (they only grow, as the engine's do)."""

    variant: str
    engine: Engine
    failed: ClassVar[float] = 0.0  # the engine fails no request: the edge's 500s stay 0
    arrived: int = 0
    served: int = 0  # requests answered in full
    rejected: int = 0  # refused by the engine (its waiting limit, or too big for its cache)
    ttft: Buckets = field(default_factory=lambda: Buckets(TTFT_BUCKETS))
    tpot: Buckets = field(default_factory=lambda: Buckets(TPOT_BUCKETS))
    e2e: Buckets = field(default_factory=lambda: Buckets(E2E_BUCKETS))
    prompts: Buckets = field(default_factory=lambda: Buckets(TOKEN_BUCKETS))
    outputs: Buckets = field(default_factory=lambda: Buckets(TOKEN_BUCKETS))
    before_first: list[Request] = field(default_factory=list)  # admitted, no first token yet
    gpu_busy: float = 0.0  # GPU utilisation (0-1) a DCGM exporter would read over the last tick
    busy_s: float = 0.0  # the engine's busy time at the last tick


class LlmLiveFleet:
    """LLM replicas that follow the pods they are told about; requests arrive at `rps`, Poisson,
    with sizes from `mix`. Deterministic for a seed and the same calls."""

    def __init__(self, profile: LlmProfile, mix: MixShift, seed: int = 0, history_s: int = 600) -> None:
        self.profile = profile
        self.rng = random.Random(seed)  # arrivals
        self.sizes = random.Random(seed + 1)  # request sizes: their own stream, as in sim/llm.py
        self.pods: dict[str, LlmPod] = {}
        self.now = 0.0
        self.history_s = history_s
        self.history: deque[tuple[float, float]] = deque(maxlen=history_s)  # (arrived, refused) per tick
        self.requests: deque[Request] = deque()  # those that arrived over the last history_s seconds
        self._credit: dict[LlmPod | None, float] = {}
        self.set_mix(mix)

    def set_mix(self, mix: MixShift, over_s: float = 0.0) -> None:
        """Sizes from now on: `mix`'s start, moving to its end over `over_s` seconds where it has one."""
        self.mix, self.mix_since, self.mix_over_s = mix, self.now, over_s

    def _pick(self, shares: list[tuple[LlmPod, float]], unrouted: float) -> LlmPod | None:
        """nginx's smooth weighted round robin over the pods' shares; None for the share no ready pod
        takes, and where nothing routes (routes of no weight yet)."""
        options: list[tuple[LlmPod | None, float]] = [*shares, (None, unrouted)]
        self._credit = {key: self._credit.get(key, 0.0) + share for key, share in options if share > 0}
        if not self._credit:
            return None
        chosen = max(self._credit, key=self._credit.__getitem__)
        self._credit[chosen] -= sum(share for _, share in options)
        return chosen

    def tick(self, rps: float, pods: Mapping[str, tuple[str, bool]], weights: Mapping[str, int] | None = None) -> None:
        """One second: `pods` maps each live pod to (variant, ready); arrivals go to the ready ones,
        by `weights` (variant -> weight) where given."""
        self.pods = {
            name: self.pods.get(name) or LlmPod(variant, Engine(self.profile, now=self.now))
            for name, (variant, _) in pods.items()
        }
        ready = [self.pods[name] for name, (_, ok) in sorted(pods.items()) if ok]
        shares, unrouted = LiveFleet.routed(1.0, ready, weights)
        count = poisson(self.rng, rps * TICK_S)
        refused = 0
        for at in sorted(self.now + TICK_S * self.rng.random() for _ in range(count)):
            request = Request(at, *self.mix.draw(self.sizes, at - self.mix_since, self.mix_over_s))
            self.requests.append(request)
            pod = self._pick(shares, unrouted)
            if pod is not None:
                pod.arrived += 1
                pod.engine.advance_to(at)
                if pod.engine.submit(request):
                    pod.before_first.append(request)
                    continue
                pod.rejected += 1
            request.refused = True
            refused += 1
        self.now += TICK_S
        for pod in self.pods.values():
            self._settle(pod)
        self.history.append((float(count), float(refused)))
        while self.requests and self.requests[0].arrival_s < self.now - self.history_s:
            self.requests.popleft()

    def _settle(self, pod: LlmPod) -> None:
        """The pod's engine run up to now: first tokens and finished requests into its series."""
        engine = pod.engine
        engine.advance_to(self.now)
        waiting = []
        for request in pod.before_first:
            if request.ttft_s is None:
                waiting.append(request)
            else:
                pod.ttft.observe(request.ttft_s)
        pod.before_first = waiting
        for request in engine.take_done():
            if request.refused:
                continue  # counted when it was refused
            pod.served += 1
            if request.tpot_s is not None:  # vLLM observes each output token after the first
                pod.tpot.observe(request.tpot_s, request.output - 1)
            pod.e2e.observe(request.done_s - request.arrival_s)
            pod.prompts.observe(request.prompt)
            pod.outputs.observe(request.output)
        pod.gpu_busy = min(1.0, (engine.busy_s - pod.busy_s) / TICK_S) * self.profile.gpu_busy_reading
        pod.busy_s = engine.busy_s

    def rejected_fraction(self, window_s: int = 30) -> float:
        """Requests refused over the last `window_s` seconds, as a fraction of those that arrived."""
        recent = list(self.history)[-window_s:]
        arrived = sum(a for a, _ in recent)
        return sum(r for _, r in recent) / arrived if arrived else 0.0

    def arrived(self, since: float, until: float) -> int:
        """Requests that arrived in [since, until) by the fleet's clock, refused ones included."""
        return sum(1 for r in self.requests if since <= r.arrival_s < until)

    def ended(self, since: float, until: float) -> int:
        """Requests that ended in [since, until) by the fleet's clock, answered (their last token) or
        refused (on arrival): what an edge that counts a request when it ends counts."""
        ends = (r.arrival_s if r.refused else r.done_s for r in self.requests)
        return sum(1 for end in ends if end is not None and since <= end < until)

    def ttft_p99(self, since: float, until: float) -> float | None:
        """TTFT p99 (s) of the requests that arrived in [since, until) by the fleet's clock: one still
        without its first token counts with its wait so far, a refused one as never answered (inf).
        None without arrivals then."""
        waits = sorted(
            math.inf if r.refused else r.ttft_s if r.ttft_s is not None else self.now - r.arrival_s
            for r in self.requests
            if since <= r.arrival_s < until
        )
        return waits[min(len(waits) - 1, math.ceil(P99 * len(waits)) - 1)] if waits else None
