"""One LLM replica's serving model: an iteration-level continuous-batching engine, and its closed forms.

The engine (vLLM's scheduler, and transformers' ContinuousBatchingManager that bench/llmcal runs,
behave alike) runs steps back to back while it holds work. Each step:
- every running sequence past its prefill decodes one token;
- admitted prompts are prefilled in chunks, first come first served, within what is left of the
  step's token budget (max_batched_tokens less the decoding sequences: chunked prefill); the step
  that ends a prompt's prefill yields its first token (TTFT);
- takes t = base + per_prompt_token x prompt tokens prefilled + per_sequence x sequences
  decoding + per_kv_token x KV tokens those sequences attend to (their contexts), the decode terms
  at their own price in a step that also prefills (StepTime).
A waiting request is admitted at a step's start while fewer than max_sequences run and the KV
cache (kv_cache_tokens, allocated in blocks: half a block lost per sequence on average) holds its
prompt beside what the running ones use, less a reserve (kv_reserve) kept for their growth (an
idle engine takes any prompt that fits); first come first served, so the oldest blocks the rest.
When decoding would overflow the cache, the newest running sequence is preempted: its cache is
freed and it waits again at the head of the queue, to be prefilled anew (prompt and the tokens it
generated). A request arriving while max_waiting wait is refused (0:
no limit, as vLLM); so is one whose prompt and output could never fit the cache.

Between events (an arrival, a sequence finishing, the cache filling up) a decode-only engine runs
the same sequences step after step, each step's time growing by per_kv_token x sequences: the
Engine advances such runs in one go, so an hour of a fleet costs a few operations per request.

The closed forms (saturated capacity, token capacities, TTFT p99 at a load fraction) are what the
policy uses; tests/unit/test_llm_serving.py holds them against the engine.

Profiles (fitted by `unbusy calibrate` from bench/llmcal's CSVs) live in serving/profiles/llm-*.yaml.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

PROFILES = Path(__file__).parent / "profiles"
PREFIX = "llm-"
P99 = 0.99
# Bins of a size distribution, narrow in the tail where a p99 is read.
_EDGES = (0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.96, 0.97, 0.98, 0.985, 0.99)
_EDGES = (*_EDGES, 0.9925, 0.995, 0.9975, 0.999, 1)
SHARES = tuple(high - low for low, high in itertools.pairwise(_EDGES))
_MIDDLES = tuple((low + high) / 2 for low, high in itertools.pairwise(_EDGES))


@dataclass(frozen=True)
class StepTime:
    """t(step) = base + per_prompt_token x prefilled + per_sequence x decoding + per_kv_token x attended, in ms.

    A step that prefills (a mixed step) prices its decoding sequences and their KV tokens apart
    (mixed_sequence_ms, mixed_kv_token_ms; None: as a decode-only step): on the H100 runs a sequence
    riding a prefill step cost ~15x what it costs in a decode-only step (bench/llmcal README, the step log)."""

    base_ms: float
    per_prompt_token_ms: float
    per_sequence_ms: float
    per_kv_token_ms: float
    mixed_sequence_ms: float | None = None
    mixed_kv_token_ms: float | None = None

    def decode_costs(self, mixed: bool) -> tuple[float, float]:
        """(ms a decoding sequence, ms a KV token it attends to) in a mixed or a decode-only step."""
        if not mixed:
            return self.per_sequence_ms, self.per_kv_token_ms
        return (
            self.per_sequence_ms if self.mixed_sequence_ms is None else self.mixed_sequence_ms,
            self.per_kv_token_ms if self.mixed_kv_token_ms is None else self.mixed_kv_token_ms,
        )

    def seconds(self, prompt_tokens: float, sequences: float, kv_tokens: float) -> float:
        per_sequence, per_kv_token = self.decode_costs(prompt_tokens > 0)
        return (
            self.base_ms
            + self.per_prompt_token_ms * prompt_tokens
            + per_sequence * sequences
            + per_kv_token * kv_tokens
        ) / 1000


@dataclass(frozen=True)
class LlmProfile:
    """One LLM replica as measured: its step time and the engine's limits, and where it was fitted from."""

    step: StepTime
    kv_cache_tokens: int
    max_batched_tokens: int
    max_sequences: int = 256
    block_size: int = 16  # KV cache allocation unit, in tokens
    max_waiting: int = 0  # requests waiting beyond which new ones are refused; 0: no limit
    # The share of the KV cache a new prompt may not take, kept for the running sequences to grow
    # into: vLLM's watermark (0.01), transformers' FIFO scheduler's safety margin (0.15).
    kv_reserve: float = 0.01
    # Steps a busy engine has already scheduled when a request arrives: with asynchronous batching
    # (transformers' async_batching) the next batch is built while a step runs, so a new request
    # joins the step after it (1); vLLM's default scheduler takes it into the next (0).
    scheduled_ahead: int = 0
    # The mean time a token spends between the engine and the client (the serving process's queues and
    # threads, Triton's decoupled response, HTTP streaming), not in the engine's steps. The first token's
    # is drawn from an exponential of this mean (bench/llmcal's H100 runs: what the measured TTFT exceeds
    # the engine's by, at loads where nothing waits, is spread so: median ~0.7x, p90 ~2.3x, p99 ~4.6x the
    # mean); end to end adds the mean.
    response_ms: float = 0.0
    # What each request running when a first token comes adds to its mean way to the client: the serving
    # process streams every running request's tokens through the same threads (bench/llmcal's H100 runs:
    # the measured TTFT less the engine's grew with the requests running, most in the conversation mix).
    response_per_running_ms: float = 0.0
    gpu_busy_reading: float = 1.0  # GPU utilisation NVML reads while the engine is busy all the time
    ready_seconds: float = 0.0  # start to ready (model load, warm-up)
    measured: str = ""  # provenance: model, device, engine, the CSVs it was fitted from

    def response_s(self, running: float) -> float:
        """The mean way of a first token to the client (s) while `running` requests run."""
        return (self.response_ms + self.response_per_running_ms * running) / 1000

    def to_document(self) -> dict:
        """The YAML document of the profile (camelCase, as the rest of the house's YAML)."""
        return {"llm": _camel(asdict(self))}

    @classmethod
    def from_document(cls, document: dict) -> LlmProfile:
        body = _snake(document.get("llm", document))
        unknown = set(body) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"llm: unknown fields {sorted(unknown)}; allowed: {[f.name for f in fields(cls)]}")
        step = body.pop("step", None)
        if not isinstance(step, dict):
            raise ValueError("llm.step: required, with baseMs, perPromptTokenMs, perSequenceMs, perKvTokenMs")
        return cls(step=StepTime(**step), **body)


