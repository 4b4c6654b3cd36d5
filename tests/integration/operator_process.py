"""The operator as a user runs it: `unbusy run` in its own process, against the testbed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from polling import stop, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "serving.unbusy.dev_inferenceservices.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OperatorProcess:
    def __init__(self, kubeconfig: Path, log: Path, *args: str):
        self.kubeconfig = kubeconfig
        self.log = log
        self.args = args  # more `unbusy run` options
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> OperatorProcess:
        command = [
            sys.executable,
            "-m",
            "unbusy.cli",
            "run",
            "--kubeconfig",
            str(self.kubeconfig),
            "--metrics-port",
            str(self.metrics_port),
            "--health-port",
            str(self.health_port),
            *self.args,
        ]
        env = dict(os.environ, PYTHONPATH=str(ROOT / "operator"))
        with self.log.open("a") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        health = f"http://127.0.0.1:{self.health_port}/healthz"
        wait_until_serving(self.process, health, "operator", lambda: self.log.read_text()[-3000:])

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a node dies under the operator."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        stop(self.process)

    def metric(self, sample: str) -> float:
        """Sum of the samples on the operator's /metrics that match `name` or `name{label="value"}`."""
        name, _, labels = sample.partition("{")
        wanted = labels.rstrip("}")
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        total = 0.0
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            if series.partition("{")[0] == name and wanted in series:
                total += float(value)
        return total
