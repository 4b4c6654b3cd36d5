"""Measure an LLM engine inside a real tritonserver: start-up, capacity, open-loop sweeps per mix, a load step.

Runs where the GPU is (bench/llmcal/run.sh); needs aiohttp, torch, transformers and, for NVML, nvidia-ml-py.
It writes a model repository with one decoupled Python-backend model (model.py beside this file, the engine
settings as config.pbtxt parameters), starts tritonserver on it, and then per mix (conv, code: request sizes
drawn from the Azure LLM trace 2023, capped):
- capacity: a closed loop of --concurrency streams; capacity in requests/s = the tokens/s it served over the
  mix's mean tokens per request (prompt + output);
- the sweep: an open-loop Poisson segment at each fraction of that capacity;
- a load step (--step-from -> --step-to of capacity, half of --step-seconds each).
Every segment ends cleanly: arrivals stop, the streams still open after --drain-seconds are cancelled (counted
unfinished), and the next segment starts only once the engine reports nothing running or waiting.

Writes <prefix>rates.csv, <prefix>requests.csv, <prefix>seconds.csv (the format of the shared brief: one row
per segment, per request, per second) and <prefix>run.log to --out. Each CSV starts with '#' lines: device,
versions, model shape, engine settings, the caps, the ready time and the measured capacities.

The engine logs each of its steps (model.py's StepLog: wall duration, prefill and decode tokens, requests running,
KV tokens in use): <prefix>steps.csv holds them binned by (prefill tokens, decode requests) per segment, with each
bin's means (what a regression of step time on the tokens a step carries needs); <prefix>steps.log.gz the raw log.
With --engine-profile the run starts with a mix-independent engine profile (as NVIDIA Dynamo's profiler): isolated
prefills of several prompt lengths, decoding at several batch sizes and contexts; its steps are the `profile` rows.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "calibrate"))
from harness import Sample, Sampler, Server, _format, environment, mean, quantile, stop_server, write_csv  # noqa: E402
from stream_load import Result, StreamLoad  # noqa: E402

SHAPES = {  # Llama-shaped decoders (random weights): hidden, layers, heads, KV heads, FFN, vocabulary
    "llama-1b": dict(HIDDEN=2048, LAYERS=16, HEADS=32, KV_HEADS=8, FFN=8192, VOCAB=32000),
    "llama-8b": dict(HIDDEN=4096, LAYERS=32, HEADS=32, KV_HEADS=8, FFN=14336, VOCAB=128256),
    "tiny": dict(HIDDEN=64, LAYERS=2, HEADS=4, KV_HEADS=2, FFN=128, VOCAB=1000, DTYPE="float32"),
}
MODEL = "llm"
GAUGES = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:gpu_cache_usage_perc",
    "vllm:num_preemptions_total",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "nv_inference_pending_request_count",
)

RATES = [
    "mix",
    "segment",
    "offered_rps",
    "seconds",
    "sent",
    "finished",
    "refused",
    "unfinished",
    "served_rps",
    "prompt_tok_s",
    "output_tok_s",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "tpot_p50_ms",
    "tpot_p99_ms",
    "e2e_p50_s",
    "e2e_p99_s",
    "pending_mean",
    "running_mean",
    "waiting_mean",
    "kv_used_mean",
    "kv_used_max",
    "preempted",
    "gpu_util_mean",
    "errors",
    "late_pct",
]
REQUESTS = [
    "mix",
    "segment",
    "offered_rps",
    "sent_s",
    "prompt_tokens",
    "max_tokens",
    "generated_tokens",
    "ttft_ms",
    "ingress_ms",
    "engine_ttft_ms",
    "tpot_ms",
    "e2e_ms",
    "outcome",
]
SECONDS = [
    "mix",
    "segment",
    "offered_rps",
    "t_s",
    "arrivals",
    "finished",
    "prompt_tokens",
    "output_tokens",
    "running",
    "waiting",
    "kv_used",
    "pending",
    "gpu_util",
]
STEPS = [
    "mix",
    "segment",
    "offered_rps",
    "prefill_from",
    "decode_from",
    "steps",
    "busy_s",
    "step_ms_mean",
    "step_ms_p50",
    "step_ms_p90",
    "prefill_tokens_mean",
    "prefill_requests_mean",
    "decode_requests_mean",
    "decode_kv_tokens_mean",
    "running_mean",
    "waiting_mean",
    "kv_used_tokens_mean",
    "responses_mean",
    "gap_ms_mean",
    "captures_mean",
]
# Bin edges of a step's prefill tokens and decode requests (a bin holds [edge, next edge); the last is open).
PREFILL_EDGES = (0, 1, 32, 128, 256, 512, 1024, 1536, 2048)
DECODE_EDGES = (0, 1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256)
STEP_FIELDS = (
    "end", "duration", "prefill", "prefill_requests", "decode", "decode_kv", "running", "waiting", "kv_used",
    "responses", "gap", "captures",
)  # fmt: skip
QUIET_STREAM_EVERY = 1 << 30  # a request's stream_every for its first and final response only
LATE_S = 0.05  # a send this much behind its schedule counts as late
PROFILE_RESERVE_S = 20  # an engine-profile part starts only with this much time left before the deadline


def load_mix(tokens: Path, name: str, prompt_cap: int, output_cap: int) -> list[tuple[int, int]]:
    with (tokens / f"tokens-{name}.csv").open() as rows:
        return [
            (max(1, min(int(r["context_tokens"]), prompt_cap)), max(1, min(int(r["generated_tokens"]), output_cap)))
            for r in csv.DictReader(rows)
        ]


# --- the server ------------------------------------------------------------------------------------------------


def model_repository(root: Path, params: dict[str, str]) -> Path:
    target = root / MODEL
    (target / "1").mkdir(parents=True)
    shutil.copy(HERE / "model.py", target / "1" / "model.py")
    parameters = "\n".join(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}' for k, v in params.items())
    (target / "config.pbtxt").write_text(
        f"""name: "{MODEL}"
