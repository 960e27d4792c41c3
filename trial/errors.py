"""Refusals of the trial app (the base classes are core.errors')."""
from __future__ import annotations

from core.errors import Conflict, ServiceError


class IllegalTransition(Conflict):
    code = "illegal_transition"


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
