"""Measure a real tritonserver serving one model: start-up, capacity, an open-loop sweep, a load step.

Runs where the GPU is (bench/calibrate/run.sh on the device machine); needs only the standard
library, aiohttp and, for NVML readings, nvidia-ml-py. For each model of the prepared repository
(prepare.py) it starts tritonserver with that model alone and writes two CSVs to --out:

- <prefix><model>-rates.csv: one row per step: the closed-loop sweep (capacity), then each
  open-loop offered rate, with served rate, 503s, latency percentiles, Triton's counters per
  request and per second, GPU utilisation (Triton's nv_gpu_utilization and NVML) and how well
  the load generator held its schedule;
- <prefix><model>-seconds.csv: one row per second of every open-loop step and of the load step
  (0.3x -> 1.5x capacity), for what happens in time.

Each file starts with '#' lines: device, driver, versions, the model, its config.pbtxt, and the
time from process start to model ready.

A fraction given more than once in --fractions is measured again within the same server
lifetime, each time its own row (`unbusy calibrate` takes the median of a rate's rows and keeps
their p99 range): bench/data/h100-x3-* ran the 14 fractions ascending, descending, then shuffled.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from loadgen import LATE_S, LoadGenerator, Record

# Triton's counters and gauges of one model, summed over their other labels (version, reason).
MODEL_SERIES = (
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_request_duration_us",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us",
    "nv_inference_pending_request_count",
)
_SERIES = re.compile(r"^([a-zA-Z_:][\w:]*)\{([^}]*)\} (\S+)$", re.M)

RATES_COLUMNS = [
    "mode",
    "concurrency",
    "offered_rps",
    "sent_rps",
    "served_rps",
    "rejected_rps",
    "rejected_pct",
    "errors",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "pending_mean",
    "pending_max",
    "gpu_util",
    "gpu_util_nvml",
    "avg_batch",
    "executions_per_s",
    "queue_us",
    "compute_input_us",
    "compute_infer_us",
    "compute_output_us",
    "request_us",
    "busy_fraction",
    "late_pct",
    "lag_p99_ms",
    "seconds",
]
SECONDS_COLUMNS = [
    "step",
    "offered_rps",
    "second",
    "sent",
    "served",
    "rejected",
    "p50_ms",
    "p99_ms",
    "pending",
    "gpu_util",
    "gpu_util_nvml",
    "inferences",
    "executions",
    "queue_us",
    "compute_infer_us",
]


@dataclass
class Sample:
    at: float  # epoch seconds
    values: dict[str, float]


@dataclass
class Sampler:
    """Triton's /metrics (and NVML, where there is a GPU) once a second, on a thread."""

    metrics_url: str
    model: str
    samples: list[Sample] = field(default_factory=list)
    series: tuple[str, ...] = MODEL_SERIES  # the model's series it sums

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._nvml = None
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._nvml = lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100
        except Exception:  # no NVML (a CPU-only run): the column stays empty
            self._nvml = None

    def read(self) -> Sample:
        text = urllib.request.urlopen(self.metrics_url, timeout=5).read().decode()
        values: dict[str, float] = {}
        for name, labels, value in _SERIES.findall(text):
            if name in self.series and f'model="{self.model}"' in labels:
                values[name] = values.get(name, 0.0) + float(value)
            elif name == "nv_gpu_utilization":
                values[name] = max(values.get(name, 0.0), float(value))
        if self._nvml:
            values["nvml_utilization"] = self._nvml()
        return Sample(time.time(), values)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.time()
            with contextlib.suppress(OSError, urllib.error.URLError):  # a missed second, not a failed run
                self.samples.append(self.read())
            self._stop.wait(max(0.0, 1.0 - (time.time() - started)))

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]

    def at(self, when: float) -> Sample | None:
        """The last sample taken at or before `when`."""
        return next((s for s in reversed(self.samples) if s.at <= when), None)


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def counters(first: Sample | None, last: Sample | None) -> dict[str, float | None]:
    """Per-request and per-second figures from the change of Triton's counters between two samples."""
    if first is None or last is None or last.at <= first.at:
        return {}

    def delta(name: str) -> float:
        return last.values.get(name, 0.0) - first.values.get(name, 0.0)

    requests, executions, seconds = delta("nv_inference_count"), delta("nv_inference_exec_count"), last.at - first.at
    succeeded = delta("nv_inference_request_success")

    def per(name: str, count: float) -> float | None:
        return delta(name) / count if count else None

    infer = per("nv_inference_compute_infer_duration_us", requests)  # each request of a batch counts the batch
    return {
        "avg_batch": requests / executions if executions else None,
        "executions_per_s": executions / seconds,
        "queue_us": per("nv_inference_queue_duration_us", succeeded),
        "compute_input_us": per("nv_inference_compute_input_duration_us", requests),
        "compute_infer_us": infer,
        "compute_output_us": per("nv_inference_compute_output_duration_us", requests),
        "request_us": per("nv_inference_request_duration_us", succeeded),
        # Triton's own timers: time spent executing batches over wall time, no NVML needed.
        "busy_fraction": infer * executions / 1e6 / seconds if infer is not None else None,
    }


