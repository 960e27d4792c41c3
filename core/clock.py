"""The server's clock: one place that says what "now" is, so that tests can move it and nothing reads the client's."""
from __future__ import annotations

from datetime import UTC, datetime

from django.utils import timezone


def now() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return timezone.now()


def iso(value: datetime | None) -> str | None:
    """A stored time as the datasets write it: UTC, ISO 8601 with microseconds (None stays None)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds")
