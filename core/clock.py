"""The server's clock: one place that says what "now" is, so that tests can move it and nothing reads the client's."""
from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return timezone.now()
