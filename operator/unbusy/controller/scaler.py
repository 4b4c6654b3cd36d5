"""The operator-mode scaling loop of a whole fleet (a FleetLoop, fleetloop.py): each tick lists
the due InferenceServices' Deployments and pods (kube/observe.py's fleet), reads Prometheus once
per query (scaling/fleet.py) and runs each one's tick (autoscale.py). Every InferenceService in
operator mode is a member; ticks fall in wall-clock slots of its interval (scaling/fleet.py's
due), so one read serves all of an interval."""

from __future__ import annotations

import logging

from kubernetes.dynamic.exceptions import DynamicApiError
from urllib3.exceptions import HTTPError

from unbusy.controller import autoscale, reconcile
from unbusy.controller.fleetloop import FleetLoop, Key, Member, unpack
from unbusy.kube import observe
from unbusy.scaling import fleet

log = logging.getLogger("unbusy")


class Scaler(FleetLoop):
    what = "scaling tick"

    def due(self, member: Member, now: float) -> bool:
        return fleet.due(member.last, member.interval, now)

    def work(self, due: dict[Key, Member], at: float) -> None:
        try:
            children = observe.fleet(self.api, due)
        except (DynamicApiError, HTTPError) as error:
            log.warning("scaling tick: listing %d InferenceServices' children failed: %s", len(due), error)
            return  # each is due again at the next second
        looks = {key: autoscale.look(unpack(member), children) for key, member in due.items()}
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
                done = autoscale.tick(self.api, seen, answers, member.memory)
                member.interval = done.interval
                if done.reroute is not None:  # weight moved to or from the fallback: the routes follow now
                    reconcile.reconcile(self.api, done.reroute)
            except (DynamicApiError, HTTPError) as error:
                log.warning("%s/%s: scaling tick failed: %s", *key, error)
            except Exception:  # a bug in one InferenceService's tick must not stop the others'
                log.exception("%s/%s: scaling tick failed", *key)
