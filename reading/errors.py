"""Refusals of the reading app (the base classes are core.errors')."""
from __future__ import annotations

from core.errors import Conflict


class AlreadySubmitted(Conflict):
    code = "already_submitted"


class StaleVersion(Conflict):
    """A save based on an older text than the one stored; the answer carries the newer text so the tab can offer
    both."""

    code = "stale_version"

    def __init__(self, message: str, *, current):
        super().__init__(message, extra={"current": current.as_dict()})
        self.current = current
