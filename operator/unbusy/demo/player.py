"""`unbusy demo`: the closed loop for one InferenceService with a fallback variant, and a load step
played through it, printed as it goes and summarised at the end (text, JSON, CSV and a PNG).

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

from unbusy.api import InferenceService
from unbusy.demo import playback, plot
from unbusy.demo.loop import ClosedLoop
from unbusy.demo.processes import PROMETHEUS_MISSING, prometheus_binary
from unbusy.kube.client import CountingClient, connect
from unbusy.kube.observe import variant_states
from unbusy.kube.status import get_inference_service
from unbusy.serving.model import DEFAULT_FALLBACK_PROFILE, from_service, load_profile
from unbusy.sim import plot as plotting
from unbusy.sim.cli import BASE_LOAD
from unbusy.sim.stats import Histogram
from unbusy.timestamps import parse

STEP_FACTOR = 8
# Before, step, after. After the step, the demand's 60 s rate window must fall below the replicas'
# capacity and restoreSeconds pass before the weight comes back: about 70 s here.
FULL_S = (30, 120, 120)
SHORT_S = (5, 40, 75)
READY_TIMEOUT_S = 240
# Steady this long before the step (replicas ready, no decision, no weight shed): past the start's
# transients, such as a replica of start-up headroom while the demand's rate window fills.
SETTLE_S = 10


class Player:
    def __init__(self, kubeconfig: Path, isvc: InferenceService, workdir: Path, short: bool) -> None:
        self.isvc, self.workdir = isvc, workdir
        self.roles = playback.roles(isvc)
        binary = prometheus_binary()
        if binary is None:
            raise ValueError(PROMETHEUS_MISSING)
        base = BASE_LOAD * from_service(isvc).capacity_rps * max(1, self.roles.min_replicas)
        self.phases = playback.load_step(round(base, -1), STEP_FACTOR, SHORT_S if short else FULL_S)
        fallback = load_profile(DEFAULT_FALLBACK_PROFILE)  # what `unbusy simulate` assumes the fallback serves
        self.loop = ClosedLoop(kubeconfig, isvc, self.phases[0].rps, workdir, binary, fallback=fallback)
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
        emulator = self.loop.emulator
        emulator.take_tally()  # count from the step's start
        self.decided_before = self._decision(self._status())
        start = time.monotonic()
        printed = ("", 0)
        for index, (phase, second) in enumerate(schedule):
            if second == 0:
                emulator.set_rate(phase.rps)
                print(f"{index:>4}s  {phase.name}: {phase.rps:,.0f} requests/s for {phase.seconds} s", flush=True)
            time.sleep(max(0.0, start + index + 1 - time.monotonic()))
            tally = emulator.take_tally()
            latencies.setdefault(phase.name, Histogram()).merge(tally.latency)
            desired, ready = self._replicas()
            status = self._status()
            decision = self._decision(status)
            weight = (emulator.weights() or {}).get(self.roles.fallback, 0)
            sample = playback.Sample(
                second=index,
                phase=phase.name,
                offered=tally.arrived,
                answered=sum(n for v, n in tally.answered.items() if v != self.roles.fallback),
                fallback_answered=tally.answered.get(self.roles.fallback, 0.0),
                rejected=tally.rejected,
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
        title = f"{self.isvc.metadata.name}: a {STEP_FACTOR}x load step on the testbed (kwok pods, emulated Triton)"
        plot.write_png(samples, self.phases, self.roles, title, png)
        return text + f"plot: {png}\n"


def run(kubeconfig: Path, isvc: InferenceService, workdir: Path, short: bool) -> None:
    """Play the step, then hold the base rate until SIGTERM; stops what it started either way."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "done").unlink(missing_ok=True)
    player = Player(kubeconfig, isvc, workdir, short)

    def leave(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)
    pids = workdir / "pids"
    pids.mkdir(exist_ok=True)
    try:
        player.loop.start()
        # For `make demo-down`, should this process die without stopping them.
        (pids / "prometheus.pid").write_text(f"{player.loop.prometheus.process.pid}\n")
        (pids / "operator.pid").write_text(f"{player.loop.operator.process.pid}\n")
        print(f"prometheus {player.loop.prometheus.url}, emulator http://{player.loop.emulator.address}/metrics")
        player.wait_until_steady()
        namespace = isvc.metadata.namespace
        print(
            f"\nwatch it from another terminal:\n  export KUBECONFIG={kubeconfig}\n"
            f"  kubectl get infsvc -n {namespace} -o wide -w\n",
            flush=True,
        )
        samples, latencies = player.play()
        print("\n" + player.write(samples, latencies), flush=True)
        player.loop.emulator.set_rate(player.phases[-1].rps)
        (workdir / "done").write_text(f"{os.getpid()}\n")
        while True:
            time.sleep(3600)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop is enough: let it finish
        player.loop.stop()
        for name in ("prometheus.pid", "operator.pid"):
            (pids / name).unlink(missing_ok=True)
