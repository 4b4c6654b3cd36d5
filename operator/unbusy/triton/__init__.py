"""Talking to Triton through tritonclient: readiness, the model repository index, model statistics."""

from unbusy.triton.readiness import (
    Duration,
    ModelEntry,
    ModelStatistics,
    Readiness,
    RepositoryIndex,
    Statistics,
    check,
    model_ready,
    model_statistics,
    repository_index,
    server_live,
    server_ready,
)

__all__ = [
    "Duration",
    "ModelEntry",
    "ModelStatistics",
    "Readiness",
    "RepositoryIndex",
    "Statistics",
    "check",
    "model_ready",
    "model_statistics",
    "repository_index",
    "server_live",
    "server_ready",
]
