"""CountingClient.served: the optional APIs a cluster lacks are asked of discovery once in a while,
one thread at a time (the client's discovery cache is not thread-safe: a miss empties and refills it)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from kubernetes.dynamic.exceptions import ResourceNotFoundError

from unbusy.kube import client


class Discovery(client.CountingClient):
    """A CountingClient whose discovery serves every kind but InferencePool, counting the asks."""

    def __init__(self) -> None:  # no API server: only what served() uses
        self._discovery, self._absent, self.asked = threading.Lock(), {}, []

    @property
    def resources(self) -> SimpleNamespace:
        return SimpleNamespace(get=self._get)

    def _get(self, api_version: str, kind: str) -> str:
        self.asked.append(kind)
        if kind == "InferencePool":
            raise ResourceNotFoundError(f"{api_version} {kind}")
        return kind


def test_a_kind_the_cluster_lacks_is_asked_once_a_while_and_served_ones_each_time(monkeypatch):
    api, now = Discovery(), [100.0]
    monkeypatch.setattr(client.time, "monotonic", lambda: now[0])
    pool = ("inference.networking.k8s.io/v1", "InferencePool")
    assert api.served("v1", "Service") == "Service"
    assert api.served(*pool) is None and api.served(*pool) is None
    assert api.asked == ["Service", "InferencePool"]  # the second miss was remembered
    now[0] += client.ABSENT_RECHECK_S
    assert api.served(*pool) is None  # asked again: a CRD installed since would be found
    assert api.asked == ["Service", "InferencePool", "InferencePool"]