def _camel(value):
    if isinstance(value, dict):
        return {_camel_key(k): _camel(v) for k, v in value.items() if v is not None}
    return value


def _camel_key(key: str) -> str:
    first, *rest = key.split("_")
    return first + "".join(part.capitalize() for part in rest)


def _snake(value):
    if isinstance(value, dict):
        return {"".join(f"_{c.lower()}" if c.isupper() else c for c in k): _snake(v) for k, v in value.items()}
    return value


def llm_profile_names() -> list[str]:
    return sorted(path.stem for path in PROFILES.glob(f"{PREFIX}*.yaml"))


def load_llm_profile(name_or_path: str) -> LlmProfile:
    """A named profile (serving/profiles/llm-<name>.yaml; the prefix may be left out) or a YAML file."""
    for path in (PROFILES / f"{name_or_path}.yaml", PROFILES / f"{PREFIX}{name_or_path}.yaml", Path(name_or_path)):
        if path.is_file():
            return LlmProfile.from_document(yaml.safe_load(path.read_text()))
    raise ValueError(f"{name_or_path}: neither an LLM profile ({', '.join(llm_profile_names())}) nor a file")


# --- request sizes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SizeHistogram:
    """How requests' sizes (tokens) spread, as an engine's histogram counted them over a window:
    vllm:request_prompt_tokens and vllm:request_generation_tokens (vLLM's 1-2-5 bounds up to the
    model's context), the TensorRT-LLM backend's nv_llm_input/output_token_len (10 to 1000).

    A histogram keeps no sizes, so its shape is estimated: each finite bucket (low, high] spread
    uniformly, the +Inf bucket (past the last bound L) as L plus an exponential whose mean makes the
    histogram's total what the caller's mean says. What the closed forms take from it is scale-free
    (E[x^2] / E[x]^2, the quantiles over the mean), applied to the caller's mean: the buckets' spread
    overstates both moments alike. On the Azure conv and code mixes binned at vLLM's bounds, E[x^2] / E[x]^2
    reads 1.87 / 1.69 / 1.99 / 5.65 for 1.92 / 1.60 / 1.93 / 5.61 (conv prompt, conv output, code
    prompt, code output; tests/unit/test_llm_serving.py holds it within 6%)."""

    bounds: tuple[float, ...]  # the finite upper bounds, ascending
    counts: tuple[float, ...]  # observations in each bucket alone, +Inf's last: one more than bounds

    @classmethod
    def from_cumulative(cls, rows: Iterable[tuple[float, float]]) -> SizeHistogram | None:
        """From Prometheus's `_bucket` series, (le, observations at or below it) in any order (le
        +Inf as math.inf); None without observations, without the +Inf bucket, or without a finite one."""
        ordered = sorted(rows)
        if len(ordered) < 2 or ordered[-1][0] != math.inf or ordered[-1][1] <= 0:
            return None
        seen, counts = 0.0, []
        for _, cumulative in ordered:
            counts.append(max(0.0, cumulative - seen))  # a reset between two rates: no negative bucket
            seen = max(seen, cumulative)
        return cls(tuple(le for le, _ in ordered[:-1]), tuple(counts))

    def _finite(self) -> list[tuple[float, float, float]]:
        """(observations, low, high) of each finite bucket."""
        return list(zip(self.counts[:-1], (0.0, *self.bounds[:-1]), self.bounds, strict=True))

    def _shape(self, mean: float) -> tuple[float, float, float]:
        """(E[x], E[x^2] of the estimated shape, the mean of its exponential past the last bound)."""
        total, finite, last = sum(self.counts), self._finite(), self.bounds[-1]
        first = sum(c * (low + high) / 2 for c, low, high in finite)
        second = sum(c * (low * low + low * high + high * high) / 3 for c, low, high in finite)
        tail = self.counts[-1]
        beyond = max(0.0, (mean * total - first) / tail - last) if tail > 0 else 0.0
        first += tail * (last + beyond)
        second += tail * (last * last + 2 * last * beyond + 2 * beyond * beyond)
        return first / total, second / total, beyond

    def squared_ratio(self, mean: float) -> float:
        """E[x^2] / E[x]^2 (1 + the squared coefficient of variation) of sizes of mean `mean`."""
        first, second, _ = self._shape(mean)
        return second / (first * first) if first > 0 else 2.0

    def quantiles(self, mean: float, qs: Iterable[float]) -> tuple[float, ...]:
        """The sizes at quantiles `qs` of sizes of mean `mean`: linear within a finite bucket (as
        histogram_quantile), the exponential past the last bound, scaled to `mean`."""
        first, _, beyond = self._shape(mean)
        scale = mean / first if first > 0 else 1.0
        total, finite = sum(self.counts), self._finite()
        found = []
        for q in qs:
            rank, seen, value = q * total, 0.0, None
            for count, low, high in finite:
                if count > 0 and seen + count >= rank:
                    value = low + (high - low) * (rank - seen) / count
                    break
                seen += count
            if value is None:  # in the +Inf bucket
                past = (rank - seen) / self.counts[-1]
                value = self.bounds[-1] - beyond * math.log(max(1e-12, 1 - past))
            found.append(value * scale)
        return tuple(found)


