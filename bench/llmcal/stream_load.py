"""Streaming LLM load on Triton's generate_stream endpoint (SSE) from several processes, open or closed loop.

Open loop: each of N worker processes draws its own Poisson schedule at rate/N (bench/calibrate/loadgen.py's
poisson_schedule) and sends each request at its scheduled time whatever happened to the earlier ones; a
request records how late it left. Each request's (prompt, output) sizes are drawn from the mix's pairs. Closed
loop: C requests in flight at all times. A segment ends at `seconds` plus at most `drain` seconds: what is still
streaming then is cancelled (its connection closed, which Triton passes on to the model as a cancellation) and
counted unfinished.

Per request a worker records: when it was scheduled and how late it left, its sizes, the outcome, the time to the
first streamed token, to the last, and the tokens it got; per second of the segment: output tokens streamed and
prompt tokens whose prefill completed (counted at the first token).
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import time
from dataclasses import dataclass

import aiohttp
from loadgen import LoadGenerator, poisson_schedule  # bench/calibrate: the harness puts it on the path


@dataclass(frozen=True)
class Result:
    scheduled: float  # seconds from the segment's start
    lag: float  # seconds between the scheduled and the actual send
    prompt_tokens: int
    max_tokens: int
    generated: int
    ttft: float | None  # seconds from send to the first streamed token
    e2e: float | None  # seconds from send to the last token (ok requests)
    outcome: str  # ok | refused | unfinished | error
    detail: str = ""
    ingress: float | None = None  # seconds from send to the model's execute() (Unix clocks of one machine)
    engine_ttft: float | None = None  # seconds from execute() to the first token reaching the model's collector


async def _stream(
    session, url: str, prompt: int, output: int, seed: int, origin: float, bins: dict, timing: dict
) -> tuple:
    """One request: (generated, ttft, e2e, outcome, detail); streamed tokens go to bins[second] = [prompt, output];
    timing gets the way in and the engine's part of the TTFT (ingress, engine) where the model reports its times."""
    sent, sent_unix = time.perf_counter(), time.time()
    body = {"prompt_tokens": prompt, "max_tokens": output, "seed": seed}
    generated, ttft = 0, None
    try:
        async with session.post(url, json=body) as response:
            if response.status != 200:
                text = (await response.text())[:200]
                return generated, ttft, None, "refused" if "queue full" in text else "error", text
            async for line in response.content:
                if not line.startswith(b"data:"):
                    continue
                event = json.loads(line[5:])
                if "error" in event:
                    text = str(event["error"])[:200]
                    return generated, ttft, None, "refused" if "queue full" in text else "error", text
                now = time.perf_counter()
                n = event["n"][0] if isinstance(event["n"], list) else event["n"]
                second = bins.setdefault(int(now - origin), [0, 0])
                if ttft is None:
                    ttft = now - sent
                    received, collected = event.get("engine_times") or (None, None)
                    if received is not None:
                        timing.update(ingress=received - sent_unix, engine=collected - received)
                    second[0] += prompt
                second[1] += n - generated
                generated = n
            if generated >= output:
                return generated, ttft, time.perf_counter() - sent, "ok", ""
            return generated, ttft, None, "error", f"stream ended after {generated} of {output} tokens"
    except asyncio.CancelledError:
        return generated, ttft, None, "unfinished", ""
    except (TimeoutError, aiohttp.ClientError, ValueError) as error:
        return generated, ttft, None, "error", repr(error)[:200]


async def _segment(url, mode, phases, concurrency, seconds, drain, start_at, seed, pairs) -> tuple[list, dict]:
    rng = random.Random(seed)
    origin = start_at - time.time() + time.perf_counter()  # the segment's start on this process's clock
    results: list[Result] = []
    bins: dict[int, list[int]] = {}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:

        async def one(at: float) -> None:
            prompt, output = rng.choice(pairs)
            lag = time.perf_counter() - (origin + at)
            timing: dict[str, float] = {}
            generated, ttft, e2e, outcome, detail = await _stream(
                session, url, prompt, output, rng.randrange(1 << 30), origin, bins, timing
            )
            results.append(
                Result(
                    at, lag, prompt, output, generated, ttft, e2e, outcome, detail,
                    timing.get("ingress"), timing.get("engine"),
                )
            )  # fmt: skip

        spawned: list[asyncio.Task] = []
        if mode == "open":
            for at in poisson_schedule(phases, rng):
                wait = origin + at - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                spawned.append(asyncio.create_task(one(at)))
        else:

            async def user() -> None:
                while (at := time.perf_counter() - origin) < seconds:
                    await one(at)

            await asyncio.sleep(max(0.0, origin - time.perf_counter()))
            spawned = [asyncio.create_task(user()) for _ in range(concurrency)]
        end = origin + seconds + drain
        if spawned:  # a short, slow phase may draw no arrival for this process
            await asyncio.wait(spawned, timeout=max(0.0, end - time.perf_counter()))
        for task in spawned:
            task.cancel()
        await asyncio.gather(*spawned, return_exceptions=True)
    return results, bins


def _worker(url: str, pairs: list[tuple[int, int]], inbox) -> None:
    async def serve() -> None:
        while (message := await asyncio.to_thread(inbox.recv)) is not None:
            gc.disable()  # a full collection over thousands of live streams would stall this loop for tens of ms
            results, bins = await _segment(url, *message, pairs)
            inbox.send(([tuple(r.__dict__.values()) for r in results], bins))
            gc.enable()
            gc.collect()

    asyncio.run(serve())


class StreamLoad(LoadGenerator):
    """N worker processes streaming from one Triton model; use as a context manager."""

    def __init__(self, url: str, processes: int, pairs: list[tuple[int, int]]) -> None:
        super().__init__(url, processes)
        self.pairs = pairs

    def _worker(self) -> tuple:
        return _worker, (self.url, self.pairs)

    def _run(self, messages: list[tuple]) -> tuple[list[Result], dict[int, list[int]]]:
        for pipe, message in zip(self.pipes, messages, strict=True):
            pipe.send(message)
        results, bins = [], {}
        for pipe in self.pipes:
            rows, worker_bins = pipe.recv()
            results += [Result(*row) for row in rows]
            for second, (prompt, output) in worker_bins.items():
                total = bins.setdefault(second, [0, 0])
                total[0] += prompt
                total[1] += output
        return sorted(results, key=lambda r: r.scheduled), bins

    def open_loop(self, phases, seconds, drain, start_at, seed):
        """Poisson arrivals through `phases` of (seconds, rate per second) from `start_at` (epoch seconds)."""
        shares = [(length, rate / self.processes) for length, rate in phases]
        return self._run(
            [("open", shares, 0, seconds, drain, start_at, seed * 1000 + i) for i in range(self.processes)]
        )

    def closed_loop(self, concurrency, seconds, drain, start_at, seed):
        """`concurrency` requests in flight at all times, spread over the workers."""
        shares = [concurrency // self.processes + (i < concurrency % self.processes) for i in range(self.processes)]
        return self._run([("closed", [], c, seconds, drain, start_at, seed * 1000 + i) for i, c in enumerate(shares)])
