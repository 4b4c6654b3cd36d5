"""Timestamps as Kubernetes writes them in statuses and Events: RFC 3339, UTC, whole seconds, `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def now() -> str:
    return stamp(datetime.now(UTC))