@dataclass(frozen=True)
class TokenMix:
    """What the closed forms need of a request mix: its moments in prompt (p) and output (o) tokens.

    From the sizes themselves (from_sizes) or, where only the means are known (what the operator
    reads from the token counters), from the means with p and o spread as exponentials would be, or
    as the engine's size histograms show where it exports them (p and o then taken as independent:
    the histograms are each one's own).
    """

    prompt: float  # E[p]
    output: float  # E[o]
    prompt_x_output: float  # E[p o]
    output_squared: float  # E[o^2]
    prompt_squared: float  # E[p^2]
    prompts: tuple[float, ...]  # the prompt at the middle of each bin of SHARES, for the TTFT tail

    @classmethod
    def from_sizes(cls, sizes: list[tuple[int, int]]) -> TokenMix:
        count = len(sizes)
        prompts = sorted(p for p, _ in sizes)
        return cls(
            prompt=sum(prompts) / count,
            output=sum(o for _, o in sizes) / count,
            prompt_x_output=sum(p * o for p, o in sizes) / count,
            output_squared=sum(o * o for _, o in sizes) / count,
            prompt_squared=sum(p * p for p in prompts) / count,
            prompts=tuple(float(prompts[min(count - 1, int(q * count))]) for q in _MIDDLES),
        )

    @classmethod
    def from_means(
        cls, prompt: float, output: float, prompts: SizeHistogram | None = None, outputs: SizeHistogram | None = None
    ) -> TokenMix:
        """The mix of these means, spread as `prompts` and `outputs` show (None: as an exponential)."""
        spread = (
            tuple(-prompt * math.log(1 - q) for q in _MIDDLES)
            if prompts is None
            else prompts.quantiles(prompt, _MIDDLES)
        )
        prompt_ratio = 2.0 if prompts is None else prompts.squared_ratio(prompt)
        output_ratio = 2.0 if outputs is None else outputs.squared_ratio(output)
        return cls(
            prompt, output, prompt * output, output_ratio * output * output, prompt_ratio * prompt * prompt, spread
        )


