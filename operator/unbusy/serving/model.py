"""One Triton replica's serving model: dynamic batching, per-batch service time, queue limit, GPU reading.

The measured part comes from a serving profile (api.model.Serving), fitted by `unbusy calibrate`
from a real tritonserver's sweep (bench/calibrate, bench/data); the batching part from the
spec's model configuration. What a real Triton on an H100 showed (bench/data/h100-*.csv):

- a batch of b requests takes t(b) = max(floor, base + per_item x b): small batches are
  launch-bound (eager PyTorch through the Python backend: the same few ms for 1 or 8
  requests), large ones grow with the work;
- the model instance is busy nearly all the time from 20% load up: requests that arrive while a
  batch runs form the next one, so batches grow with the rate until b = rate x t(b);
- the GPU utilisation read by NVML/DCGM does not follow that duty cycle: it grows with the
  served fraction of capacity, as ceiling x fraction^exponent, and stops at a per-model
  ceiling (0.85 for ResNet-50, 0.64 for the BERT encoder) however far the load goes past it;
- every so often the serving process stalls for tens of ms (pauses), at random times or in a
  share of its executions: that sets p99 at low load and adds to it past capacity.

Named profiles, each fitted from committed measurements, live in serving/profiles/.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from unbusy.api import InferenceService
from unbusy.api.model import ModelConfig, Serving
from unbusy.serving.batcher import Batcher, SteadyState, at_level, level

PROFILES = Path(__file__).parent / "profiles"
DEFAULT_PROFILE = "h100-resnet50"
# What a spec's fallback variant serves unless told: the smaller model measured beside ResNet-50.
DEFAULT_FALLBACK_PROFILE = "h100-resnet18"


def profile_names() -> list[str]:
    return sorted(path.stem for path in PROFILES.glob("*.yaml"))


def load_profile(name_or_path: str) -> Serving:
    """A named profile (serving/profiles/<name>.yaml) or a YAML file holding a `serving` block."""
    path = PROFILES / f"{name_or_path}.yaml"
    if not path.is_file():
        path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"{name_or_path}: neither a profile ({', '.join(profile_names())}) nor a file")
    document = yaml.safe_load(path.read_text())
    return Serving.model_validate(document.get("serving", document) if isinstance(document, dict) else document)


def slowed(serving: Serving, factor: float, batch: float = 1.0) -> Serving:
    """`serving` serving `factor` times fewer requests a second, in batches `batch` times the size:
    a batch of n takes factor x batch x t(n / batch), and stalls last factor x batch times longer
    (as often per execution, that much rarer in time). Its batches, queue and stalls then take the
    same share of a replica's time at 1/factor of the rate, as if the original ran `factor` times
    slower with batches `batch` times the size. The demo plays through a real proxy at rates Python
    can carry this way (and smaller batches keep the answers from coming in clumps a scrape apart).
    The start-up (readySeconds) is wall-clock time and stays."""
    time, pauses = serving.service_time, serving.pauses
    stretch = factor * batch
    return serving.model_copy(
        update={
            "measured": f"slowed {factor:g}x, batches {batch:g}x: {serving.measured}"[:512],
            "service_time": time.model_copy(
                update={
                    "floor_ms": time.floor_ms * stretch,
                    "base_ms": time.base_ms * stretch,
                    "per_item_ms": time.per_item_ms * factor,
                }
            ),
            "pauses": pauses.model_copy(update={"per_second": pauses.per_second / stretch, "ms": pauses.ms * stretch}),
        }
    )


def _default() -> Serving:
    return load_profile(DEFAULT_PROFILE)


@dataclass(frozen=True)
class ServiceModel:
    # The batch a busy replica forms from a long queue. Triton prefers its preferred batch sizes
    # over the maximum: with preferred [4, 8] and a maximum of 16, a backlog is served 8 at a time.
    saturated_batch: int = 32
    max_queue_delay_s: float = 0.0001  # how long Triton holds a request to fill a batch
    max_queue: int = 64  # queued requests beyond which new ones are rejected (503); 0: unbounded
    serving: Serving = field(default_factory=_default)

    def service_s(self, batch: float) -> float:
        time = self.serving.service_time
        return max(time.floor_ms, time.base_ms + time.per_item_ms * batch) / 1000

    @property
    def capacity_rps(self) -> float:
        """The most requests per second one replica answers: full (saturated) batches back to back,
        less the time its stalls take."""
        pauses = self.serving.pauses
        running = 1 - min(1.0, pauses.per_second * pauses.ms / 1000)
        batch_s = self.service_s(self.saturated_batch) + pauses.per_execution * pauses.ms / 1000
        return self.saturated_batch / batch_s * running

    def batch_at(self, rate: float) -> float:
        """The batch a replica forms at `rate` requests per second without a backlog.

        The requests arriving while one batch runs form the next: b = rate x t(b). On the line
        that gives b = rate x base / (1 - rate x per_item), on the floor b = rate x floor; the
        larger of the two is the one consistent with t. Below one request per batch time,
        batches are single requests and the GPU idles in between; holding requests for
        max_queue_delay gathers rate x delay of them.
        """
        time = self.serving.service_time
        per_item = time.per_item_ms / 1000
        if rate * per_item >= 1:
            return float(self.saturated_batch)
        steady = max(rate * time.floor_ms / 1000, rate * time.base_ms / 1000 / (1 - rate * per_item))
        return min(float(self.saturated_batch), max(1.0, steady, rate * self.max_queue_delay_s))

    @functools.cached_property
    def batcher(self) -> Batcher:
        time, pauses = self.serving.service_time, self.serving.pauses
        return Batcher(
            saturated_batch=self.saturated_batch,
            max_queue_delay_s=self.max_queue_delay_s,
            max_queue=self.max_queue,
            floor_s=time.floor_ms / 1000,
            base_s=time.base_ms / 1000,
            per_item_s=time.per_item_ms / 1000,
            stalls_per_second=pauses.per_second,
            stall_s=pauses.ms / 1000,
            stalls_per_execution=pauses.per_execution,
        )

    def steady(self, rate: float) -> SteadyState:
        """Latencies and 503s of a replica under Poisson arrivals near `rate` (its load level)."""
        capacity = self.capacity_rps
        return at_level(self.batcher, capacity, level(rate, capacity))

    def gpu_reading(self, served_rps: float) -> float:
        """GPU utilisation (0-1) NVML/DCGM reads while the replica serves `served_rps`."""
        curve = self.serving.gpu_utilization
        fraction = min(1.0, max(0.0, served_rps / self.capacity_rps))
        return curve.ceiling * fraction**curve.exponent


def saturated_batch(config: ModelConfig | None) -> int:
    """The batch a busy replica forms from a long queue under a spec's model configuration."""
    config = config or ModelConfig()
    max_batch = max(config.max_batch_size, 1)  # 0 turns batching off: one request at a time
    batching = config.dynamic_batching
    if batching is None:  # no dynamic batcher: requests run one by one
        return 1
    preferred = [size for size in batching.preferred_batch_sizes if size <= max_batch]
    return max(preferred) if preferred else max_batch


def from_config(config: ModelConfig | None, serving: Serving | None = None) -> ServiceModel:
    """The serving model of a spec's model configuration (Triton's defaults where it has none)."""
    serving = serving or _default()
    config = config or ModelConfig()
    batching = config.dynamic_batching
    if batching is None:  # no dynamic batcher: requests run one by one and queue without a limit
        return ServiceModel(1, 0.0, 0, serving)
    return ServiceModel(
        saturated_batch=saturated_batch(config),
        max_queue_delay_s=batching.max_queue_delay_microseconds / 1e6,
        max_queue=batching.max_queue_size,
        serving=serving,
    )


def from_service(isvc: InferenceService, serving: Serving | None = None) -> ServiceModel:
    """The spec's batching with `serving`, else the spec's own measured profile, else the default one."""
    return from_config(isvc.spec.model.config, serving or isvc.spec.model.serving)
