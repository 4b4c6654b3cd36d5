"""Measuring an operator at rest, from outside it: its CPU and peak memory (/proc), the queries
Prometheus answered (Prometheus's own counter) and the write requests the API server answered
(its own apiserver_request_total), for bench/reconcile.py and tests/integration/test_fleet.py."""

from __future__ import annotations

import os
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

# What others write while nothing changes: kwok's node heartbeats, the components' leader leases.
OTHERS = {"leases", "nodes"}
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"}


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of one counter in Prometheus' text format, with their labels."""
    return [
        (s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples if s.name == name
    ]


def api_writes(metrics: Callable[[], str]) -> Counter[str]:
    """Write requests the API server has answered so far, by resource/verb and status code (a
    409 is a write refused for a stale resourceVersion), others' excluded; `metrics` returns the
    API server's /metrics."""
    counted: Counter[str] = Counter()
    for labels, value in samples(metrics(), "apiserver_request_total"):
        if labels.get("verb") in WRITE_VERBS and labels.get("resource") not in OTHERS:
            key = "/".join(filter(None, [labels.get("resource"), labels.get("subresource")]))
            counted[f"{key} {labels['verb']} {labels.get('code')}"] += int(value)
    return counted


def queries_answered(prometheus_url: str) -> float:
    """Instant queries the Prometheus at this URL has answered so far."""
    text = urllib.request.urlopen(f"{prometheus_url}/metrics", timeout=5).read().decode()
    return sum(
        v for labels, v in samples(text, "prometheus_http_requests_total") if labels["handler"] == "/api/v1/query"
    )


def described(writes: Counter[str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(writes.items()) if v) or "none"
