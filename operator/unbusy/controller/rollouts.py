"""Canary rollouts of the whole fleet (a FleetLoop, fleetloop.py): every InferenceService with a
canary strategy is a member, looked at each second, so the user's pause/resume/abort/promote/
rollback annotations act within a second; an analysis runs once per
spec.rollout.canary.analysisIntervalSeconds (controller/rollout.py). A rollout that moved is
reconciled at once, so its weights reach the routes."""

from __future__ import annotations

import logging

from kubernetes.dynamic.exceptions import DynamicApiError
from urllib3.exceptions import HTTPError

from unbusy.controller import reconcile, rollout
from unbusy.controller.fleetloop import FleetLoop, Key, Member, unpack

log = logging.getLogger("unbusy")
ANALYSED = "analysed"  # Member.memory: when the last analysis ran


class Rollouts(FleetLoop):
    what = "rollout tick"

    def work(self, due: dict[Key, Member], at: float) -> None:
        for key, member in due.items():
            member.last = at
            body = unpack(member)
            annotations = body["metadata"].get("annotations") or {}
            interval = body["spec"].get("rollout", {}).get("canary", {}).get("analysisIntervalSeconds", 30)
            asked = rollout.ACTION in annotations or rollout.ROLLBACK in annotations
            if asked or at - member.memory.setdefault(ANALYSED, at) >= interval:
                member.memory[ANALYSED] = at
                self._roll_out_once(key, body)

    def _roll_out_once(self, key: Key, body: dict) -> None:
        try:
            moved = rollout.tick(self.api, self.source, body)
            if moved is not None:
                reconcile.reconcile(self.api, moved)
        except (DynamicApiError, HTTPError) as error:  # a lost race included: the next tick reads again
            log.warning("%s/%s: rollout tick failed: %s", *key, error)
        except Exception:  # a bug in one InferenceService's rollout must not stop the others'
            log.exception("%s/%s: rollout tick failed", *key)