def _work_s(profile: LlmProfile, mix: TokenMix, mixed_share: float) -> float:
    """The seconds of steps one request costs beyond the steps' base: its prefill, and its share of
    o - 1 decode steps (a sequence, and its context of p + j tokens in the j-th), `mixed_share` of
    them in steps that also prefill (priced as such)."""
    step = profile.step
    decode_steps = max(mix.output - 1, 0.0)
    attended = mix.prompt_x_output - mix.prompt + (mix.output_squared - mix.output) / 2
    decode = 0.0
    for share, mixed in ((mixed_share, True), (1 - mixed_share, False)):
        per_sequence, per_kv_token = step.decode_costs(mixed)
        decode += share * (per_sequence * decode_steps)
        decode += share * (per_kv_token * attended)
    return (step.per_prompt_token_ms * mix.prompt + decode) / 1000


def _mixed_share(profile: LlmProfile, mix: TokenMix, requests_per_step: float) -> float:
    """The share of steps that prefill, where each step takes `requests_per_step` new requests' prompts
    within the token budget."""
    return min(1.0, requests_per_step * mix.prompt / profile.max_batched_tokens)


def concurrency_limit(profile: LlmProfile, mix: TokenMix) -> float:
    """The most sequences that run at once: max_sequences, or what the KV cache holds of the mix
    (a sequence's footprint weighted by how long it stays: E[o (p + o/2)] / E[o], plus half a block)."""
    footprint = (mix.prompt_x_output + mix.output_squared / 2) / mix.output + profile.block_size / 2
    return min(float(profile.max_sequences), profile.kv_cache_tokens * (1 - profile.kv_reserve) / footprint)


