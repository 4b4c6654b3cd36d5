"""Waiting for a real system to converge, with a failure message that shows where it stood."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable


def eventually(
    check: Callable[[], object], timeout: float = 60, every: float = 0.5, describe: Callable[[], str] = lambda: ""
) -> object:
    """Poll until check() returns something truthy; fail with the last value seen and describe()."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not true within {timeout}s; last value: {value!r} {describe()}".rstrip())


def wait_until_serving(
    process: subprocess.Popen, url: str, what: str, log_tail: Callable[[], str], timeout: float = 60
) -> None:
    """Wait until `url` answers; fail early, with the log's tail, if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited {process.returncode}:\n{log_tail()}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{what} not serving in {timeout}s:\n{log_tail()}")


def stop(process: subprocess.Popen | None, grace: float = 15) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
