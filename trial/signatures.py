"""Electronic signatures for the acts that fix a trial's record, as 21 CFR Part 11 asks of them.

A signature is the signer re-entering their password and a code of their second factor at the moment of the act
(§11.200(a)(1): two distinct components), with its meaning stated on the page and stored with it (§11.50), and bound
to the SHA-256 of the content it signs (§11.70: it cannot be moved to another record or survive a change of it).
The signature row and its audit event are written in the transaction of the act they sign.

What is signed, and the hash it is bound to:
- locking the database: the audit chain's head (it covers every trial-relevant write made before the lock);
- freezing the analysis plan: the plan's canonical JSON (stats);
- each of the two unblinding decisions: the same chain head, so both people sign the same locked data.

Re-authentication happens outside the act's transaction: a wrong code must count against the device's throttle
(django-otp) even though the act is refused and rolled back.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone  # signatures are stamped with the real time, never a simulation's (core.clock)

from . import audit
from .errors import ServiceError, SignatureRefused
from .models import Signature, Trial


@dataclass(frozen=True)
class Credentials:
    """What the signer typed: their password and a code of their authenticator (or one recovery code)."""

    password: str
    code: str = ""

    @classmethod
    def from_data(cls, data: Mapping) -> Credentials:
        """From a form's POST or an API body: its `password` and `code` (missing ones empty)."""
        return cls(password=data.get("password", ""), code=data.get("code", ""))


@dataclass(frozen=True)
class Reauthenticated:
    """Proof that `user` re-entered both components just now; the method is stored with the signature."""

    user_id: int
    method: str


def reauthenticate(*, user, credentials: Credentials, continuing: bool = False) -> Reauthenticated:
    """Check the password and the second factor again; refuse clearly, and change nothing but the device's throttle
    (which must survive the refusal: call this outside any transaction that the refusal rolls back).

    `continuing`: a later signing in one continuous session whose first signing gave both components (§11.200(a)(1)(i):
    later signings need at least one); the password alone then. The caller (a page) keeps that state in the session,
    which ends at logout or the idle timeout."""
    from .services import second_factor_wait, verify_second_factor  # the account services own the devices

    if not credentials.password or not user.check_password(credentials.password):
        raise SignatureRefused("Your password is not right; the act was not signed.", field="password")
    if continuing:
        return Reauthenticated(user_id=user.pk, method="password (a later signing in one continuous session)")
    from django_otp import user_has_device

    if not user_has_device(user, confirmed=True):
        if not settings.CXR_SECOND_FACTOR:  # a development set-up only (the settings refuse it in production)
            return Reauthenticated(user_id=user.pk, method="password only (second factor switched off: development)")
        raise SignatureRefused("An electronic signature needs your second factor: set up an authenticator on your "
                               "account page first.", field="code")
    if verify_second_factor(user=user, code=credentials.code) is None:
        wait = second_factor_wait(user=user)
        more = f" Try again in {wait} s." if wait else ""
        raise SignatureRefused(f"The code from your authenticator is not right; the act was not signed.{more}",
                               field="code")
    return Reauthenticated(user_id=user.pk, method="password+second factor")


def simulated(user, *, by_what: str) -> Reauthenticated:
    """The proof for a simulated person (the demo's own trials, benchmarks): no one typed anything, and the
    signature's method says so."""
    return Reauthenticated(user_id=user.pk, method=f"simulated by {by_what}")


def sign(*, trial: Trial, by, proof: Reauthenticated, meaning: str, obj, content_hash: str) -> Signature:
    """Record the signature of `by` on `obj` (inside the act's transaction) and its audit event."""
    if proof.user_id != by.pk:
        raise SignatureRefused("The signature must be given by the person who acts.")
    if meaning not in Signature.Meaning.values:
        raise ServiceError(f"Unknown meaning of a signature: {meaning!r}.")
    with transaction.atomic(savepoint=False):
        signature = Signature.objects.create(
            trial=trial, signer=by, signer_name=by.get_full_name() or by.get_username(), meaning=meaning,
            object_type=obj._meta.label, object_id=str(obj.pk), content_hash=content_hash, method=proof.method,
            signed_at=timezone.now())
        audit.record(actor=by, action="signature.signed", obj=signature, trial=trial, payload={
            "meaning": meaning, "statement": Signature.Meaning(meaning).label, "object_type": signature.object_type,
            "object_id": signature.object_id, "content_hash": content_hash, "method": proof.method,
            "signer_name": signature.signer_name})
    return signature