def step_s(profile: LlmProfile, mix: TokenMix, rate: float) -> float:
    """The mean step time at `rate` requests/s: t = base + rate x t x work (each step carries its
    share of the requests in flight), so t = base / (1 - rate x work); inf at or past saturation.
    The work depends on the share of steps that prefill (rate x t prompts a step), so t is iterated."""
    base = step = profile.step.base_ms / 1000
    for _ in range(20):
        load = rate * _work_s(profile, mix, _mixed_share(profile, mix, rate * step))
        if load >= 1:
            return math.inf
        step = base / (1 - load)
    return step


def saturated_rps(profile: LlmProfile, mix: TokenMix) -> float:
    """Requests/s a replica serves at most: as many sequences as fit run (n = rate x t x E[o]), or
    the step's token budget fills (rate x t x (E[p] + E[o]) = max_batched_tokens)."""
    base = profile.step.base_ms / 1000
    seats = concurrency_limit(profile, mix)
    budget = profile.max_batched_tokens
    # Seats full: a step takes seats / E[o] new requests, and carries seats x (E[p] + E[o]) / E[o] tokens;
    # where that fills the budget, the budget binds first, and every step prefills.
    requests_per_step = seats / max(mix.output, 1.0)
    work = _work_s(profile, mix, _mixed_share(profile, mix, requests_per_step))
    by_seats = seats / (base * mix.output + seats * work)
    if requests_per_step * (mix.prompt + mix.output) < budget:
        return by_seats
    by_budget = budget / (base * (mix.prompt + mix.output) + budget * _work_s(profile, mix, 1.0))
    return min(by_seats, by_budget)


def token_capacity(profile: LlmProfile, mix: TokenMix) -> tuple[float, float]:
    """(prompt tokens/s, output tokens/s) of a saturated replica in the API's work model, where
    prompt_rate / P + output_rate / O = 1 at saturation: P is pure prefill (1 / per_prompt_token),
    O what the rest of the time yields for this mix. Exact for `mix`, an estimate for others."""
    rate = saturated_rps(profile, mix)
    prefill_share = rate * mix.prompt * profile.step.per_prompt_token_ms / 1000
    prompt = 1000 / profile.step.per_prompt_token_ms if profile.step.per_prompt_token_ms > 0 else math.inf
    return prompt, rate * mix.output / max(1e-9, 1 - prefill_share)


def _erlang_c(servers: float, offered: float) -> float:
    """Probability that an arrival waits, in an M/M/c queue with c = servers (rounded down)."""
    c = max(1, int(servers))
    if offered >= c:
        return 1.0
    blocked = 1.0  # Erlang B by its recurrence, stable for hundreds of servers
    for k in range(1, c + 1):
        blocked = offered * blocked / (k + offered * blocked)
    return blocked / (1 - offered / c * (1 - blocked))


def _quantile(points: list[tuple[float, float]], q: float) -> float:
    """The q-quantile of a distribution given as (value, weight) points."""
    points = sorted(points)
    total, seen = sum(w for _, w in points), 0.0
    for value, weight in points:
        seen += weight
        if seen >= q * total:
            return value
    return points[-1][0]


def _exponential(mean: float, weight: float = 1.0) -> list[tuple[float, float]]:
    """An exponential of `mean` as (value, weight) points at the middles of the bins of SHARES."""
    return [(-mean * math.log(1 - q), weight * share) for q, share in zip(_MIDDLES, SHARES, strict=True)]


