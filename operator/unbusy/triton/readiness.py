"""Readiness of a Triton server and its models, through tritonclient's HTTP client.

Small, synchronous functions: each opens a client, asks one thing, closes it, and returns a
frozen dataclass. A server that is down, slow, or answers with an error is an answer, not an
exception: the result says not ready (or carries `error`) with a reason a person can read,
e.g. "server 10.0.0.7:8000 unreachable: connection refused". Call them from asyncio code
(kopf handlers) through `asyncio.to_thread`.

`url` is Triton's HTTP endpoint as host:port (port 8000 by default); an `http://` prefix is
accepted and dropped, `https://` turns TLS on.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import tritonclient.http as httpclient

# tritonclient (with gevent and numpy) is imported on first use, not with this module: the
# operator asks Triton only with --probe-models, and the import alone costs ~38 MiB of memory.

DEFAULT_TIMEOUT_S = 5.0

T = TypeVar("T")


@dataclass(frozen=True)
class Readiness:
    """One yes/no answer about a server or a model; `reason` says why when it is no."""

    ready: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ready


@dataclass(frozen=True)
class ModelEntry:
    """One model version the server's repository index lists, with its state (READY, UNAVAILABLE, ...)."""

    name: str
    version: str
    state: str
    reason: str = ""

    @property
    def ready(self) -> bool:
        return self.state == "READY"


@dataclass(frozen=True)
class RepositoryIndex:
    """The models in the server's repository; `error` is set (and `models` empty) when it could not be read."""

    models: tuple[ModelEntry, ...] = ()
    error: str | None = None

    def find(self, name: str, version: str | int | None = None) -> tuple[ModelEntry, ...]:
        wanted = None if version is None else str(version)
        return tuple(m for m in self.models if m.name == name and (wanted is None or m.version in ("", wanted)))


@dataclass(frozen=True)
class Duration:
    """A count and the total time it took, as Triton's statistics report them."""

    count: int = 0
    ns: int = 0

    @property
    def mean_us(self) -> float:
        return self.ns / self.count / 1000 if self.count else 0.0


@dataclass(frozen=True)
class ModelStatistics:
    """Cumulative inference statistics of one model version, since the server loaded it."""

    name: str
    version: str
    last_inference_ms: int  # milliseconds since the epoch; 0 when it never ran
    inference_count: int  # inferences (batch items)
    execution_count: int  # model executions (batches)
    success: Duration
    fail: Duration
    queue: Duration


@dataclass(frozen=True)
class Statistics:
    """Statistics per model version; `error` is set (and `models` empty) when they could not be read."""

    models: tuple[ModelStatistics, ...] = ()
    error: str | None = None


def _split_url(url: str) -> tuple[str, bool]:
    if url.startswith("https://"):
        return url.removeprefix("https://").rstrip("/"), True
    return url.removeprefix("http://").rstrip("/"), False


def _describe(exc: BaseException) -> str:
    import gevent
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        status = f" (HTTP {exc.status()})" if exc.status() else ""
        return f"{exc.message()}{status}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout | gevent.Timeout):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host ({exc.strerror or exc})"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _ask(
    url: str, timeout_s: float, question: Callable[[httpclient.InferenceServerClient], T]
) -> tuple[T | None, str | None]:
    """(the answer to `question`, None), or (None, a one-line reason why there is none)."""
    import gevent
    import tritonclient.http as httpclient

    address, ssl = _split_url(url)
    client = None
    try:
        client = httpclient.InferenceServerClient(
            address, connection_timeout=timeout_s, network_timeout=timeout_s, ssl=ssl
        )
        return question(client), None
    except (Exception, gevent.Timeout) as exc:
        return None, (f"server {address} unreachable: {_describe(exc)}" if _is_transport(exc) else _describe(exc))
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def _is_transport(exc: BaseException) -> bool:
    """No HTTP answer at all (refused, timed out, unresolvable), as opposed to an error Triton sent."""
    import gevent

    return isinstance(exc, OSError | gevent.Timeout)


