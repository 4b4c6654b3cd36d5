"""Whether this replica leads under kopf peering, read from the peering objects by kopf's own
rule (kopf/_core/engines/peering.py, process_peering_event): a replica pauses while any other
live peer has a priority higher than or equal to its own. kopf pauses its handlers by that rule,
namespaced operators per namespace (one KopfPeering in each served namespace, whether named or
matched by a glob); the fleet loops, threads of ours, ask here before each tick for the
namespaces of the members due, so a glob needs no resolving here."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
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
    clusterwide: bool  # one ClusterKopfPeering; else a KopfPeering in each namespace
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


def led_namespaces(api: CountingClient, peering: Peering, namespaces: Iterable[str]) -> set[str]:
    """Of `namespaces`, those this replica leads in: all or none under a ClusterKopfPeering. A
    peering object that cannot be read leads nowhere: kopf pauses without one too, and what
    cannot be confirmed is not scaled."""
    now = datetime.datetime.now(datetime.UTC)
    namespaces = set(namespaces)
    if peering.clusterwide:
        return namespaces if _leads_in(api, peering, "ClusterKopfPeering", None, now) else set()
    return {namespace for namespace in namespaces if _leads_in(api, peering, "KopfPeering", namespace, now)}


def _leads_in(api: CountingClient, peering: Peering, kind: str, namespace: str | None, now: datetime.datetime) -> bool:
    try:
        resource = api.resources.get(api_version=PEERING_API, kind=kind)
        found = api.get(resource, name=peering.name, namespace=namespace, serializer=plain)
    except (DynamicApiError, HTTPError):
        return False
    return leads(found.get("status") or {}, peering.identity, peering.priority, now)