backend: "python"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
input [
  {{ name: "prompt_tokens" data_type: TYPE_INT32 dims: [ 1 ] }},
  {{ name: "max_tokens" data_type: TYPE_INT32 dims: [ 1 ] }},
  {{ name: "seed" data_type: TYPE_INT32 dims: [ 1 ] optional: true }},
  {{ name: "stream_every" data_type: TYPE_INT32 dims: [ 1 ] optional: true }}
]
output [
  {{ name: "tokens" data_type: TYPE_INT32 dims: [ -1 ] }},
  {{ name: "n" data_type: TYPE_INT32 dims: [ 1 ] }},
  {{ name: "engine_times" data_type: TYPE_FP64 dims: [ 2 ] }}
]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
{parameters}
"""
    )
    return root


def _get(url: str) -> bytes | None:
    try:
        return urllib.request.urlopen(url, timeout=2).read()
    except (OSError, urllib.error.URLError):
        return None


def start(args, params: dict[str, str], log: Path) -> tuple[Server, dict[str, str]]:
    """tritonserver with the model loaded; returns the server and the engine settings the model resolved."""
    repository = model_repository(Path(tempfile.mkdtemp()), params)
    command = [
        args.tritonserver,
        f"--model-repository={repository}",
        f"--backend-directory={args.backends}",
        "--model-control-mode=explicit",
        f"--http-port={args.port}",
        f"--grpc-port={args.port + 1}",
        f"--metrics-port={args.port + 2}",
        f"--load-model={MODEL}",
        f"--allow-gpu-metrics={str(args.gpu).lower()}",
        "--metrics-interval-ms=1000",
        "--log-info=true",
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{args.port}/v2"
    while _get(f"{base}/models/{MODEL}/ready") is None:
        if process.poll() is not None or time.perf_counter() - started > args.start_timeout:
            process.kill()
            process.wait()
            raise RuntimeError(f"tritonserver did not get the model ready; its log ends:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    ready = time.perf_counter() - started
    try:
        answer(f"{base}/models/{MODEL}/generate_stream", [(8, 2)])
        first = time.perf_counter() - started
        # The engine's shapes beyond the first: concurrent requests of several lengths (prefill split, mixed batches).
        sizes = [(n, 4) for n in (100, 700, 1500, 3000, 4000, 50, 2500, 1)]
        answer(f"{base}/models/{MODEL}/generate_stream", sizes, int(params.get("QUEUE_LIMIT", 0)) or len(sizes))
        version = json.loads(_get(base) or b"{}").get("version", "unknown")
        engine = re.search(r"unbusy-llm engine: (\{.*\})", log.read_text())
        settings = json.loads(engine[1].replace('\\"', '"')) if engine else {}
    except Exception:
        process.kill()
        process.wait()
        raise
    return Server(process, ready, first, version), settings


def answer(url: str, sizes: list[tuple[int, int]], at_once: int = 1) -> None:
    """Sends these (prompt, output) requests, `at_once` at a time; raises unless every one gets all its tokens."""

    def one(size: tuple[int, int]) -> None:
        body = json.dumps({"prompt_tokens": size[0], "max_tokens": size[1], "seed": size[0]}).encode()
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        events = urllib.request.urlopen(request, timeout=120).read().decode().splitlines()
        last = json.loads(([e[5:] for e in events if e.startswith("data:")] or ["{}"])[-1])
        if last.get("n") not in (size[1], [size[1]]):
            raise RuntimeError(f"request {size} answered {last}")

    with ThreadPoolExecutor(at_once) as pool:
        list(pool.map(one, sizes))


def wait_empty(sampler: Sampler, limit: float) -> float:
    """Seconds until the engine reports nothing running or waiting (two fresh samples), at most `limit`."""
    started = time.time()
    while time.time() - started < limit:
        time.sleep(0.5)
        recent = sampler.between(time.time() - 1.6, time.time())
        if len(recent) >= 2 and all(
            s.values.get("vllm:num_requests_running", 1) + s.values.get("vllm:num_requests_waiting", 1) == 0
            for s in recent
        ):
            return time.time() - started
    return float("nan")


# --- one segment -----------------------------------------------------------------------------------------------


def summarise(mix, segment, offered, seconds, results: list[Result], bins, samples: list[Sample], span) -> dict:
    ok = [r for r in results if r.outcome == "ok"]
    done_in_window = [r for r in ok if r.scheduled + r.lag + r.e2e < seconds]
    tpots = [(r.e2e - r.ttft) / (r.generated - 1) for r in ok if r.generated > 1]
    window = [s for s in samples if span[0] <= s.at <= span[0] + seconds]
    values = lambda name: [s.values[name] for s in window if name in s.values]  # noqa: E731
    kv = values("vllm:gpu_cache_usage_perc")
    preemptions = [s.values.get("vllm:num_preemptions_total", 0.0) for s in samples if span[0] <= s.at <= span[1]]
    util = values("nvml_utilization") or values("nv_gpu_utilization")
    count = lambda outcome: sum(1 for r in results if r.outcome == outcome)  # noqa: E731
    ms = lambda v: None if v is None else 1000 * v  # noqa: E731
    return {
        "mix": mix,
        "segment": segment,
        "offered_rps": offered,
        "seconds": seconds,
        "sent": len(results),
        "finished": len(ok),
        "refused": count("refused"),
        "unfinished": count("unfinished"),
        "served_rps": len(done_in_window) / seconds,
        "prompt_tok_s": sum(bins.get(t, [0, 0])[0] for t in range(int(seconds))) / seconds,
        "output_tok_s": sum(bins.get(t, [0, 0])[1] for t in range(int(seconds))) / seconds,
        "ttft_p50_ms": ms(quantile([r.ttft for r in ok], 0.5)),
        "ttft_p99_ms": ms(quantile([r.ttft for r in ok], 0.99)),
        "tpot_p50_ms": ms(quantile(tpots, 0.5)),
        "tpot_p99_ms": ms(quantile(tpots, 0.99)),
        "e2e_p50_s": quantile([r.e2e for r in ok], 0.5),
        "e2e_p99_s": quantile([r.e2e for r in ok], 0.99),
        "pending_mean": mean(values("nv_inference_pending_request_count")),
        "running_mean": mean(values("vllm:num_requests_running")),
        "waiting_mean": mean(values("vllm:num_requests_waiting")),
        "kv_used_mean": mean(kv),
        "kv_used_max": max(kv) if kv else None,
        "preempted": max(preemptions) - min(preemptions) if preemptions else None,
        "gpu_util_mean": mean(util),
        "errors": count("error"),
        "late_pct": 100 * sum(1 for r in results if r.lag > LATE_S) / len(results) if results else None,
    }


def request_rows(mix, segment, offered, results: list[Result]) -> list[dict]:
    return [
        {
            "mix": mix,
            "segment": segment,
            "offered_rps": offered,
            "sent_s": r.scheduled + r.lag,
            "prompt_tokens": r.prompt_tokens,
            "max_tokens": r.max_tokens,
            "generated_tokens": r.generated,
            "ttft_ms": None if r.ttft is None else 1000 * r.ttft,
            "ingress_ms": None if r.ingress is None else 1000 * r.ingress,
            "engine_ttft_ms": None if r.engine_ttft is None else 1000 * r.engine_ttft,
            "tpot_ms": 1000 * (r.e2e - r.ttft) / (r.generated - 1) if r.outcome == "ok" and r.generated > 1 else None,
            "e2e_ms": None if r.e2e is None else 1000 * r.e2e,
            "outcome": r.outcome,
        }
        for r in results
    ]


def second_rows(mix, segment, offered, seconds, results: list[Result], bins, sampler: Sampler, start) -> list:
    rows = []
    for t in range(int(seconds)):
        sample = sampler.at(start + t + 1)
        values = sample.values if sample and sample.at >= start + t else {}
        rows.append(
            {
                "mix": mix,
                "segment": segment,
                "offered_rps": offered,
                "t_s": t,
                "arrivals": sum(1 for r in results if t <= r.scheduled < t + 1),
                "finished": sum(1 for r in results if r.outcome == "ok" and t <= r.scheduled + r.lag + r.e2e < t + 1),
                "prompt_tokens": bins.get(t, [0, 0])[0],
                "output_tokens": bins.get(t, [0, 0])[1],
                "running": values.get("vllm:num_requests_running"),
                "waiting": values.get("vllm:num_requests_waiting"),
                "kv_used": values.get("vllm:gpu_cache_usage_perc"),
                "pending": values.get("nv_inference_pending_request_count"),
                "gpu_util": values.get("nvml_utilization", values.get("nv_gpu_utilization")),
            }
        )
    return rows


class StepReader:
    """The engine's step log (model.py's StepLog), read as it grows: the steps that ended in a span of time."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.steps = path, 0, []

    def between(self, start: float, end: float) -> list[dict[str, float]]:
        if self.path.exists():
            with self.path.open() as log:
                log.seek(self.offset)
                text = log.read()
            complete = text[: text.rfind("\n") + 1]
            self.offset += len(complete)
            for line in complete.splitlines():
                self.steps.append(dict(zip(STEP_FIELDS, map(float, line.split()), strict=True)))
        return [step for step in self.steps if start <= step["end"] <= end]


