"""`unbusy demo`: the closed loop for one InferenceService with a fallback variant, and a load step
played through it, printed as it goes and summarised at the end (text, JSON, CSV and a PNG).

The load is real HTTP through the testbed's Gateway API proxy (Traefik), to every Ready pod's
address, where the emulator answers as the calibrated replica would (sim/answer.py); the summary
counts what the load generator received, by the variant each answer names. A calibrated replica
serves ~1,000 requests/s, more than Python's load and answerers push through the proxy on a small
machine: the demo's model runs SLOWER times slower, in batches BATCH the size
(playback.slowed_manifest: what `unbusy demo --manifest` prints and `make demo` applies), with
the same queues, scaling and shedding at 1/SLOWER of the rates, on the same timeline.

It runs until SIGTERM (`make demo-down`): after the step the load stays at its base rate, so
that the cluster stays as the demo left it for a look around. Everything it writes goes to
--workdir, with `done` last once the summary is out.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from unbusy.api import InferenceService, load
from unbusy.demo import playback, plot
from unbusy.demo.http_load import OpenLoad
from unbusy.demo.loop import ClosedLoop
from unbusy.demo.processes import PROMETHEUS_MISSING, prometheus_binary
from unbusy.kube.client import CountingClient, connect
from unbusy.kube.observe import route_weights, variant_states
from unbusy.kube.status import get_inference_service
from unbusy.serving.model import DEFAULT_FALLBACK_PROFILE, DEFAULT_PROFILE, from_service, load_profile, slowed
from unbusy.sim import plot as plotting
from unbusy.sim.cli import BASE_LOAD
from unbusy.sim.stats import Histogram
from unbusy.timestamps import parse

STEP_FACTOR = 8
# The demo's model this many times slower than the calibrated one: ResNet-50's ~1,000 requests/s a
# replica become ~20, and the 8x step ~80 requests/s through the proxy (Python carried ~145 on 2 cores);
# in batches this many times the size (32 -> 4), so that a batch takes 0.2 s, not 1.6: its answers,
# which the proxy counts, come a few at a time and not in clumps longer than a scrape apart.
SLOWER = 50
BATCH = 1 / 8
# Before, step, after. After the step, the demand's 60 s rate window must fall below the replicas'
# capacity and restoreSeconds pass before the weight comes back: about 70 s here.
FULL_S = (30, 120, 120)
SHORT_S = (5, 40, 75)
READY_TIMEOUT_S = 240
# Steady this long before the step (replicas ready, no decision, no weight shed): past the start's
# transients, such as a replica of start-up headroom while the demand's rate window fills.
SETTLE_S = 10


def demo_manifest(manifest: dict) -> dict:
    """What the demo applies and plays: `manifest` (an InferenceService routed through a Gateway,
    with a fallback) with its model SLOWER times slower; raises ValueError naming the field."""
    isvc = load(manifest)
    playback.roles(isvc)
    routing = isvc.spec.routing
    if routing is None or routing.effective_provider != "gateway":
        raise ValueError(
            "spec.routing.gateway: the demo plays its load through the testbed's Gateway API proxy; "
            "route through a Gateway (gateway-system/inference-gateway on the testbed)"
        )
    if isvc.spec.model.llm is not None:
        raise ValueError("spec.model.llm: the demo plays a fixed-cost model; leave llm out")
    serving = isvc.spec.model.serving or load_profile(DEFAULT_PROFILE)
    return playback.slowed_manifest(manifest, SLOWER, BATCH, serving)


class Player:
    def __init__(
        self, kubeconfig: Path, isvc: InferenceService, workdir: Path, short: bool, proxy: str, proxy_metrics: str
    ) -> None:
        """`isvc` as demo_manifest made it; `proxy` the Gateway's HTTP entry and `proxy_metrics` its
        Prometheus metrics (host:port each)."""
        self.isvc, self.workdir = isvc, workdir
        self.roles = playback.roles(isvc)
        binary = prometheus_binary()
        if binary is None:
            raise ValueError(PROMETHEUS_MISSING)
        base = BASE_LOAD * from_service(isvc).capacity_rps * max(1, self.roles.min_replicas)
        self.phases = playback.load_step(round(base), STEP_FACTOR, SHORT_S if short else FULL_S)
        # What `unbusy simulate` assumes the fallback serves, slowed as the main model is.
        fallback = slowed(load_profile(DEFAULT_FALLBACK_PROFILE), SLOWER, BATCH)
        self.loop = ClosedLoop(kubeconfig, isvc, 0.0, workdir, binary, fallback=fallback, proxy_metrics=proxy_metrics)
        routing = isvc.spec.routing
        path = f"{routing.path.rstrip('/')}/v2/models/{isvc.spec.model.name}/infer"
        self.load = OpenLoad(proxy, routing.host, path, self.phases[0].rps)
        self.api: CountingClient = connect(str(kubeconfig))
        self.decided_before = ""  # status.lastScaling as the playback begins

    # --- the cluster, as kubectl shows it -----------------------------------------------------

    def _status(self) -> dict[str, Any]:
        obj = get_inference_service(self.api, self.isvc.metadata.namespace, self.isvc.metadata.name) or {}
        return obj.get("status") or {}

    def _replicas(self) -> tuple[int, int]:
        """The main variant's (desired, ready)."""
        weights = {self.roles.variant: self.roles.weight}
        [state] = variant_states(self.api, self.isvc.metadata.namespace, self.isvc.metadata.name, weights, {})
        return state.desired, state.ready

    def _learned_capacity(self, status: dict[str, Any]) -> float | None:
        entry = next((e for e in status.get("learned", []) if e.get("variant") == self.roles.variant), None)
        return entry.get("capacity") if entry else None

    @staticmethod
    def _decision(status: dict[str, Any]) -> str:
        last = status.get("lastScaling")
        return f"{last['variant']} {last['fromReplicas']} -> {last['toReplicas']}: {last['reason']}" if last else ""

    def _unsteady(self) -> str | None:
        """What is not yet as the step should find it, or None."""
        status = self._status()
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        for condition in ("Ready", "ScalingActive"):
            if conditions.get(condition) != "True":
                return f"{condition}=True"
        desired, ready = self._replicas()
        if ready != desired:
            return f"{self.roles.variant}'s {desired} replicas ready"
        last = status.get("lastScaling")
        if last and time.time() - parse(last["time"]).timestamp() < SETTLE_S:
            return f"no scaling decision for {SETTLE_S} s"
        if status.get("shedding"):
            return f"no weight on {self.roles.fallback}"
        received = self.load.take()  # since the last look: the base rate, through the proxy
        if received.of(self.roles.variant, 200) == 0 or received.of(status=200) < received.total:
            return f"every request answered by {self.roles.variant}'s pods through the proxy"
        return None

    def wait_until_steady(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        steady_since, shown = None, None
        while steady_since is None or time.monotonic() - steady_since < SETTLE_S:
            waiting = self._unsteady()
            if waiting is not None and time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.isvc.metadata.name}: not {waiting} in {READY_TIMEOUT_S} s; "
                    f"see {self.workdir / 'operator.log'}"
                )
            if waiting != shown and waiting is not None:
                print(f"waiting for {waiting} ...", flush=True)
            shown = waiting
            steady_since = None if waiting else steady_since or time.monotonic()
            time.sleep(1)

    def play(self) -> tuple[list[playback.Sample], dict[str, Histogram]]:
        samples: list[playback.Sample] = []
        latencies: dict[str, Histogram] = {}
        schedule = [(phase, second) for phase in self.phases for second in range(phase.seconds)]
        self.load.take()  # count from the step's start
        self.decided_before = self._decision(self._status())
        start = time.monotonic()
        printed = ("", 0)
        for index, (phase, second) in enumerate(schedule):
            if second == 0:
                self.load.set_rate(phase.rps)
                print(f"{index:>4}s  {phase.name}: {phase.rps:,.0f} requests/s for {phase.seconds} s", flush=True)
            time.sleep(max(0.0, start + index + 1 - time.monotonic()))
            received = self.load.take()
            latencies.setdefault(phase.name, Histogram()).merge(received.latency)
            desired, ready = self._replicas()
            status = self._status()
            decision = self._decision(status)
            weight = self._fallback_weight()
            fallback_answered = received.of(self.roles.fallback, 200)
            rejected = received.of(status=503)
            sample = playback.Sample(
                second=index,
                phase=phase.name,
                offered=received.sent,
                answered=received.of(status=200) - fallback_answered,
                fallback_answered=fallback_answered,
                rejected=rejected,
                failed=received.total - received.of(status=200) - rejected + sum(received.errors.values()),
                desired=desired,
                ready=ready,
                fallback_weight=weight,
                last_scaling=decision,
                learned_capacity=self._learned_capacity(status),
            )
            samples.append(sample)
            if (decision, weight) != printed or index % 10 == 9:
                self._progress(sample, printed)
                printed = (decision, weight)
        return samples, latencies

    def _fallback_weight(self) -> int:
        """The fallback's share of the HTTPRoute's weights, in percent."""
        weights = route_weights(self.api, self.isvc.metadata.namespace, self.isvc.metadata.name)
        total = sum(weights.values())
        return round(100 * weights.get(self.roles.fallback, 0) / total) if total else 0

    def _progress(self, s: playback.Sample, printed: tuple[str, int]) -> None:
        line = (
            f"{s.second:>4}s  offered {s.offered:>5,.0f}/s  answered {s.answered + s.fallback_answered:>5,.0f}/s"
            f"  503 {s.rejected:>5,.0f}/s  {self.roles.variant} {s.ready}/{s.desired}"
            f"  {self.roles.fallback} weight {s.fallback_weight}%"
        )
        if s.last_scaling != printed[0]:
            line += f"\n        scaled {s.last_scaling}"
        print(line, flush=True)

    def write(self, samples: list[playback.Sample], latencies: dict[str, Histogram]) -> str:
        summary = playback.summarize(
            samples,
            latencies,
            self.phases,
            self.roles.variant,
            self.roles.fallback,
            self.roles.max_replicas,
            self.decided_before,
            from_service(self.isvc).capacity_rps,
        )
        every = playback.rows_every(len(samples))
        text = playback.report(summary) + "\n" + playback.table(samples, every, self.roles.variant, self.roles.fallback)
        (self.workdir / "summary.txt").write_text(text)
        (self.workdir / "summary.json").write_text(json.dumps(summary.to_json(), indent=1) + "\n")
        with (self.workdir / "timeline.csv").open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(asdict(samples[0])))
            writer.writeheader()
            writer.writerows(asdict(s) for s in samples)
        text += f"\ntimeline: {self.workdir / 'timeline.csv'}\n"
        if not plotting.available():
            return text + "no plot: it needs matplotlib (make demo installs it)\n"
        png = self.workdir / "demo.png"
        title = (
            f"{self.isvc.metadata.name}: a {STEP_FACTOR}x load step through Traefik "
            f"(kwok pods, emulated Triton {SLOWER}x slower)"
        )
        plot.write_png(samples, self.phases, self.roles, title, png)
        return text + f"plot: {png}\n"


