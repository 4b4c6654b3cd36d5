"""The operator-mode scaling loop of a whole fleet, in one thread: each tick lists the due
InferenceServices' Deployments and pods (kube/observe.py's fleet), reads Prometheus once per query
(scaling/fleet.py) and runs each one's tick (autoscale.py). kopf keeps a daemon per
InferenceService in operator mode (handlers.py), which joins it here and leaves when kopf stops
it (the mode changed, the object went, or a peer with a higher priority took over)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes.dynamic.exceptions import DynamicApiError
from urllib3.exceptions import HTTPError

from unbusy.controller import autoscale, reconcile
from unbusy.kube import observe
from unbusy.kube.client import CountingClient
from unbusy.scaling import fleet
from unbusy.scaling.policy import PolicyState
from unbusy.scaling.source import PrometheusSource

log = logging.getLogger("unbusy")
Key = tuple[str, str]  # namespace, name


@dataclass
class Member:
    body: Any  # kopf's live body: the latest the watch has seen
    states: dict[str, PolicyState] = field(default_factory=dict)  # the policy's memory per variant
    last: float | None = None  # when it last ticked
    interval: float = 15.0


class Scaler:
    def __init__(self, api: CountingClient, source: PrometheusSource | None):
        self.api, self.source = api, source
        self._members: dict[Key, Member] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="unbusy-scaler", daemon=True)

    def join(self, key: Key, body: Any) -> None:
        with self._lock:
            self._members[key] = Member(body)

    def leave(self, key: Key) -> None:
        with self._lock:
            self._members.pop(key, None)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.time()
            with self._lock:
                due = {k: m for k, m in self._members.items() if fleet.due(m.last, m.interval, started)}
            if due:
                try:
                    self.tick(due, started)
                except Exception:  # a bug must not end the loop of every InferenceService
                    log.exception("scaling tick of %d InferenceServices failed", len(due))
                    for member in due.values():
                        member.last = started
            self._stop.wait(1.0 - time.time() % 1.0)  # on the second, as the slots are

    def tick(self, due: dict[Key, Member], at: float) -> None:
        try:
            children = observe.fleet(self.api, due)
        except (DynamicApiError, HTTPError) as error:
            log.warning("scaling tick: listing %d InferenceServices' children failed: %s", len(due), error)
            return  # each is due again at the next second
        looks = {key: autoscale.look(dict(member.body), children) for key, member in due.items()}
        reads = [read for seen in looks.values() if seen for read in seen.reads.values()]
        answers = None
        if self.source is not None and reads:
            plan = fleet.plan(reads, autoscale.WINDOW_S)
            answers = fleet.Answers(plan, self.source.read(plan.queries))
        for key, seen in looks.items():
            member = due[key]
            member.last = at
            if seen is None:
                member.interval = autoscale.INVALID.interval
                continue
            try:
                done = autoscale.tick(self.api, seen, answers, member.states)
                member.interval = done.interval
                if done.reroute is not None:  # weight moved to or from the fallback: the routes follow now
                    reconcile.reconcile(self.api, done.reroute)
            except (DynamicApiError, HTTPError) as error:
                log.warning("%s/%s: scaling tick failed: %s", *key, error)
            except Exception:  # a bug in one InferenceService's tick must not stop the others'
                log.exception("%s/%s: scaling tick failed", *key)
