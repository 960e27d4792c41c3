"""The one base of every refusal a service can give; each app adds its own in its errors.py."""
from __future__ import annotations


class ServiceError(Exception):
    """A refused request. Nothing was written when this is raised; `message` is meant for the person who asked."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None,
                 extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra or {}  # further JSON fields the API answer carries (e.g. the newer text)
        if code:
            self.code = code


class Conflict(ServiceError):
    """The request is well formed but the record's state does not allow it."""

    status_code = 409
    code = "conflict"


class WrongStatus(Conflict):
    """Refused because of the trial's (or a record's) status, not the request."""

    code = "wrong_status"


class NotAllowed(ServiceError):
    """Refused because of who asks (a role the service itself checks)."""

    status_code = 403
    code = "forbidden"
