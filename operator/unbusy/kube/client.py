"""A dynamic client that counts its writes, so idempotence can be measured, not assumed."""

from __future__ import annotations

from collections import Counter
from typing import Any

from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from prometheus_client import Counter as Metric

WRITE_VERBS = {"post", "put", "patch", "delete"}
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
