"""Status refreshes that events ask for (a Deployment changed, a node was lost, the periodic
resync), worked off by a few threads from one queue of InferenceService keys, each key at most
once however many events asked while it waited, as a controller-runtime work queue does.

kopf's per-object workers only drop a key in and return: in a creation storm the thousands of
Deployment events no longer wait for an executor thread, each holding its parsed body (that
backlog was most of the operator's peak memory), and the five events of one Deployment's rollout
become one refresh. A key being refreshed is never refreshed by a second thread at once; asked
again meanwhile, it runs once more after."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kubernetes.dynamic.exceptions import DynamicApiError
from urllib3.exceptions import HTTPError

log = logging.getLogger("unbusy")
Key = tuple[str, str]  # namespace, name

RETRY_S = 5.0  # after an API error: the API server restarting, a lost connection


class Refresher:
    def __init__(self, refresh: Callable[[Key], None], threads: int):
        self._refresh = refresh
        self._waiting: dict[Key, None] = {}  # in the order asked
        self._later: dict[Key, float] = {}  # to retry at (time.monotonic())
        self._busy: set[Key] = set()
        self._changed = threading.Condition()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._run, name=f"unbusy-refresh-{i}", daemon=True) for i in range(threads)
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
                key = next((k for k in self._waiting if k not in self._busy), None)
                if key is not None:
                    del self._waiting[key]
                    self._busy.add(key)
                    return key
                self._changed.wait(min(self._later.values(), default=now + 60) - now)
            return None

    def _done(self, key: Key, retry: bool) -> None:
        with self._changed:
            self._busy.discard(key)
            if retry and key not in self._waiting:
                self._later[key] = time.monotonic() + RETRY_S
            self._changed.notify_all()

    def _run(self) -> None:
        while (key := self._next()) is not None:
            retry = False
            try:
                self._refresh(key)
            except (DynamicApiError, HTTPError) as error:
                log.warning("%s/%s: status refresh failed, again in %.0fs: %s", *key, RETRY_S, error)
                retry = True
            except Exception:  # a bug for one InferenceService must not stop the others' refreshes
                log.exception("%s/%s: status refresh failed", *key)
            finally:
                self._done(key, retry)
