"""What the scaling loop knows of a variant's offered load: requests per second, refused ones included."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Demand:
    """Offered load of one variant over the loop's rate window.

    Under overload every server-side signal saturates (GPU near its ceiling, the queue at
    max_queue_size) and Triton counts its queue-full 503s nowhere: only the edge (ingress-nginx,
    the Gateway) sees how far demand exceeds capacity. Without an edge metric the loop falls back
    to Triton's served rate and says so (measurable False).
    """

    rps: float  # requests per second offered to the variant, refused ones included where measurable
    rejected_rps: float  # of which refused (HTTP 503 at the edge)
    source: str  # nginx | envoy-gateway | istio | traefik | promql | triton
    measurable: bool  # False: Triton's served rate only, so demand beyond capacity is not seen
    # The requests per second between the last two scrapes (irate), where read: a step shows in it
    # at once, in the window's rate only as the window fills. Shedding reads it (traffic/shedding.py).
    latest_rps: float | None = None
    # Where the demand counts an LLM's weighted tokens (scaling/tokens.py) rather than requests: what
    # a request costs in them now. Shedding, whose fallback is sized in requests, divides by it.
    per_request: float | None = None

    def in_requests(self, rate: float) -> float:
        """A rate in this demand's unit (a capacity, say) in requests per second."""
        return rate if self.per_request is None else rate / self.per_request

    def requests(self) -> Demand:
        """The same demand counted in requests."""
        if self.per_request is None:
            return self
        latest = None if self.latest_rps is None else self.in_requests(self.latest_rps)
        rps, rejected = self.in_requests(self.rps), self.in_requests(self.rejected_rps)
        return Demand(rps, rejected, self.source, self.measurable, latest)
