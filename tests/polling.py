"""Waiting for a real system to converge, with a failure message that shows where it stood."""

from __future__ import annotations

import time
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