def _bin(value: float, edges: tuple[int, ...]) -> int:
    return max(edge for edge in edges if edge <= value)


def step_rows(mix, segment, offered, steps: list[dict[str, float]]) -> list[dict]:
    """The steps binned by (prefill tokens, decode requests): each bin's count, busy time, duration quantiles, means."""
    bins: dict[tuple[int, int], list[dict[str, float]]] = {}
    for step in steps:
        bins.setdefault((_bin(step["prefill"], PREFILL_EDGES), _bin(step["decode"], DECODE_EDGES)), []).append(step)
    rows = []
    for (prefill_from, decode_from), members in sorted(bins.items()):
        average = lambda key: sum(m[key] for m in members) / len(members)  # noqa: E731, B023
        durations = [1000 * m["duration"] for m in members]
        rows.append(
            {
                "mix": mix,
                "segment": segment,
                "offered_rps": offered,
                "prefill_from": prefill_from,
                "decode_from": decode_from,
                "steps": len(members),
                "busy_s": sum(durations) / 1000,
                "step_ms_mean": sum(durations) / len(durations),
                "step_ms_p50": quantile(durations, 0.5),
                "step_ms_p90": quantile(durations, 0.9),
                "prefill_tokens_mean": average("prefill"),
                "prefill_requests_mean": average("prefill_requests"),
                "decode_requests_mean": average("decode"),
                "decode_kv_tokens_mean": average("decode_kv"),
                "running_mean": average("running"),
                "waiting_mean": average("waiting"),
                "kv_used_tokens_mean": average("kv_used"),
                "responses_mean": average("responses"),
                "gap_ms_mean": 1000 * average("gap"),
                "captures_mean": average("captures"),
            }
        )
    return rows


