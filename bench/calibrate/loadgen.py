"""Load on Triton's HTTP API from several processes: an open-loop Poisson schedule or a closed loop.

Open loop: each of N worker processes draws its own Poisson schedule at rate/N (the union of
independent Poisson processes is Poisson at the summed rate) and sends each request at its
scheduled time, whatever happened to the earlier ones. A worker that cannot keep up sends late
instead of silently bunching: every request records how late it left (lag), and a step whose
sends were late reports it (`Step.late_pct`, `Step.lag_p99_ms`) so the harness can flag it.

Closed loop: C connections in all, each sending its next request when the last one is answered;
the served rate at enough concurrency is the server's capacity.

Workers are started once and kept (their keep-alive connections with them); a step is a message
to each, and each sends back one record per request: (scheduled s, lag s, status, latency s).
"""

from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing as mp
import random
import time
from dataclasses import dataclass

import aiohttp

# A send this much behind its scheduled time counts as late.
LATE_S = 0.005
BODY = json.dumps({"inputs": [{"name": "seed", "shape": [1, 1], "datatype": "INT32", "data": [1]}]})
HEADERS = {"Content-Type": "application/json"}
# Status of a request that got no HTTP answer (connection error, timeout).
NO_ANSWER = 0


@dataclass(frozen=True)
class Record:
    scheduled: float  # seconds from the step's start
    lag: float  # seconds between the scheduled and the actual send
    status: int
    latency: float  # seconds from send to the full answer


async def _send(session: aiohttp.ClientSession, url: str) -> tuple[int, float]:
    start = time.perf_counter()
    try:
        async with session.post(url, data=BODY, headers=HEADERS) as response:
            await response.read()
            return response.status, time.perf_counter() - start
    except (TimeoutError, aiohttp.ClientError):
        return NO_ANSWER, time.perf_counter() - start


def poisson_schedule(phases: list[tuple[float, float]], rng: random.Random) -> list[float]:
    """Arrival times (s) of a Poisson process whose rate is constant within each (seconds, rate) phase."""
    schedule, start = [], 0.0
    for seconds, rate in phases:
        t = start
        while rate > 0 and (t := t + rng.expovariate(rate)) < start + seconds:
            schedule.append(t)
        start += seconds
    return schedule


async def _open(session, url: str, phases: list[tuple[float, float]], start_at: float, seed: int) -> list[tuple]:
    schedule = poisson_schedule(phases, random.Random(seed))
    origin = start_at - time.time() + time.perf_counter()  # the step's start on this process's clock
    records: list[tuple] = []

    async def one(at: float) -> None:
        lag = time.perf_counter() - (origin + at)
        status, latency = await _send(session, url)
        records.append((at, lag, status, latency))

    tasks = []
    for at in schedule:
        wait = origin + at - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(at)))
    await asyncio.gather(*tasks)
    return records


async def _closed(session, url: str, connections: int, seconds: float, start_at: float) -> list[tuple]:
    origin = start_at - time.time() + time.perf_counter()
    await asyncio.sleep(max(0.0, origin - time.perf_counter()))
    records: list[tuple] = []

    async def loop() -> None:
        while (at := time.perf_counter() - origin) < seconds:
            status, latency = await _send(session, url)
            records.append((at, 0.0, status, latency))

    await asyncio.gather(*(loop() for _ in range(connections)))
    return records


def _worker(url: str, inbox: mp.connection.Connection) -> None:
    async def serve() -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
            while (message := await asyncio.to_thread(inbox.recv)) is not None:
                kind, args = message
                step = _open if kind == "open" else _closed
                # No garbage collection during a step: a full collection over the step's
                # thousands of in-flight tasks stops this event loop for tens of ms, and the
                # answers waiting meanwhile would read as the server's latency.
                gc.disable()
                records = await step(session, url, *args)
                inbox.send(records)
                del records
                gc.enable()
                gc.collect()

    asyncio.run(serve())


class LoadGenerator:
    """N worker processes sending to one Triton model; use as a context manager."""

    def __init__(self, url: str, processes: int) -> None:
        self.url, self.processes = url, processes
        self.pipes: list[mp.connection.Connection] = []
        self.workers: list[mp.Process] = []

    def _worker(self) -> tuple:
        """What each process runs, and its arguments before its end of the pipe."""
        return _worker, (self.url,)

    def __enter__(self) -> LoadGenerator:
        context = mp.get_context("spawn")
        target, args = self._worker()
        for _ in range(self.processes):
            ours, theirs = context.Pipe()
            worker = context.Process(target=target, args=(*args, theirs), daemon=True)
            worker.start()
            self.pipes.append(ours)
            self.workers.append(worker)
        return self

    def __exit__(self, *_: object) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for worker in self.workers:
            worker.join(timeout=10)

    def _run(self, messages: list[tuple]) -> list[Record]:
        for pipe, message in zip(self.pipes, messages, strict=True):
            pipe.send(message)
        return sorted((Record(*r) for pipe in self.pipes for r in pipe.recv()), key=lambda r: r.scheduled)

    def open_loop(self, phases: list[tuple[float, float]], seed: int, start_at: float) -> list[Record]:
        """Poisson arrivals through `phases` of (seconds, rate per second), from `start_at` (epoch seconds)."""
        shares = [(seconds, rate / self.processes) for seconds, rate in phases]
        return self._run([("open", (shares, start_at, seed * 1000 + i)) for i in range(self.processes)])

    def closed_loop(self, connections: int, seconds: float, start_at: float) -> list[Record]:
        """`connections` requests in flight at all times (spread over the workers) for `seconds`."""
        shares = [connections // self.processes + (i < connections % self.processes) for i in range(self.processes)]
        return self._run([("closed", (c, seconds, start_at)) for c in shares])