def summarise(records: list[Record], sampler: Sampler, start_at: float, warmup: float, seconds: float) -> dict:
    """One rates row: requests scheduled in [warmup, seconds) of the step and the counters over that window."""
    window = [r for r in records if warmup <= r.scheduled < seconds]
    span = seconds - warmup
    ok = [r.latency for r in window if r.status == 200]
    rejected = sum(1 for r in window if r.status == 503)
    gauges = sampler.between(start_at + warmup, start_at + seconds)
    pending = [s.values.get("nv_inference_pending_request_count", 0.0) for s in gauges]
    lags = [r.lag for r in window]
    return {
        "sent_rps": len(window) / span,
        "served_rps": len(ok) / span,
        "rejected_rps": rejected / span,
        "rejected_pct": 100 * rejected / len(window) if window else None,
        "errors": len(window) - len(ok) - rejected,
        "p50_ms": ms(quantile(ok, 0.5)),
        "p90_ms": ms(quantile(ok, 0.9)),
        "p99_ms": ms(quantile(ok, 0.99)),
        "pending_mean": mean(pending),
        "pending_max": max(pending) if pending else None,
        "gpu_util": mean([s.values["nv_gpu_utilization"] for s in gauges if "nv_gpu_utilization" in s.values]),
        "gpu_util_nvml": mean([s.values["nvml_utilization"] for s in gauges if "nvml_utilization" in s.values]),
        **counters(sampler.at(start_at + warmup), sampler.at(start_at + seconds)),
        "late_pct": 100 * sum(1 for lag in lags if lag > LATE_S) / len(lags) if lags else None,
        "lag_p99_ms": ms(quantile(lags, 0.99)),
        "seconds": span,
    }


def per_second(step: str, offered, records: list[Record], sampler: Sampler, start_at: float, seconds: int) -> list:
    rows = []
    for second in range(seconds):
        these = [r for r in records if second <= r.scheduled < second + 1]
        ok = [r.latency for r in these if r.status == 200]
        now, before = sampler.at(start_at + second + 1), sampler.at(start_at + second)
        change = counters(before, now)
        values = now.values if now else {}
        rows.append(
            {
                "step": step,
                "offered_rps": offered(second),
                "second": second,
                "sent": len(these),
                "served": len(ok),
                "rejected": sum(1 for r in these if r.status == 503),
                "p50_ms": ms(quantile(ok, 0.5)),
                "p99_ms": ms(quantile(ok, 0.99)),
                "pending": values.get("nv_inference_pending_request_count"),
                "gpu_util": values.get("nv_gpu_utilization"),
                "gpu_util_nvml": values.get("nvml_utilization"),
                "inferences": (now.values.get("nv_inference_count", 0) - before.values.get("nv_inference_count", 0))
                if now and before
                else None,
                "executions": change.get("executions_per_s"),
                "queue_us": change.get("queue_us"),
                "compute_infer_us": change.get("compute_infer_us"),
            }
        )
    return rows


# --- the server ------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen
    ready_s: float
    first_answer_s: float
    version: str


def _get(url: str) -> bytes | None:
    try:
        return urllib.request.urlopen(url, timeout=2).read()
    except (OSError, urllib.error.URLError):
        return None


