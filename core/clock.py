"""The server's clock: one place that says what "now" is for the trial's records, never the client's.

A simulation (the demo's simulated reading and scoring, tests of timing) may run the services on a simulated clock
with `simulated(source)`; the audit log always stamps the real time (trial.audit does not use this clock).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from django.utils import timezone

_source: Callable[[], datetime] = timezone.now


def now() -> datetime:
    """The current time, timezone-aware (UTC), as the services record it."""
    return _source()


@contextmanager
def simulated(source: Callable[[], datetime]) -> Iterator[None]:
    """Run the services on `source` instead of the real clock (one process, one thread: simulations and tests)."""
    global _source
    previous, _source = _source, source
    try:
        yield
    finally:
        _source = previous


def iso(value: datetime | None) -> str | None:
    """A stored time as the datasets write it: UTC, ISO 8601 with microseconds (None stays None)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds")