def run(kubeconfig: Path, isvc: InferenceService, workdir: Path, short: bool, proxy: str, proxy_metrics: str) -> None:
    """Play the step, then hold the base rate until SIGTERM; stops what it started either way."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "done").unlink(missing_ok=True)
    player = Player(kubeconfig, isvc, workdir, short, proxy, proxy_metrics)

    def leave(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)
    pids = workdir / "pids"
    pids.mkdir(exist_ok=True)
    try:
        player.loop.start()
        player.load.start()  # the base rate, while the service comes up
        # For `make demo-down`, should this process die without stopping them.
        (pids / "prometheus.pid").write_text(f"{player.loop.prometheus.process.pid}\n")
        (pids / "operator.pid").write_text(f"{player.loop.operator.process.pid}\n")
        print(
            f"prometheus {player.loop.prometheus.url}, emulator http://{player.loop.emulator.address}/metrics, "
            f"load through http://{proxy} (Host {isvc.spec.routing.host})"
        )
        player.wait_until_steady()
        namespace = isvc.metadata.namespace
        print(
            f"\nwatch it from another terminal:\n  export KUBECONFIG={kubeconfig}\n"
            f"  kubectl get infsvc -n {namespace} -o wide -w\n",
            flush=True,
        )
        samples, latencies = player.play()
        print("\n" + player.write(samples, latencies), flush=True)
        player.load.set_rate(player.phases[-1].rps)
        (workdir / "done").write_text(f"{os.getpid()}\n")
        while True:
            time.sleep(3600)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop is enough: let it finish
        player.load.stop()
        player.loop.stop()
        for name in ("prometheus.pid", "operator.pid"):
            (pids / name).unlink(missing_ok=True)
