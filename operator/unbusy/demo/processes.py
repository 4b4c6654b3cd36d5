"""The processes of a local closed loop, each on a free port of 127.0.0.1: the operator as a user
runs it (`unbusy run`) and a Prometheus of our own (Debian's `prometheus` binary)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # operator/: what `python -m unbusy.cli` imports from
PROMETHEUS_MISSING = "prometheus not installed (Debian package `prometheus`; `make promtool` installs it)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(
    process: subprocess.Popen, url: str, what: str, log_tail: Callable[[], str], timeout: float = 60
) -> None:
    """Wait until `url` answers; fail early, with the log's tail, if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited {process.returncode}:\n{log_tail()}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{what} not serving in {timeout}s:\n{log_tail()}")


def stop(process: subprocess.Popen | None, grace: float = 15) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def prometheus_binary() -> str | None:
    """Debian's prometheus: on PATH, or where the package puts it."""
    return shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)


class OperatorProcess:
    """`unbusy run` in its own process against `kubeconfig`, with `args` (more `unbusy run` options)."""

    def __init__(self, kubeconfig: Path, log: Path, *args: str):
        self.kubeconfig = kubeconfig
        self.log = log
        self.args = args
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> OperatorProcess:
        command = [sys.executable, "-m", "unbusy.cli", "run", "--kubeconfig", str(self.kubeconfig)]
        command += ["--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port), *self.args]
        env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT))
        with self.log.open("a") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        health = f"http://127.0.0.1:{self.health_port}/healthz"
        wait_until_serving(self.process, health, "operator", lambda: self.log.read_text()[-3000:])
        return self

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


class Prometheus:
    """A Prometheus of our own on 127.0.0.1, scraping `targets` every second (as `job`, keeping their
    labels) and evaluating `rules` (a rule file's text) every second; stop() and start() keep its
    port and data, as a restarted Prometheus in a cluster would."""

    def __init__(self, binary: str, workdir: Path, targets: list[str], job: str = "emulator", rules: str = ""):
        self.binary, self.workdir = binary, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.config = workdir / "prometheus.yml"
        config = "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        if rules:
            (workdir / "rules.yaml").write_text(rules)
            config += f"rule_files: [{str(workdir / 'rules.yaml')!r}]\n"
        config += (
            f"scrape_configs:\n  - job_name: {job}\n    honor_labels: true\n"
            f"    static_configs:\n      - targets: [{', '.join(repr(t) for t in targets)}]\n"
        )
        self.config.write_text(config)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Prometheus:
        command = [
            self.binary,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ]
        with (self.workdir / "prometheus.log").open("a") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_until_serving(self.process, f"{self.url}/-/ready", "prometheus", self.log_tail, timeout)
        return self

    def stop(self) -> None:
        stop(self.process, grace=20)

    def firing(self) -> list[str]:
        """Names of the alerts firing now (not those pending)."""
        answer = json.loads(urllib.request.urlopen(f"{self.url}/api/v1/alerts", timeout=3).read())
        return [a["labels"]["alertname"] for a in answer["data"]["alerts"] if a["state"] == "firing"]

    def log_tail(self) -> str:
        return (self.workdir / "prometheus.log").read_text()[-2000:]
