"""Electronic signatures in tests: a simulated proof where a test is not about signing (trial.signatures), and real
credentials (password + a recovery code) where it is."""
from __future__ import annotations

from trial import signatures

from .conftest import PASSWORD


def proof(user) -> signatures.Reauthenticated:
    return signatures.simulated(user, by_what="the tests")


def credentials(user) -> signatures.Credentials:
    """The user's password and a fresh recovery code (each is used once; TOTP codes would refuse reuse within 30 s)."""
    from django_otp.plugins.otp_static.models import StaticDevice, StaticToken

    device, _ = StaticDevice.objects.get_or_create(user=user, name="Recovery codes", defaults={"confirmed": True})
    token = StaticToken.random_token()
    StaticToken.objects.create(device=device, token=token)
    return signatures.Credentials(password=PASSWORD, code=token)


def move(trial, *, by, to: str, statistician=None):
    """Move a trial on as a test's set-up does, through the signed acts where the status needs one: the lock signed
    by `by` (an investigator), unblinding asked by `by` and approved by `statistician`."""
    from trial import services
    from trial.models import Status

    if to == Status.LOCKED:
        return services.lock_trial(trial=trial, by=by, proof=proof(by))
    if to == Status.UNBLINDED:
        if statistician is None:
            raise ValueError("Unblinding needs a statistician to approve it.")
        services.request_unblinding(trial=trial, by=by, proof=proof(by))
        return services.approve_unblinding(trial=trial, by=statistician, proof=proof(statistician))
    return services.transition_trial(trial=trial, by=by, to=to)