def server_live(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Readiness:
    """Whether the server answers /v2/health/live with 200."""
    answer, error = _ask(url, timeout_s, lambda client: client.is_server_live())
    if error is not None:
        return Readiness(False, error)
    return Readiness(True) if answer else Readiness(False, f"server {_split_url(url)[0]} is not live")


def server_ready(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Readiness:
    """Whether the server answers /v2/health/ready with 200 (with strict readiness: all its models loaded)."""
    answer, error = _ask(url, timeout_s, lambda client: client.is_server_ready())
    if error is not None:
        return Readiness(False, error)
    return Readiness(True) if answer else Readiness(False, f"server {_split_url(url)[0]} is not ready")


def repository_index(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> RepositoryIndex:
    """The models the server knows of, loaded or not, with their state and the reason of a failed load."""
    answer, error = _ask(url, timeout_s, lambda client: client.get_model_repository_index())
    if error is not None:
        return RepositoryIndex(error=error)
    try:
        models = tuple(
            ModelEntry(
                name=str(entry["name"]),
                version=str(entry.get("version", "")),
                state=str(entry.get("state", "")),
                reason=str(entry.get("reason", "")),
            )
            for entry in answer
        )
    except (TypeError, KeyError, AttributeError) as exc:
        return RepositoryIndex(error=f"unexpected repository index from the server: {_describe(exc)}")
    return RepositoryIndex(models=models)


def model_ready(
    url: str, model: str, version: str | int | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> Readiness:
    """Whether `model` (at `version`, or the version Triton's policy picks) is ready for inference.

    When it is not, the reason comes from the repository index: not in the repository, or its
    state and Triton's reason (e.g. "UNAVAILABLE: ... failed to load").
    """
    label = f"model {model!r}" + ("" if version is None else f" version {version}")
    wanted = "" if version is None else str(version)
    answer, error = _ask(url, timeout_s, lambda client: client.is_model_ready(model, wanted))
    if error is not None:
        return Readiness(False, f"{label}: {error}")
    if answer:
        return Readiness(True)
    index = repository_index(url, timeout_s=timeout_s)
    if index.error is not None:
        return Readiness(False, f"{label} is not ready")
    entries = index.find(model, version)
    if not entries:
        known = ", ".join(sorted({m.name for m in index.models})) or "none"
        return Readiness(False, f"{label} is not in the server's model repository (it has: {known})")
    states = "; ".join(
        f"version {e.version or '?'} {e.state or 'UNKNOWN'}" + (f" ({e.reason})" if e.reason else "") for e in entries
    )
    return Readiness(False, f"{label} is not ready: {states}")


def check(url: str, model: str, version: str | int | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Readiness:
    """Live, then ready, then the model ready: the first no, with its reason, or yes."""
    for result in (
        lambda: server_live(url, timeout_s=timeout_s),
        lambda: server_ready(url, timeout_s=timeout_s),
        lambda: model_ready(url, model, version, timeout_s=timeout_s),
    ):
        answer = result()
        if not answer.ready:
            return answer
    return Readiness(True)


def _duration(stats: dict, key: str) -> Duration:
    value = stats.get(key) or {}
    return Duration(count=int(value.get("count", 0)), ns=int(value.get("ns", 0)))


def model_statistics(
    url: str, model: str = "", version: str | int | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> Statistics:
    """Inference statistics of `model` (all versions, or `version`); of every model when `model` is empty."""
    wanted = "" if version is None else str(version)
    answer, error = _ask(url, timeout_s, lambda client: client.get_inference_statistics(model, wanted))
    if error is not None:
        return Statistics(error=error)
    try:
        models = tuple(
            ModelStatistics(
                name=str(entry["name"]),
                version=str(entry.get("version", "")),
                last_inference_ms=int(entry.get("last_inference", 0)),
                inference_count=int(entry.get("inference_count", 0)),
                execution_count=int(entry.get("execution_count", 0)),
                success=_duration(entry.get("inference_stats", {}), "success"),
                fail=_duration(entry.get("inference_stats", {}), "fail"),
                queue=_duration(entry.get("inference_stats", {}), "queue"),
            )
            for entry in answer.get("model_stats", [])
        )
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        return Statistics(error=f"unexpected statistics from the server: {_describe(exc)}")
    return Statistics(models=models)
