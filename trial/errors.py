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


class RoleConflict(Conflict):
    """A role that the person's other role in the same trial rules out (a reader is only a reader there)."""

    code = "role_conflict"


class InvalidInvitation(ServiceError):
    """The link is unknown, used, or expired."""

    status_code = 404
    code = "invalid_invitation"


class NotYourInvitation(ServiceError):
    """The invitation was sent to another e-mail address than the signed-in account's."""

    status_code = 403
    code = "not_your_invitation"


class SignatureRefused(ServiceError):
    """The password or the second factor re-entered for an electronic signature was not right."""

    status_code = 403
    code = "signature_refused"


class NotEnrolled(Conflict):
    """An image that arrived but is not enrolled: the trial or its site is paused or closed, its target is reached, or
    the trial's eligibility rules exclude it. `code` is its screening-log code (trial.models.ScreeningEntry)."""

    code = "not_enrolled"