def beside_decoders(url: str, decoders: int, context: int, output: int, stream_every: int, prefills, idle) -> None:
    """Mixed steps: `decoders` requests with `context`-token prompts decoding (at most `output` tokens, a response
    every `stream_every`); once each has its first token, the `prefills` (prompt lengths) one at a time with one
    output token beside them; then the decoders' streams are closed (Triton cancels them) and the engine left idle."""
    first, stop = threading.Semaphore(0), threading.Event()

    def decoder(seed: int) -> None:
        body = {"prompt_tokens": context, "max_tokens": output, "seed": seed, "stream_every": stream_every}
        request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                while not response.readline().startswith(b"data:"):
                    pass
                first.release()
                stop.wait(120)
        except Exception:
            first.release()  # counted, so the part goes on; the step log shows what decoded
            raise

    with ThreadPoolExecutor(decoders) as pool:
        running = [pool.submit(decoder, context + i) for i in range(decoders)]
        until = time.time() + 120
        for _ in range(decoders):
            first.acquire(timeout=max(0.0, until - time.time()))
        answer(url, [(n, 1) for n in prefills])
        stop.set()
        for future in running:
            future.result()
    idle(60)


def engine_profile(url: str, spec: dict[str, list[int]], output: int, log, time_left, idle) -> list[tuple]:
    """A mix-independent profile of the engine: isolated prefills of each prompt length (three each, one at a time,
    one output token), then each batch size of concurrent short requests decoding `output` tokens, then each
    batch size of requests with `context`-token prompts, then mixed steps: each `mixed` prompt length (three each)
    prefilled beside each count of `mixed_decode` requests decoding after prompts of each `mixed_context` length
    (at most `mixed_output` tokens), once streaming as the load does (segment `mixed-c<context>`) and once with
    the decoders' responses held back to their first and last (`mixed-quiet-c<context>`: no stub traffic beside
    the engine); offered_rps holds the decoders' count. A part is skipped with
    less than PROFILE_RESERVE_S left before the deadline. Returns the parts as (segment, size, start, end)."""
    parts = [("prefill", n, lambda n=n: answer(url, [(n, 1)] * 3)) for n in spec.get("prefill", [])]
    parts += [("decode", b, lambda b=b: answer(url, [(32, output)] * b, b)) for b in spec.get("decode", [])]
    context = (spec.get("context") or [0])[0]
    parts += [
        ("decode-context", b, lambda b=b: answer(url, [(context, output)] * b, b))
        for b in spec.get("context_batches", [])
        if context
    ]
    mixed_output = (spec.get("mixed_output") or [256])[0]
    prefills = [n for n in spec.get("mixed", []) for _ in range(3)]
    for c in spec.get("mixed_context") or ([context] if context else []):
        for segment, every in ((f"mixed-c{c}", 0), (f"mixed-quiet-c{c}", QUIET_STREAM_EVERY)):
            parts += [
                (segment, d, lambda d=d, c=c, e=every: beside_decoders(url, d, c, mixed_output, e, prefills, idle))
                for d in spec.get("mixed_decode", [])
                if prefills
            ]
    spans = []
    for segment, size, measure in parts:
        if time_left() < PROFILE_RESERVE_S:
            log(f"profile {segment} {size} skipped: {time_left():.0f} s left before the deadline")
            continue
        started = time.time()
        try:
            measure()
        except Exception as error:  # one device run: a part that fails leaves the rest of the run to measure
            log(f"profile {segment} {size} failed after {time.time() - started:.1f} s: {error!r}")
            idle(60)
            continue
        spans.append((segment, size, started, time.time()))
        log(f"profile {segment} {size}: {time.time() - started:.1f} s")
    time.sleep(1.0)  # the engine writes its step log every 0.25 s
    return spans


