"""A real Prometheus of our own (Debian's `prometheus`), for the closed-loop tests and the benchmarks."""

from __future__ import annotations

import subprocess
from pathlib import Path

from operator_process import free_port

from polling import stop, wait_until_serving


class Prometheus:
    """A Prometheus of our own on 127.0.0.1, scraping `targets` every second; stop() and start()
    keep its port and data, as a restarted Prometheus in a cluster would."""

    def __init__(self, binary: str, workdir: Path, targets: list[str]):
        self.binary, self.workdir = binary, workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: emulator\n    honor_labels: true\n"
            f"    static_configs:\n      - targets: [{', '.join(repr(t) for t in targets)}]\n"
        )

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

    def log_tail(self) -> str:
        return (self.workdir / "prometheus.log").read_text()[-2000:]
