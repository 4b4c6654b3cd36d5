"""A work queue of InferenceService keys, as controller-runtime's: a few threads work off the
keys that events put in, each key at most once however many events asked while it waited, never
by two threads at once (asked again meanwhile, it runs once more after), and after an API error
again, RETRY_S later, doubling with each failure in a row up to MAX_RETRY_S: a key that keeps
failing (its namespace being deleted) does not take the threads from the others. The operator
keeps two: reconciles, and status refreshes.

kopf's per-object workers only drop a key in and return, and the work reads the object when its
turn comes: in a creation storm, or when a restarted operator resumes a thousand at once, no
parsed body waits in kopf's queues for an executor thread (that backlog was most of the
operator's peak memory), and the five events of one Deployment's rollout become one refresh.

The resync is the refresh queue's own schedule of the keys it tracks (each once per `resync_s`,
the first at a random point of the first interval, so a thousand do not come due at once), not a
kopf timer per object: kopf keeps the whole last-seen body of every object with a timer or a
daemon, managedFields and all (61 KB each, measured: most of the operator's memory at rest)."""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from collections.abc import Callable

from kubernetes.dynamic.exceptions import DynamicApiError
from urllib3.exceptions import HTTPError

log = logging.getLogger("unbusy")
Key = tuple[str, str]  # namespace, name

RETRY_S = 5.0  # after an API error: the API server restarting, a lost connection
MAX_RETRY_S = 300.0


class WorkQueue:
    def __init__(self, work: Callable[[Key], None], threads: int, what: str, resync_s: float | None = None):
        """`what` the work is, for the log; `resync_s`: how often tracked keys come due (None: never)."""
        self._work, self._what = work, what
        self._resync_s = resync_s
        self._waiting: dict[Key, None] = {}  # in the order asked
        self._later: dict[Key, float] = {}  # to retry at (time.monotonic())
        self._failures: dict[Key, int] = {}  # API errors in a row
        self._resync: dict[Key, float] = {}  # tracked keys -> their next resync (time.monotonic())
        self._due: list[tuple[float, Key]] = []  # heap of the same; an entry not in _resync is stale
        self._busy: set[Key] = set()
        self._changed = threading.Condition()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._run, name=f"unbusy-{what.replace(' ', '-')}-{i}", daemon=True)
            for i in range(threads)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        for thread in self._threads:
            thread.join(30)

    def ask(self, key: Key) -> None:
        with self._changed:
            if key not in self._waiting:
                self._waiting[key] = None
                self._changed.notify()

    def track(self, key: Key) -> None:
        """Resync `key` every resync_s from now on (a no-op for a key already tracked)."""
        with self._changed:
            if self._resync_s is not None and key not in self._resync:
                self._schedule(key, time.monotonic() + random.uniform(0, self._resync_s))
                self._changed.notify()

    def forget(self, key: Key) -> None:
        """`key` is gone: no resync, retry or waiting work for it."""
        with self._changed:
            self._resync.pop(key, None)
            self._later.pop(key, None)
            self._failures.pop(key, None)
            self._waiting.pop(key, None)

    def namespaces(self) -> set[str]:
        """The namespaces of the keys tracked."""
        with self._changed:
            return {namespace for namespace, _ in self._resync}

    def _schedule(self, key: Key, at: float) -> None:
        self._resync[key] = at
        heapq.heappush(self._due, (at, key))

    def pending(self) -> int:
        with self._changed:
            return len(self._waiting) + len(self._later)

    def _next(self) -> Key | None:
        with self._changed:
            while not self._stopped:
                now = time.monotonic()
                for key in [k for k, at in self._later.items() if at <= now]:
                    del self._later[key]
                    self._waiting.setdefault(key, None)
                while self._due and self._due[0][0] <= now:
                    at, key = heapq.heappop(self._due)
                    if self._resync.get(key) == at:
                        self._schedule(key, max(at + (self._resync_s or 0.0), now))
                        self._waiting.setdefault(key, None)
                key = next((k for k in self._waiting if k not in self._busy), None)
                if key is not None:
                    del self._waiting[key]
                    self._busy.add(key)
                    return key
                wakes = [*self._later.values(), *(at for at, _ in self._due[:1]), now + 60]
                self._changed.wait(min(wakes) - now)
            return None

    def _failed(self, key: Key) -> float:
        """Seconds until `key` is tried again after one more API error in a row."""
        with self._changed:
            self._failures[key] = failures = self._failures.get(key, 0) + 1
            return min(RETRY_S * 2 ** (failures - 1), MAX_RETRY_S)

    def _done(self, key: Key, retry_in: float | None) -> None:
        with self._changed:
            self._busy.discard(key)
            if retry_in is None:
                self._failures.pop(key, None)
            elif key not in self._waiting:
                self._later[key] = time.monotonic() + retry_in
            self._changed.notify_all()

    def _run(self) -> None:
        while (key := self._next()) is not None:
            retry_in = None
            try:
                self._work(key)
            except (DynamicApiError, HTTPError) as error:
                retry_in = self._failed(key)
                log.warning("%s/%s: %s failed, again in %.0fs: %s", *key, self._what, retry_in, error)
            except Exception:  # a bug for one InferenceService must not stop the others' work
                log.exception("%s/%s: %s failed", *key, self._what)
            finally:
                self._done(key, retry_in)