def closed_loop_capacity(load: StreamLoad, args, mix: str, pairs, seed: int, log) -> float:
    """Requests/s the engine serves of this mix: tokens/s of a closed loop over the mix's mean tokens a request."""
    results, bins = load.closed_loop(args.concurrency, args.capacity_seconds, 0, time.time() + 0.3, seed)
    warm = 2
    span = args.capacity_seconds - warm
    prompt_s = sum(bins.get(t, [0, 0])[0] for t in range(warm, int(args.capacity_seconds))) / span
    output_s = sum(bins.get(t, [0, 0])[1] for t in range(warm, int(args.capacity_seconds))) / span
    mean_prompt = sum(p for p, _ in pairs) / len(pairs)
    mean_output = sum(o for _, o in pairs) / len(pairs)
    capacity = (prompt_s + output_s) / (mean_prompt + mean_output)
    done = sum(1 for r in results if r.outcome == "ok")
    log(
        f"{mix}: closed loop {args.concurrency}: {prompt_s:.0f} prompt + {output_s:.0f} output tok/s, "
        f"{done} finished in {args.capacity_seconds:g} s; mean request {mean_prompt:.0f} + "
        f"{mean_output:.0f} tokens -> capacity {capacity:.2f} req/s"
    )
    return capacity


# --- the run ---------------------------------------------------------------------------------------------------