def _coarse(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """A distribution of (value, weight) points as the value at the middle of each bin of SHARES, so
    that convolving it with another stays small."""
    total = sum(w for _, w in points)
    return [(_quantile(points, q), share * total) for q, share in zip(_MIDDLES, SHARES, strict=True)]


def ttft_p99_s(profile: LlmProfile, mix: TokenMix, fraction: float) -> float:
    """TTFT p99 at `fraction` of saturated_rps, inf at or past it. A request's TTFT is the sum of:
    - the rest of the step under way (at most a mean step) and the steps already scheduled
      (scheduled_ahead), its prefill: its own tokens, and the steps that carry its chunks (each a
      mean step without its prefill), and the way to the client (exponential, of mean response_ms and
      response_per_running_ms for each sequence running);
    - the prompts ahead of it in the prefill budget, an M/G/1 queue of such prefills: no wait with
      probability 1 - load, else an exponential wait of the queue's mean (the rest of the prefill
      under way, length-biased, over 1 - load);
    - past what the KV cache and max_sequences hold at once, the wait for a seat: M/M/c with
      c = concurrency_limit, each seat held E[o] steps of the mean step at this rate (its p99).
    The p99 of the first two together is read from the mix's prompt distribution (TokenMix.prompts).
    Against the engine (tests/unit/test_llm_serving.py) it read 0.78-1.03 of the engine's p99 from
    0.2 to 0.8 of capacity on the conv and code mixes, 0.56-0.92 at 0.9."""
    if fraction >= 1:
        return math.inf
    capacity = saturated_rps(profile, mix)
    rate = fraction * capacity
    per_token = profile.step.per_prompt_token_ms / 1000
    step = step_s(profile, mix, rate)
    budget = max(1.0, profile.max_batched_tokens - rate * step * mix.output)
    decode = step * (1 - rate * mix.prompt * per_token)  # a step's time less its prefill

    def serve(prompt: float) -> float:
        """The prefill budget's time for one prompt: its tokens, and the steps that carry them."""
        return math.ceil(prompt / budget) * decode + prompt * per_token

    served = [(serve(p), share) for p, share in zip(mix.prompts, SHARES, strict=True)]
    mean = sum(s * share for s, share in served)
    busy = min(rate * mean, 0.999)  # of the time, a prompt is being prefilled
    # The step under way and those already scheduled, its prefill, and the way to the client.
    before = step * (1 + profile.scheduled_ahead)
    running = rate * mix.output * step  # sequences running (seats in use)
    response = _exponential(profile.response_s(running))
    own = _coarse([(before + s + r, share * rshare) for s, share in served for r, rshare in response])
    rest = sum(s * s * share for s, share in served) / (2 * mean)  # of the prefill under way (length-biased)
    waited = rest / (1 - busy)  # M/G/1's mean wait of a request that waits
    ahead = [(0.0, 1 - busy), *_exponential(waited, busy)]
    prefill = _quantile([(x + y, wx * wy) for x, wx in own for y, wy in ahead], P99)
    seats = concurrency_limit(profile, mix)
    waits = _erlang_c(seats, running)
    seat = math.log(waits / (1 - P99)) * mix.output * step / (seats - running) if waits > 1 - P99 else 0.0
    return prefill + seat


def fraction_within(profile: LlmProfile, mix: TokenMix, ttft_slo_s: float) -> float:
    """The highest load fraction (of saturated_rps) whose TTFT p99 (ttft_p99_s) meets `ttft_slo_s`,
    to a thousandth; 0 when even an idle replica misses it. ttft_p99_s grows with the fraction."""
    low, high = 0.0, 1.0
    if ttft_p99_s(profile, mix, 0.001) > ttft_slo_s:
        return 0.0
    while high - low > 0.001:
        middle = (low + high) / 2
        low, high = (middle, high) if ttft_p99_s(profile, mix, middle) <= ttft_slo_s else (low, middle)
    return low


# --- the engine ---------------------------------------------------------------------------------


@dataclass
class Request:
    arrival_s: float
    prompt: int
    output: int
    first_token_s: float | None = None
    done_s: float | None = None
    refused: bool = False
    # while running
    to_prefill: int = 0  # prompt tokens (recomputed ones included after a preemption) not yet prefilled
    generated: int = 0
    finish_at: int = 0  # the engine's decode count at which it has generated its output
    preempted: int = 0
    running_at_first_token: int = 0  # requests the engine ran when it yielded the first token

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_s is None else self.first_token_s - self.arrival_s

    @property
    def tpot_s(self) -> float | None:
        if self.done_s is None or self.output < 2:
            return None
        return (self.done_s - self.first_token_s) / (self.output - 1)


@dataclass
class Engine:
    """One replica's engine, advanced by the caller's clock (advance_to), fed by submit."""

    profile: LlmProfile
    now: float = 0.0
    waiting: deque[Request] = field(default_factory=deque)
    prefilling: list[Request] = field(default_factory=list)
    decoding: dict[int, Request] = field(default_factory=dict)  # by id, oldest admitted first
    finishing: list[tuple[int, int]] = field(default_factory=list)  # heap of (finish_at, id)
    decoded: int = 0  # decode steps run so far
    context: int = 0  # tokens in the decoding sequences' contexts (what a decode step attends to)
    prefill_held: int = 0  # KV tokens held by the prefilling prompts
    done: list[Request] = field(default_factory=list)  # finished since the caller last took them
    # cumulative counters, as the engine exports them
    prompt_tokens: int = 0  # of the requests that got their first token (a recompute is not counted again)
    output_tokens: int = 0
    preemptions: int = 0
    busy_s: float = 0.0
    last_start: float = 0.0  # when the last step run started
    seed: int = 0  # of the draws of the first tokens' way to the client
    _draws: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._draws = random.Random(self.seed)

    @property
    def running(self) -> int:
        return len(self.prefilling) + len(self.decoding)

    @property
    def kv_used(self) -> float:
        """KV tokens allocated: contexts, prompts being prefilled, half a block lost per sequence."""
        return self.context + self.prefill_held + self.running * self.profile.block_size / 2

    @property
    def kv_fraction(self) -> float:
        return min(1.0, self.kv_used / self.profile.kv_cache_tokens)

    def submit(self, request: Request) -> bool:
        """A request arriving at request.arrival_s (>= the engine's last advance): queued, or refused."""
        profile = self.profile
        too_big = request.prompt + request.output + profile.block_size > profile.kv_cache_tokens
        if too_big or (profile.max_waiting and len(self.waiting) >= profile.max_waiting):
            request.refused = True
            self.done.append(request)
            return False
        request.to_prefill = request.prompt
        self.waiting.append(request)
        return True

    def advance_to(self, until: float) -> None:
        """Run steps until one ends at or after `until` (a step under way is not cut), or idle until then."""
        while self.now < until:
            self._admit()
            if not self.prefilling and not self.decoding:
                self.now = until
                return
            if self.prefilling:
                self._step()
            else:
                self._decode_run(until)

    # --- inside a step --------------------------------------------------------------------------

    def _admit(self) -> None:
        profile = self.profile
        room = profile.kv_cache_tokens * (1 - profile.kv_reserve)
        while self.waiting and self.running < profile.max_sequences:
            head = self.waiting[0]
            if self._scheduled_past(head):
                return
            need = self.kv_used + head.to_prefill + profile.block_size / 2
            # The reserve is for running sequences to grow into: an idle engine takes whatever fits.
            if need > room and (self.running or need > profile.kv_cache_tokens):
                return
            self.waiting.popleft()
            self.prefilling.append(head)
            self.prefill_held += head.to_prefill

    def _scheduled_past(self, request: Request) -> bool:
        """Whether a busy engine had already built its next step when `request` arrived."""
        return bool(self.profile.scheduled_ahead and self.running and request.arrival_s > self.last_start)

    def _make_room(self) -> None:
        """Preempt the newest decoding sequences until one more token each fits the cache."""
        while self.decoding and self.kv_used + len(self.decoding) > self.profile.kv_cache_tokens:
            newest = self.decoding.pop(next(reversed(self.decoding)))
            newest.generated = newest.output - (newest.finish_at - self.decoded)
            self.context -= newest.prompt + newest.generated
            newest.to_prefill = newest.prompt + newest.generated
            newest.preempted += 1
            self.preemptions += 1
            self.waiting.appendleft(newest)

    def _step(self) -> None:
        """One step with prefill work in it."""
        self._make_room()
        budget = max(0, self.profile.max_batched_tokens - len(self.decoding))
        prefilled, completed = 0, []
        for request in self.prefilling:
            chunk = min(request.to_prefill, budget - prefilled)
            request.to_prefill -= chunk
            prefilled += chunk
            if request.to_prefill == 0:
                completed.append(request)
            if prefilled >= budget:
                break
        took = self.profile.step.seconds(prefilled, len(self.decoding), self.context)
        self.last_start = self.now
        self.now += took
        self.busy_s += took
        self._decoded(1)
        for request in completed:
            self.prefilling.remove(request)
            self.prefill_held -= request.prompt + request.generated
            if request.first_token_s is None:  # a recomputed sequence yielded its first token before
                request.running_at_first_token = self.running
                request.first_token_s = self.now + self._draws.expovariate(1.0) * self.response_s()
                request.generated = 1
                self.output_tokens += 1
                self.prompt_tokens += request.prompt
            if request.generated >= request.output:
                self._finish(request)
                continue
            request.finish_at = self.decoded + request.output - request.generated
            self.decoding[id(request)] = request
            heapq.heappush(self.finishing, (request.finish_at, id(request)))
            self.context += request.prompt + request.generated

    def _decode_run(self, until: float) -> None:
        """Decode-only steps, as many as run before the next event, in one go."""
        self._make_room()
        n = len(self.decoding)
        step = self.profile.step
        while self.finishing and not self._current(*self.finishing[0]):
            heapq.heappop(self.finishing)
        runs = self.finishing[0][0] - self.decoded
        free = self.profile.kv_cache_tokens - self.kv_used
        runs = max(1, min(runs, int(free // n)))
        first = step.seconds(0, n, self.context)  # the first step; each next one attends n more tokens
        growth = step.per_kv_token_ms * n / 1000
        left = until - self.now
        if growth > 0:  # the fewest steps k with k first + growth k (k - 1) / 2 >= left
            half = growth / 2
            reach = math.ceil((-(first - half) + math.sqrt((first - half) ** 2 + 4 * half * left)) / (2 * half))
        else:
            reach = math.ceil(left / first)
        runs = max(1, min(runs, reach))
        if self.waiting and self._scheduled_past(self.waiting[0]):
            runs = 1  # the step after this one may take it
        took = runs * first + growth * runs * (runs - 1) / 2
        self.last_start = self.now + took - (first + growth * (runs - 1))
        self.now += took
        self.busy_s += took
        self._decoded(runs)

    def _decoded(self, steps: int) -> None:
        """`steps` decode steps ran for the decoding sequences: their tokens, and those that finished."""
        n = len(self.decoding)
        self.decoded += steps
        self.context += n * steps
        self.output_tokens += n * steps
        while self.finishing and self.finishing[0][0] <= self.decoded:
            finish_at, key = heapq.heappop(self.finishing)
            if not self._current(finish_at, key):
                continue
            request = self.decoding.pop(key)
            self.context -= request.prompt + request.output
            request.generated = request.output
            self._finish(request)

    def _current(self, finish_at: int, key: int) -> bool:
        """Whether a finishing entry is still its sequence's: one preempted since left a stale entry
        behind (and, readmitted, a new one)."""
        request = self.decoding.get(key)
        return request is not None and request.finish_at == finish_at

    def _finish(self, request: Request) -> None:
        request.done_s = self.now + self.profile.response_ms / 1000
        self.done.append(request)

    def response_s(self) -> float:
        """The mean way of a first token to the client now: response_ms, and response_per_running_ms for
        each request running."""
        return self.profile.response_s(self.running)

    def take_done(self) -> list[Request]:
        done, self.done = self.done, []
        return done
