"""The work queues of reconciles and refreshes: many asks of one InferenceService become one run,
never two of it at once, an API error is retried, tracked keys are resynced; and a refresh never
speaks for a generation not reconciled."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from builders import ON_KWOK, manifest
from urllib3.exceptions import HTTPError

from unbusy.controller import reconcile, workqueue
from unbusy.controller.workqueue import WorkQueue


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

    queue = WorkQueue(refresh, threads=1, what="test")
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

    queue = WorkQueue(refresh, threads=4, what="test")
    queue.start()
    queue.ask(("ns", "a"))
    time.sleep(0.01)
    queue.ask(("ns", "a"))  # asked again while refreshing: once more after, not beside it
    wait_for(lambda: len(done) == 2)
    queue.stop()
    assert most[0] == 1


def test_an_api_error_is_retried_later_and_later(monkeypatch):
    monkeypatch.setattr(workqueue, "RETRY_S", 0.05)
    calls: list[float] = []

    def refresh(key):
        calls.append(time.monotonic())
        if len(calls) <= 3:
            raise HTTPError("connection refused")

    queue = WorkQueue(refresh, threads=1, what="test")
    queue.start()
    queue.ask(("ns", "a"))
    wait_for(lambda: len(calls) == 4)
    queue.stop()
    gaps = [after - before for before, after in itertools.pairwise(calls)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2  # doubling after each failure in a row


def test_a_bug_for_one_key_does_not_stop_the_others():
    done = []

    def refresh(key):
        if key == ("ns", "broken"):
            raise KeyError("status")
        done.append(key)

    queue = WorkQueue(refresh, threads=1, what="test")
    queue.start()
    queue.ask(("ns", "broken"))
    queue.ask(("ns", "fine"))
    wait_for(lambda: done == [("ns", "fine")])
    queue.stop()


class Reached(Exception):
    """Raised by an API client the moment a refresh first uses it."""


class Untouchable:
    def __getattr__(self, name):
        raise Reached(name)


def body(generation: int, observed: int | None) -> dict:
    service = manifest(ON_KWOK)
    service["metadata"] |= {"generation": generation, "uid": "u"}
    service["status"] = {} if observed is None else {"observedGeneration": observed}
    return service


def test_a_refresh_writes_only_for_a_generation_whose_reconcile_finished():
    # Never reconciled, or its spec changed since: the reconcile under way (or cut off by an API
    # server restart before its children were all applied) writes the next status, not the refresh.
    reconcile.refresh_status(Untouchable(), body(1, None))
    reconcile.refresh_status(Untouchable(), body(3, 2))
    with pytest.raises(Reached):
        reconcile.refresh_status(Untouchable(), body(2, 2))
    with pytest.raises(Reached):
        reconcile.refresh_status(Untouchable(), body(3, 2), reconciled=True)


def test_tracked_keys_are_resynced_on_their_own_schedule_until_forgotten():
    done: list[tuple[str, str]] = []
    queue = WorkQueue(done.append, threads=2, what="test", resync_s=0.2)
    queue.start()
    queue.track(("ns", "a"))
    queue.track(("ns", "b"))
    queue.track(("ns", "a"))  # tracked already: the same schedule
    time.sleep(1.1)
    queue.forget(("ns", "b"))
    after_forget = done.count(("ns", "b"))
    time.sleep(0.6)
    queue.stop()
    # Each once per 0.2 s, the first within the first 0.2 s: 5 or 6 times in 1.1 s (4 on a busy machine).
    assert 4 <= after_forget <= 6 and done.count(("ns", "a")) >= 6
    assert done.count(("ns", "b")) == after_forget
