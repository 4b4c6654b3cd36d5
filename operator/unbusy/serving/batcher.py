"""One Triton dynamic batcher at a steady rate, request by request: its latencies and 503s.

The fleet simulator (engine.py) moves whole seconds of traffic as a fluid. Within a second,
Poisson arrivals bunch up, and a batcher near its capacity builds short queues: those set p99
from about 0.7x of capacity and the first 503s before the mean load reaches it (the real
Triton rejected 2.2% of ResNet-50's requests at 1.0x, bench/data). So, whenever a replica has
no backlog carried over (with a bounded queue, past capacity too), the engine takes its
latencies, rejections and pending count from this event simulation of the batcher at the
replica's rate, following Triton's rules:

- an idle instance starts a batch once the saturated batch is queued or the oldest request
  has waited max_queue_delay; a busy one takes the oldest queued requests as soon as it is free;
- a request that finds max_queue requests waiting is rejected;
- the serving process stalls now and then, each stall pauses.ms long: at Poisson times
  (pauses.per_second; no batch starts during such a stall, and a batch that runs into one ends
  that much later), and in a share of its executions (pauses.per_execution: that batch ends that
  much later), so that a replica running few, large batches stalls less often than one running
  many small ones.

Results are cached per load level (a hundredth of capacity up to 1.2x, a twentieth beyond), so
a long trace costs a few dozen of these runs per model.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import random
from dataclasses import dataclass

# Quantile bins of the latency distribution the engine records: each is represented by the
# latency at its middle, with its width as weight. Narrow bins centred on 0.5 and 0.99 make the
# recorded p50 and p99 those of the batcher.
_EDGES = (0, 0.15, 0.3, 0.45, 0.55, 0.7, 0.82, 0.9, 0.95, 0.975, 0.9875, 0.9925, 0.996, 0.999, 1)
SHARES = tuple(high - low for low, high in itertools.pairwise(_EDGES))
_MIDDLES = tuple((low + high) / 2 for low, high in itertools.pairwise(_EDGES))
_P99 = min(range(len(_MIDDLES)), key=lambda i: abs(_MIDDLES[i] - 0.99))
LEVELS = 100  # load levels per capacity
_FINE_UP_TO = 120
# Enough simulated time for a steady tail at high rates, enough requests at low ones.
_MIN_SECONDS, REQUESTS = 20.0, 20_000


@dataclass(frozen=True)
class Batcher:
    saturated_batch: int
    max_queue_delay_s: float
    max_queue: int  # 0: unbounded
    floor_s: float
    base_s: float
    per_item_s: float
    stalls_per_second: float
    stall_s: float
    stalls_per_execution: float = 0.0

    def service_s(self, batch: int) -> float:
        return max(self.floor_s, self.base_s + self.per_item_s * batch)


@dataclass(frozen=True)
class SteadyState:
    rate: float  # arrivals per second
    latencies_s: tuple[float, ...]  # at the middle of each bin of SHARES
    rejected: float  # fraction of arrivals
    mean_wait_s: float  # from arrival to the start of the request's batch

    @property
    def p99_s(self) -> float:
        return self.latencies_s[_P99]

    @property
    def served_rps(self) -> float:
        return self.rate * (1 - self.rejected)


def steady_state(batcher: Batcher, rate: float, requests: int = REQUESTS, seed: int = 1) -> SteadyState:
    """Poisson arrivals at `rate` through `batcher` (event by event, at least `requests` of them)."""
    rng = random.Random(seed)
    span = max(_MIN_SECONDS * requests / REQUESTS, requests / rate)
    arrivals, t = [], rng.expovariate(rate)
    while t < span:
        arrivals.append(t)
        t += rng.expovariate(rate)
    stalls, t = [], 0.0
    while batcher.stalls_per_second > 0 and t < 2 * span:
        t += rng.expovariate(batcher.stalls_per_second)
        stalls.append(t)
    # Which executions stall: a generator of its own, so that the arrivals do not depend on it.
    executions = random.Random(seed + 1) if batcher.stalls_per_execution > 0 else None
    limit = batcher.max_queue or len(arrivals)
    most = batcher.saturated_batch
    queue: list[float] = []  # admitted, not yet in a batch, oldest first (from `head`)
    head = taken = rejected = 0
    latencies: list[float] = []
    waited = free = 0.0
    stall = 0  # index of the first stall that may still matter

    def admit(until: float) -> None:
        """Arrivals up to `until` join the queue while it has room; the rest are rejected."""
        nonlocal taken, rejected
        end = bisect.bisect_right(arrivals, until, lo=taken)
        room = max(0, limit - (len(queue) - head))
        queue.extend(arrivals[taken : taken + min(room, end - taken)])
        rejected += max(0, end - taken - room)
        taken = end

    while taken < len(arrivals) or head < len(queue):
        if head == len(queue):  # idle and empty: the next arrival opens the queue
            queue.append(arrivals[taken])
            taken += 1
        start = max(free, queue[head] + batcher.max_queue_delay_s)
        # An idle instance does not wait for the delay once a full batch is there.
        if head + most <= len(queue):
            start = free
        else:
            full_at = bisect.bisect_right(arrivals, start, lo=taken)
            if taken + (most - (len(queue) - head)) <= full_at:
                start = max(free, arrivals[taken + most - (len(queue) - head) - 1])
        while stall < len(stalls) and stalls[stall] + batcher.stall_s < start:
            stall += 1
        if stall < len(stalls) and stalls[stall] <= start:
            start = stalls[stall] + batcher.stall_s
        admit(start)
        batch = queue[head : head + most]
        head += len(batch)
        end = start + batcher.service_s(len(batch))
        if stall < len(stalls) and start < stalls[stall] < end:
            end += batcher.stall_s
        if executions and executions.random() < batcher.stalls_per_execution:
            end += batcher.stall_s
        latencies.extend(end - arrived for arrived in batch)
        waited += sum(start - arrived for arrived in batch)
        free = end
        admit(end)
    latencies.sort()
    answered = len(latencies)
    return SteadyState(
        rate=rate,
        latencies_s=tuple(latencies[min(answered - 1, int(q * answered))] for q in _MIDDLES),
        rejected=rejected / len(arrivals),
        mean_wait_s=waited / answered,
    )


@functools.lru_cache(maxsize=4096)
def at_level(batcher: Batcher, capacity_rps: float, level: int) -> SteadyState:
    """The steady state at `level` hundredths of `capacity_rps` (cached: traces revisit levels)."""
    return steady_state(batcher, capacity_rps * level / LEVELS)


def level(rate: float, capacity_rps: float) -> int:
    """The load level nearest `rate`: hundredths of capacity up to 1.2x, twentieths past it
    (where the queue is full and only the refused share moves with the rate)."""
    hundredths = rate / capacity_rps * LEVELS
    if hundredths <= _FINE_UP_TO:
        return max(1, round(hundredths))
    return 5 * round(hundredths / 5)
