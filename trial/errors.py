"""Refusals a service can give: each carries a message meant for the person who asked."""
from __future__ import annotations


class ServiceError(Exception):
    """A refused request. Nothing was written when this is raised."""

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
    status_code = 409
    code = "conflict"


class IllegalTransition(Conflict):
    code = "illegal_transition"


class WrongStatus(Conflict):
    code = "wrong_status"


class DuplicateCode(Conflict):
    code = "duplicate_code"


class DuplicateImage(Conflict):
    code = "duplicate_image"


class CaseRejected(ServiceError):
    """The uploaded file is not a usable chest radiograph; `code` says why (see trial.dicom)."""

    status_code = 400


class FileTooLarge(ServiceError):
    status_code = 413
    code = "too_large"
