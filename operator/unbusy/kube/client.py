"""A dynamic client that counts its writes, so idempotence can be measured, not assumed."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from prometheus_client import Counter as Metric

WRITE_VERBS = {"post", "put", "patch", "delete"}
# How long an API the cluster does not serve (a CRD not installed) is taken as absent before
# discovery is asked again: each miss makes the client rediscover every group.
ABSENT_RECHECK_S = 10.0
API_WRITES = Metric("unbusy_api_writes", "Write calls the operator made to the API server.", ["verb"])


def plain(_: Any, data: dict[str, Any]) -> dict[str, Any]:
    """A serializer that keeps the API's JSON as plain dicts. The client's default wraps every
    nested field in a ResourceField, which a caller then turns back into dicts: several times the
    allocations of the JSON itself, for every object of every list a reconcile reads."""
    return data


class CountingClient(DynamicClient):
    """DynamicClient that tallies every write call (POST, PUT, PATCH, DELETE) it sends."""

    def __init__(self, api_client: client.ApiClient):
        super().__init__(api_client)
        self.writes: Counter[str] = Counter()
        self._discovery = threading.Lock()
        self._absent: dict[tuple[str, str], float] = {}

    def served(self, api_version: str, kind: str) -> Any | None:
        """The resource of `kind`, or None where the cluster does not serve it (an optional API).
        The client's discovery cache is not thread-safe: a miss empties and refills it, and a
        reconcile thread searching it meanwhile failed with KeyError 'apis' (every reconcile, on a
        cluster without one of the optional APIs). So one thread at a time, and a miss is
        remembered for ABSENT_RECHECK_S."""
        key = (api_version, kind)
        with self._discovery:
            if time.monotonic() - self._absent.get(key, -ABSENT_RECHECK_S) < ABSENT_RECHECK_S:
                return None
            try:
                resource = self.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                self._absent[key] = time.monotonic()
                return None
            self._absent.pop(key, None)
            return resource

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        verb = method.lower()
        if verb in WRITE_VERBS:
            self.writes[verb] += 1
            API_WRITES.labels(verb).inc()
        return super().request(method, path, body=body, **params)

    @property
    def write_count(self) -> int:
        return sum(self.writes.values())


def connect(kubeconfig: str | None = None, pool_size: int | None = None) -> CountingClient:
    """The given kubeconfig; else in a pod its ServiceAccount; else KUBECONFIG or ~/.kube/config.

    pool_size: connections kept open to the API server. Give at least the number of threads that
    call it at once: urllib3 closes each connection beyond the pool ("Connection pool is full,
    discarding connection"), and the next request pays a new TLS handshake. Without it, the
    kubernetes client's default (5 per CPU).
    """
    configuration = client.Configuration()
    if pool_size is not None:
        configuration.connection_pool_maxsize = pool_size
    if kubeconfig is None:
        try:
            config.load_incluster_config(client_configuration=configuration)
            return CountingClient(client.ApiClient(configuration))
        except config.ConfigException:
            pass
    return CountingClient(config.new_client_from_config(config_file=kubeconfig, client_configuration=configuration))
