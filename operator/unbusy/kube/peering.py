"""Whether this replica leads under kopf peering, read from the peering objects by kopf's own
rule (kopf/_core/engines/peering.py, process_peering_event): a replica pauses while any other
live peer has a priority higher than or equal to its own. kopf pauses its handlers by that rule;
the fleet's scaling loop, a thread of ours, asks here before each tick."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.dynamic.exceptions import DynamicApiError
from urllib3.exceptions import HTTPError

from unbusy.kube.client import CountingClient, plain

PEERING_API = "kopf.dev/v1"
LIFETIME_S = 60  # kopf's default, for a record without one


@dataclass(frozen=True)
class Peering:
    name: str
    namespaces: tuple[str, ...]  # the KopfPeering objects of these; () for the ClusterKopfPeering
    identity: str  # this replica's record in them (given to kopf, so both mean the same one)
    priority: int


def leads(records: Mapping[str, Any], identity: str, priority: int, now: datetime.datetime) -> bool:
    """`records`: a peering object's status, peer identity -> {priority, lifetime, lastseen}."""
    for peer, record in records.items():
        if peer == identity or not isinstance(record, Mapping):
            continue
        seen = record.get("lastseen")
        lastseen = datetime.datetime.fromisoformat(seen) if isinstance(seen, str) else now
        if lastseen + datetime.timedelta(seconds=int(record.get("lifetime", LIFETIME_S))) <= now:
            continue  # dead: its replica stopped without a goodbye
        if int(record.get("priority", 0)) >= priority:
            return False
    return True


def holds_lead(api: CountingClient, peering: Peering) -> bool:
    """False also while a peering object cannot be read: kopf pauses without one too, and what
    cannot be confirmed is not scaled."""
    now = datetime.datetime.now(datetime.UTC)
    kinds = [("KopfPeering", namespace) for namespace in peering.namespaces] or [("ClusterKopfPeering", None)]
    try:
        for kind, namespace in kinds:
            resource = api.resources.get(api_version=PEERING_API, kind=kind)
            found = api.get(resource, name=peering.name, namespace=namespace, serializer=plain)
            if not leads(found.get("status") or {}, peering.identity, peering.priority, now):
                return False
    except (DynamicApiError, HTTPError):
        return False
    return True