def cpus(spec: str) -> set[int]:
    """'0-7,12' -> {0, ..., 7, 12}"""
    chosen: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.partition("-")
        chosen.update(range(int(low), int(high or low) + 1))
    return chosen


def start_server(
    tritonserver: str, backends: str, repository: Path, model: str, gpu: bool, env: dict, log: Path, on: set[int]
) -> Server:
    command = [
        tritonserver,
        f"--model-repository={repository}",
        f"--backend-directory={backends}",
        "--model-control-mode=explicit",
        f"--load-model={model}",
        f"--allow-gpu-metrics={str(gpu).lower()}",
        "--metrics-interval-ms=1000",
    ]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, preexec_fn=lambda: os.sched_setaffinity(0, on)
    )
    base = "http://127.0.0.1:8000/v2"
    while _get(f"{base}/models/{model}/ready") is None:
        if process.poll() is not None or time.perf_counter() - started > 300:
            raise SystemExit(f"tritonserver did not get {model} ready; its log:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    ready = time.perf_counter() - started
    body = json.dumps({"inputs": [{"name": "seed", "shape": [1, 1], "datatype": "INT32", "data": [1]}]}).encode()
    request = urllib.request.Request(f"{base}/models/{model}/infer", body, {"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=60).read()
    version = json.loads(_get(base) or b"{}").get("version", "unknown")
    return Server(process, ready, time.perf_counter() - started, version)


def stop_server(server: Server) -> None:
    server.process.send_signal(signal.SIGINT)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()


# --- one model -------------------------------------------------------------------------------


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else ""
    return str(value)


def write_csv(path: Path, header: list[str], columns: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as out:
        out.writelines(f"# {line}\n" for line in header)
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: _format(row.get(k)) for k in columns} for row in rows)


@dataclass(frozen=True)
class Plan:
    closed: tuple[int, ...]
    closed_s: float
    fractions: tuple[float, ...]
    open_s: float
    warmup_s: float
    step: tuple[tuple[float, float], ...]  # (seconds, fraction of capacity)


def measure(args, model: str, plan: Plan, environment: list[str]) -> None:
    out, repository = Path(args.out), Path(args.repository)
    log = out / f"{args.prefix}{model}-tritonserver.log"
    env = {**os.environ, **json.loads((repository / model / "env.json").read_text())}
    server_cpus = cpus(args.server_cpus)
    server = start_server(args.tritonserver, args.backends, repository, model, args.gpu, env, log, server_cpus)
    # The load generator keeps off the server's cores: where clients and server share them, the
    # clients' work (a 503 costs the client as much as a 200) slows the server and the figures
    # would describe the client, not Triton.
    os.sched_setaffinity(0, (os.sched_getaffinity(0) - server_cpus) or os.sched_getaffinity(0))
    print(
        f"{model}: ready {server.ready_s:.2f} s after start, first answer at {server.first_answer_s:.2f} s", flush=True
    )
    url = f"http://127.0.0.1:8000/v2/models/{model}/infer"
    rates, seconds = [], []
    try:
        with Sampler("http://127.0.0.1:8002/metrics", model) as sampler, LoadGenerator(url, args.processes) as load:
            time.sleep(1.5)  # the workers' imports and a first metrics sample
            for connections in plan.closed:
                start = time.time() + 0.3
                records = load.closed_loop(connections, plan.closed_s, start)
                row = summarise(records, sampler, start, 1.0, plan.closed_s)
                rates.append({"mode": "closed", "concurrency": connections, **row})
                print(f"  closed {connections}: {row['served_rps']:.0f} rps, p99 {row['p99_ms']} ms", flush=True)
            capacity = max(r["served_rps"] for r in rates)
            for i, fraction in enumerate(plan.fractions):
                rate, start = fraction * capacity, time.time() + 0.3
                records = load.open_loop([(plan.open_s, rate)], seed=i, start_at=start)
                row = summarise(records, sampler, start, plan.warmup_s, plan.open_s)
                rates.append({"mode": "open", "offered_rps": rate, **row})
                seconds += per_second(f"rate{i}", lambda _, r=rate: r, records, sampler, start, int(plan.open_s))
                print(
                    f"  open {fraction:.2f}x = {rate:.0f} rps: served {row['served_rps']:.0f}, "
                    f"503 {row['rejected_pct']:.2f}%, p99 {row['p99_ms']} ms, util {row['gpu_util']}, "
                    f"batch {row['avg_batch']}, late {row['late_pct']:.1f}%",
                    flush=True,
                )
                time.sleep(1.0)  # let the queue drain between steps
            phases = [(s, f * capacity) for s, f in plan.step]
            start = time.time() + 0.3
            records = load.open_loop(phases, seed=99, start_at=start)
            total = int(sum(s for s, _ in phases))

            def offered(second: int) -> float:
                for length, rate in phases:
                    if second < length:
                        return rate
                    second -= length
                return 0.0

            seconds += per_second("load-step", offered, records, sampler, start, total)
            late = summarise(records, sampler, start, 0.0, total)["late_pct"]
            print(f"  load step {plan.step}: {len(records)} requests, late {late:.1f}%", flush=True)
    finally:
        stop_server(server)
    config = (repository / model / "config.pbtxt").read_text().strip().replace("\n", " ")
    header = [
        *environment,
        f"model: {model}: {(repository / model / 'about.txt').read_text().strip()}",
        f"config.pbtxt: {config}",
        f"tritonserver: {server.version}",
        f"ready_s: {server.ready_s:.3f}",
        f"first_answer_s: {server.first_answer_s:.3f}",
        f"capacity_rps: {capacity:.1f}",
        f"load: {args.processes} processes on other cores than tritonserver ({args.server_cpus}), open loop Poisson; "
        f"late = sent over {LATE_S * 1000:g} ms after its scheduled time",
    ]
    write_csv(out / f"{args.prefix}{model}-rates.csv", header, RATES_COLUMNS, rates)
    write_csv(out / f"{args.prefix}{model}-seconds.csv", header, SECONDS_COLUMNS, seconds)


def host_cpu() -> str:
    """The host CPU's model name (/proc/cpuinfo), or the platform's word for it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> list[str]:
    lines = [f"measured: {datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"]
    try:
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        lines.append(f"device: {gpu}")
    except (OSError, subprocess.CalledProcessError):
        lines.append(f"device: CPU only ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    # The host's CPU is named too: an engine's Python loop makes its steps as fast as the host (bench/llmcal).
    lines.append(f"host: {host_cpu()}, {os.cpu_count()} cores")
    versions = []
    for package in ("torch", "torchvision", "nvidia-pytriton", "aiohttp"):
        try:
            from importlib.metadata import version

            versions.append(f"{package} {version(package)}")
        except Exception:
            continue
    try:
        import torch

        versions.append(f"CUDA {torch.version.cuda}")
    except ImportError:
        pass
    lines.append(f"python {platform.python_version()}; " + ", ".join(versions))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repository", required=True, help="model repository written by prepare.py")
    parser.add_argument("--tritonserver", required=True)
    parser.add_argument("--backends", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--prefix", default="", help="file name prefix, e.g. h100-")
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--gpu", action="store_true", help="a GPU is there: Triton's GPU metrics and NVML on")
    parser.add_argument("--server-cpus", default="0-7", help="cores for tritonserver; the load generator gets the rest")
    parser.add_argument("--processes", type=int, default=8, help="load generator processes")
    parser.add_argument("--closed", default="8,32,64,96", help="closed-loop concurrencies")
    parser.add_argument("--closed-seconds", type=float, default=4)
    parser.add_argument("--fractions", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0,1.1,1.25,1.5,2.0")
    parser.add_argument("--open-seconds", type=float, default=10)
    parser.add_argument("--warmup-seconds", type=float, default=2)
    parser.add_argument("--step", default="20:0.3,40:1.5", help="load step: seconds:fraction of capacity, ...")
    args = parser.parse_args()
    plan = Plan(
        closed=tuple(int(c) for c in args.closed.split(",")),
        closed_s=args.closed_seconds,
        fractions=tuple(float(f) for f in args.fractions.split(",")),
        open_s=args.open_seconds,
        warmup_s=args.warmup_seconds,
        step=tuple((float(s), float(f)) for s, f in (p.split(":") for p in args.step.split(","))),
    )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    env = environment()
    print("\n".join(env), flush=True)
    for model in args.models:
        measure(args, model, plan, env)


if __name__ == "__main__":
    sys.exit(main())
