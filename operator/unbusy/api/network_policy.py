"""spec.networkPolicy: who may reach Triton's ports over the network."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator

from unbusy.api.base import DNS_LABEL_PATTERN, ApiModel

# Label keys and values as Kubernetes allows them (a prefix/name key; a value of at most 63).
LABEL_KEY_PATTERN = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
LABEL_VALUE_PATTERN = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"
LabelValue = Annotated[str, Field(pattern=LABEL_VALUE_PATTERN, max_length=63)]


class NetworkPeer(ApiModel):
    """Pods allowed to reach Triton: those of one namespace, optionally only those with these labels."""

    namespace: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63, description="Namespace of the pods.")
    pod_labels: dict[str, LabelValue] = Field(
        default_factory=dict, description="Labels the pods must carry; every pod of the namespace when empty."
    )

    # The CRD checks the values; a structural schema cannot constrain map keys, so they are checked here.
    @field_validator("pod_labels")
    @classmethod
    def _label_keys(cls, labels: dict[str, str]) -> dict[str, str]:
        bad = sorted(key for key in labels if len(key) > 317 or not re.match(LABEL_KEY_PATTERN, key))
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))}: not label keys ([prefix/]name of [A-Za-z0-9_.-])")
        return labels


class NetworkPolicy(ApiModel):
    enabled: bool = Field(
        True, description="Render a NetworkPolicy that admits only the peers below to Triton's ports."
    )
    serving: list[NetworkPeer] = Field(
        default_factory=lambda: [NetworkPeer(namespace="ingress-nginx"), NetworkPeer(namespace="unbusy-system")],
        max_length=16,
        description="Who may send requests to Triton's HTTP and gRPC ports: the routing layer (ingress-nginx, "
        "or your Gateway's proxies) and the operator, which asks Triton whether the model is loaded.",
    )
    metrics: list[NetworkPeer] = Field(
        default_factory=lambda: [NetworkPeer(namespace="monitoring")],
        max_length=16,
        description="Who may scrape Triton's metrics port: Prometheus.",
    )
