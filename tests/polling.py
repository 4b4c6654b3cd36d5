"""Waiting for a real system to converge, with a failure message that shows where it stood; and
watching or driving it from a thread while a test's with-block runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Self


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


class Repeating:
    """step() in a daemon thread every `every` seconds while the with-block runs (for `bound_s` at the
    most, whatever the test does); the block's end stops it and waits for the step under way."""

    def __init__(self, every: float, bound_s: float = 300) -> None:
        self.every, self.bound_s = every, bound_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)

    def step(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        deadline = time.monotonic() + self.bound_s
        while not self._stop.wait(self.every) and time.monotonic() < deadline:
            self.step()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
