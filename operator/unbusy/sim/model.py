"""One Triton replica's serving model: dynamic batching, per-batch service time, queue limit.

The service time of a batch is a line, t(b) = base + per_item x b: a GPU runs a batch of b in
less than b times the time of one, which is what batching buys. The defaults are illustrative
(a mid-sized vision model on one GPU), not measured; bench/ calibrates them.
"""

from __future__ import annotations

from dataclasses import dataclass

from unbusy.api import InferenceService
from unbusy.api.spec import ModelConfig


@dataclass(frozen=True)
class ServiceModel:
    # The batch a busy replica forms from a long queue. Triton prefers its preferred batch sizes
    # over the maximum: with preferred [4, 8] and a maximum of 16, a backlog is served 8 at a time.
    saturated_batch: int = 8
    max_queue_delay_s: float = 0.0001  # how long Triton holds a request to fill a batch
    max_queue: int = 64  # queued requests beyond which new ones are rejected (503); 0: unbounded
    base_ms: float = 5.0
    per_item_ms: float = 1.5

    def service_s(self, batch: float) -> float:
        return (self.base_ms + self.per_item_ms * batch) / 1000

    @property
    def capacity_rps(self) -> float:
        """The most requests per second one replica answers: full (saturated) batches back to back."""
        return self.saturated_batch / self.service_s(self.saturated_batch)

    def batch_at(self, rate: float) -> float:
        """The batch a replica forms at `rate` requests per second without a backlog.

        The requests arriving while one batch runs form the next: b = rate x t(b), so
        b = rate x base / (1 - rate x per_item); below one request per batch time, batches are
        single requests and the GPU idles in between. Holding requests for max_queue_delay
        gathers rate x delay of them.
        """
        base, per_item = self.base_ms / 1000, self.per_item_ms / 1000
        if rate * per_item >= 1:
            return self.saturated_batch
        steady = rate * base / (1 - rate * per_item)
        return min(float(self.saturated_batch), max(1.0, steady, rate * self.max_queue_delay_s))


def from_config(config: ModelConfig | None, base_ms: float = 5.0, per_item_ms: float = 1.5) -> ServiceModel:
    """The serving model of a spec's model configuration (Triton's defaults where it has none)."""
    config = config or ModelConfig()
    max_batch = max(config.max_batch_size, 1)  # 0 turns batching off: one request at a time
    batching = config.dynamic_batching
    if batching is None:  # no dynamic batcher: requests run one by one and queue without a limit
        return ServiceModel(1, 0.0, 0, base_ms, per_item_ms)
    preferred = [size for size in batching.preferred_batch_sizes if size <= max_batch]
    return ServiceModel(
        saturated_batch=max(preferred) if preferred else max_batch,
        max_queue_delay_s=batching.max_queue_delay_microseconds / 1e6,
        max_queue=batching.max_queue_size,
        base_ms=base_ms,
        per_item_ms=per_item_ms,
    )


def from_service(isvc: InferenceService, base_ms: float = 5.0, per_item_ms: float = 1.5) -> ServiceModel:
    return from_config(isvc.spec.model.config, base_ms, per_item_ms)
