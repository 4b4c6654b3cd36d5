"""The status refresh queue: many asks of one InferenceService become one refresh, never two of
it at once, and an API error is retried."""

from __future__ import annotations

import threading
import time

from urllib3.exceptions import HTTPError

from unbusy.controller import refresher
from unbusy.controller.refresher import Refresher


def wait_for(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_asks_while_waiting_become_one_refresh():
    done: list[tuple[str, str]] = []
    gate = threading.Event()

    def refresh(key):
        gate.wait(5)
        done.append(key)

    queue = Refresher(refresh, threads=1)
    queue.start()
    queue.ask(("ns", "first"))  # the one thread takes it and waits at the gate
    wait_for(lambda: queue.pending() == 0)
    for _ in range(5):  # a Deployment rollout's events, while the thread is busy
        queue.ask(("ns", "a"))
    queue.ask(("ns", "b"))
    gate.set()
    wait_for(lambda: len(done) == 3)
    queue.stop()
    assert done == [("ns", "first"), ("ns", "a"), ("ns", "b")]


def test_one_key_is_never_refreshed_by_two_threads_at_once():
    running, most, done = [0], [0], []
    lock = threading.Lock()

    def refresh(key):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        done.append(key)

    queue = Refresher(refresh, threads=4)
    queue.start()
    queue.ask(("ns", "a"))
    time.sleep(0.01)
    queue.ask(("ns", "a"))  # asked again while refreshing: once more after, not beside it
    wait_for(lambda: len(done) == 2)
    queue.stop()
    assert most[0] == 1


def test_an_api_error_is_retried(monkeypatch):
    monkeypatch.setattr(refresher, "RETRY_S", 0.05)
    calls: list[float] = []

    def refresh(key):
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise HTTPError("connection refused")

    queue = Refresher(refresh, threads=1)
    queue.start()
    queue.ask(("ns", "a"))
    wait_for(lambda: len(calls) == 2)
    queue.stop()
    assert calls[1] - calls[0] >= 0.05


def test_a_bug_for_one_key_does_not_stop_the_others():
    done = []

    def refresh(key):
        if key == ("ns", "broken"):
            raise KeyError("status")
        done.append(key)

    queue = Refresher(refresh, threads=1)
    queue.start()
    queue.ask(("ns", "broken"))
    queue.ask(("ns", "fine"))
    wait_for(lambda: done == [("ns", "fine")])
    queue.stop()