class Log:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        with self.path.open("a") as out:
            out.write(line + "\n")


def parse_params(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tritonserver", required=True)
    parser.add_argument("--backends", required=True)
    parser.add_argument("--tokens", required=True, type=Path, help="folder of tokens-conv.csv and tokens-code.csv")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--prefix", required=True, help="file name prefix, e.g. h100-llm-llama-1b-")
    parser.add_argument("--shape", choices=sorted(SHAPES), required=True)
    parser.add_argument("--param", nargs="*", default=[], help="engine settings KEY=VALUE (model.py's parameters)")
    parser.add_argument(
        "--fallback", nargs="*", action="append", default=[],
        help="KEY=VALUE ... to retry with if the server fails; repeat for further tries, each on top of the last",
    )  # fmt: skip
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--port", type=int, default=8000, help="tritonserver's HTTP port (gRPC +1, metrics +2)")
    parser.add_argument("--mixes", default="conv,code")
    parser.add_argument("--prompt-cap", type=int, default=4096)
    parser.add_argument("--output-cap", type=int, default=1024)
    parser.add_argument("--processes", type=int, default=4, help="load generator processes")
    parser.add_argument("--concurrency", type=int, default=64, help="closed-loop streams for the capacity")
    parser.add_argument("--capacity-seconds", type=float, default=12)
    parser.add_argument(
        "--capacity-rps", default="",
        help="MIX=REQ/S,...: the capacity read from an earlier sweep, used instead of the closed-loop estimate "
        "(which over-rates decode-bound mixes: its fresh streams spend their first seconds in prefill)",
    )  # fmt: skip
    parser.add_argument("--fractions", default="0.25,0.5,0.75,0.9,1.0,1.25,1.5,2.0")
    parser.add_argument(
        "--repeat", default="", help="fractions of capacity measured again after a mix's sweep (segment `repeat`)"
    )
    parser.add_argument("--segment-seconds", type=float, default=16)
    parser.add_argument("--drain-seconds", type=float, default=4)
    parser.add_argument("--step-from", type=float, default=0.5)
    parser.add_argument("--step-to", type=float, default=1.5)
    parser.add_argument("--step-seconds", type=float, default=32)
    parser.add_argument("--start-timeout", type=float, default=240)
    parser.add_argument("--deadline", type=float, default=0, help="seconds: skip what would not end before it")
    parser.add_argument(
        "--engine-profile", default="",
        help="KEY=N,N,...;... e.g. 'prefill=128,512,2048;decode=1,8,64,256;context=1024;context_batches=16,64': "
        "a mix-independent engine profile before the mixes (empty: none)",
    )  # fmt: skip
    parser.add_argument("--profile-output", type=int, default=32, help="tokens each profile decode request makes")
    args = parser.parse_args()
    begun = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    log = Log(args.out / f"{args.prefix}run.log")
    env = environment()
    try:
        from importlib.metadata import version

        env[-1] += f", transformers {version('transformers')}"
    except Exception:
        pass
    for line in env:
        log(line)
    params = {**SHAPES[args.shape], **parse_params(args.param)}
    if sys.prefix != sys.base_prefix:  # a venv: the backend's stub (its own embedded Python) needs its packages
        import site

        params["SITE_PACKAGES"] = site.getsitepackages()[0]
    step_log = Path(tempfile.mkdtemp()) / "steps.log"
    params["STEP_LOG"] = str(step_log)
    steps = StepReader(step_log)
    server_log = args.out / f"{args.prefix}tritonserver.log"
    for fallback in [None, *args.fallback]:
        if fallback is not None:
            params.update(parse_params(fallback))
        try:
            server, engine = start(args, params, server_log)
            break
        except (RuntimeError, OSError) as error:
            log(f"start with {params} failed: {str(error)[-1500:]}")
    else:
        raise SystemExit("tritonserver never got the model ready")
    log(f"ready {server.ready_s:.1f} s after start, first answer {server.first_answer_s:.1f} s; engine {engine}")
    mixes = {m: load_mix(args.tokens, m, args.prompt_cap, args.output_cap) for m in args.mixes.split(",")}
    rates, requests, seconds_rows, step_bins, capacities = [], [], [], [], {}
    url = f"http://127.0.0.1:{args.port}/v2/models/{MODEL}/generate_stream"
    given = {m: float(c) for m, c in (item.split("=") for item in args.capacity_rps.split(",") if item)}
    pairs_all = [pair for pairs in mixes.values() for pair in pairs]
    time_left = lambda: args.deadline - (time.time() - begun) if args.deadline else float("inf")  # noqa: E731

    def write() -> None:
        """All three CSVs as far as measured: written after every segment, so a run cut short keeps its data."""
        mean_all = (sum(p for p, _ in pairs_all) / len(pairs_all), sum(o for _, o in pairs_all) / len(pairs_all))
        header = [
            *env,
            f"model: Llama-shaped decoder, random weights, transformers LlamaForCausalLM; shape {args.shape}: "
            + ", ".join(f"{k.lower()} {v}" for k, v in SHAPES[args.shape].items() if k != "DTYPE")
            + f", params {engine.get('PARAMS', '?')}, dtype {params.get('DTYPE', 'bfloat16')}",
            "engine: transformers ContinuousBatchingManager in a Triton Python-backend model (decoupled, streaming); "
            + ", ".join(
                f"{k.lower()} {v}" for k, v in engine.items() if k not in {*SHAPES[args.shape], "PARAMS", "DTYPE"}
            ),
            f"tritonserver: {server.version} (nvidia-pytriton 0.7.0 wheel); ready_s: {server.ready_s:.2f}; "
            f"first_answer_s: {server.first_answer_s:.2f}",
            f"requests: Azure LLM inference trace 2023 sizes (tokens-conv.csv, tokens-code.csv), prompts capped at "
            f"{args.prompt_cap}, outputs at {args.output_cap}; all mixes' mean {mean_all[0]:.0f} + {mean_all[1]:.0f}",
            "capacity_rps: "
            + ", ".join(f"{m} {c:.3f}" for m, c in capacities.items())
            + (
                " (given: read from an earlier sweep's saturation)"
                if given
                else f" (closed loop of {args.concurrency} streams, {args.capacity_seconds:g} s: served tokens/s "
                "over the mix's mean tokens per request)"
            ),
            f"segments: open-loop Poisson, {args.segment_seconds:g} s at each fraction {args.fractions} of capacity, "
            f"then at most {args.drain_seconds:g} s to drain; what is left is cancelled (unfinished); served_rps "
            "counts requests finished inside the segment, latency percentiles all that finished",
            f"step: {args.step_from}x -> {args.step_to}x capacity at t={args.step_seconds / 2:g}s",
            "load: " + f"{args.processes} processes over HTTP generate_stream (SSE), one response per "
            f"{engine.get('STREAM_EVERY', params.get('STREAM_EVERY', 1))} tokens; ttft = first streamed token, "
            "tpot = (e2e - ttft) / (tokens - 1)",
        ]
        write_csv(args.out / f"{args.prefix}rates.csv", header, RATES, rates)
        write_csv(args.out / f"{args.prefix}requests.csv", header, REQUESTS, requests)
        write_csv(args.out / f"{args.prefix}seconds.csv", header, SECONDS, seconds_rows)
        steps_note = (
            "steps: each engine step (one batch: schedule, launch, update on its tokens reaching the host; wall time, "
            "async batching attributes a step's time to the batch whose tokens it waited for) binned per segment by "
            f"prefill tokens {PREFILL_EDGES} and decode requests {DECODE_EDGES} (each bin from its edge to the next); "
            "decode_kv_tokens = the contexts the decoding requests attend to; responses = responses sent to Triton "
            "while a step's loop body ran, gap = the engine thread's time before it outside the body, captures = CUDA "
            "graphs captured while it ran; segments with "
            "their drain; profile rows (mix profile): offered_rps is the prompt length (prefill), the concurrent "
            "requests (decode) or the decoders beside the prefills (mixed-c<context>; mixed-quiet-c<context>: the "
            "decoders send only their first and last response)"
        )
        write_csv(args.out / f"{args.prefix}steps.csv", [*header, steps_note], STEPS, step_bins)

    try:
        with Sampler(f"http://127.0.0.1:{args.port + 2}/metrics", MODEL, series=GAUGES) as sampler:
            if args.engine_profile:
                spec = {
                    key.strip(): [int(n) for n in values.split(",") if n.strip()]
                    for key, values in (part.split("=") for part in args.engine_profile.split(";") if part.strip())
                }
                begun_profile = time.time()
                for segment, size, start_at, end_at in engine_profile(
                    url, spec, args.profile_output, log, time_left, lambda limit: wait_empty(sampler, limit)
                ):
                    step_bins += step_rows("profile", segment, size, steps.between(start_at, end_at))
                log(f"engine profile: {time.time() - begun_profile:.1f} s, {len(step_bins)} step bins")
                write()
            seed = 0
            for mix, pairs in mixes.items():
                with StreamLoad(url, args.processes, pairs) as load:
                    time.sleep(1.0)
                    seed += 1
                    if mix in given:
                        capacity = given[mix]
                        log(f"{mix}: capacity {capacity:.2f} req/s as given (--capacity-rps)")
                    else:
                        capacity = closed_loop_capacity(load, args, mix, pairs, seed, log)
                        log(f"  drained in {wait_empty(sampler, 20):.1f} s")
                    capacities[mix] = capacity
                    segments = [
                        ("sweep", f, [(args.segment_seconds, f * capacity)])
                        for f in map(float, args.fractions.split(","))
                    ]
                    segments += [
                        ("repeat", f, [(args.segment_seconds, f * capacity)])
                        for f in map(float, filter(None, args.repeat.split(",")))
                    ]
                    half = args.step_seconds / 2
                    if half:
                        step = [(half, args.step_from * capacity), (half, args.step_to * capacity)]
                        segments.append(("step", args.step_to, step))
                    sweep_seeds: dict[float, int] = {}  # a repeat sends its sweep segment's requests again
                    for segment, fraction, phases in segments:
                        length = sum(s for s, _ in phases)
                        if time_left() < length + args.drain_seconds + 5:
                            log(f"  {segment} {fraction}x skipped: {time_left():.0f} s left before the deadline")
                            continue
                        seed += 1
                        if segment == "sweep":
                            sweep_seeds[fraction] = seed
                        drawn = sweep_seeds.get(fraction, seed) if segment == "repeat" else seed
                        offered = phases[-1][1]
                        start_at = time.time() + 0.3
                        results, bins = load.open_loop(phases, length, args.drain_seconds, start_at, drawn)
                        ended = time.time()
                        drained = wait_empty(sampler, 20)
                        row = summarise(
                            mix, segment, offered, length, results, bins, sampler.samples, (start_at, ended)
                        )
                        rates.append(row)
                        requests += request_rows(mix, segment, offered, results)
                        seconds_rows += second_rows(mix, segment, offered, length, results, bins, sampler, start_at)
                        segment_steps = steps.between(start_at, ended)
                        step_bins += step_rows(mix, segment, offered, segment_steps)
                        shown = ("sent", "finished", "refused", "unfinished", "errors", "output_tok_s", "ttft_p50_ms",
                                 "ttft_p99_ms", "tpot_p50_ms", "e2e_p99_s", "running_mean", "waiting_mean",
                                 "kv_used_max", "preempted", "gpu_util_mean", "late_pct")  # fmt: skip
                        figures = " ".join(f"{key} {_format(row[key])}" for key in shown)
                        busy = sum(step["duration"] for step in segment_steps)
                        figures += f" steps {len(segment_steps)} busy {busy:.1f} s"
                        log(f"  {segment} {fraction:g}x = {offered:.2f} req/s: {figures}; empty after {drained:.1f} s")
                        errors = {r.detail for r in results if r.outcome == "error"}
                        if errors:
                            log(f"    errors: {sorted(errors)[:3]}")
                        write()
    finally:
        stop_server(server)
        if step_log.exists():
            with step_log.open("rb") as raw, gzip.open(args.out / f"{args.prefix}steps.log.gz", "wb") as packed:
                shutil.copyfileobj(raw, packed)
        log(
            f"total {time.time() - begun:.0f} s; {args.prefix}rates.csv {len(rates)} rows, requests.csv "
            f"{len(requests)}, seconds.csv {len(seconds_rows)}"
        )


if __name__ == "__main__":
    main()
