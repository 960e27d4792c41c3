"""Who asks, about which trial: the trial and the asking user's roles in it, loaded once per request.

Every page and API call of a trial starts with `access_for(user, code, roles)`: one query (the user's memberships
in the trial, with the trial and each membership's site) and the one refusal (the same message whether the trial
does not exist or the user has no role in it, so a refusal reveals nothing). The selectors then take the Access
and check roles in memory, instead of asking the database again for every piece of the page.

Two marks a request may put on its user are applied here too, at no cost: an API token's trial
(`api_token_trial_id`, trial.authentication: no other trial exists for it), and whether the session gave its second
factor (`second_factor_verified`, core.otp): a trial whose roles need one is refused to a session that has not.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Q

from core.otp import SecondFactorMissing

from .models import Membership, Role, Trial

# One message whatever the reason, so that a refusal reveals nothing about whether the trial exists.
NO_ACCESS = "You do not have access to this trial, or it does not exist."
SECOND_FACTOR_NEEDED = "Your role in this trial needs a second factor: log in again and give it."
# Roles that always log in with a second factor (readers and experts where their trial says so).
# the monitor (data-monitoring committee) sees interim results by arm: as guarded as those who can unblind
SECOND_FACTOR_ROLES = frozenset({Role.INVESTIGATOR, Role.STATISTICIAN, Role.SENIOR, Role.MONITOR})


class SecondFactorRequired(SecondFactorMissing):
    """A role in this trial needs a second factor that this session has not given."""


def second_factor_required(user) -> bool:
    """Whether `user` must log in with a second factor: staff, investigators (and whoever may create a trial, and so
    become one), statisticians, seniors and monitors always; readers and experts of a trial that asks for it
    (Trial.second_factor_for_all). A query or two, at login (none for staff)."""
    if not getattr(user, "is_authenticated", False) or not settings.CXR_SECOND_FACTOR:
        return False
    if user.is_staff or user.is_superuser or user.has_perm("trial.add_trial"):
        return True
    return Membership.objects.filter(Q(role__in=SECOND_FACTOR_ROLES) | Q(trial__second_factor_for_all=True),
                                     user_id=user.pk).exists()


def _needs_second_factor(trial: Trial, roles) -> bool:
    return trial.second_factor_for_all or any(role in SECOND_FACTOR_ROLES for role in roles)


@dataclass(frozen=True)
class Access:
    """The asking user's standing in one trial (an immutable snapshot of this request's memberships)."""

    trial: Trial
    user: object
    memberships: dict[str, Membership] = field(default_factory=dict)  # role → the user's membership in that role

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(self.memberships)

    def has(self, *roles: str) -> bool:
        return any(role in self.memberships for role in roles)

    def require(self, *roles: str) -> Access:
        """Itself, or PermissionDenied (the one refusal) unless the user holds one of `roles` (any role if none)."""
        if not (self.has(*roles) if roles else self.memberships):
            raise PermissionDenied(NO_ACCESS)
        return self

    def membership(self, role: str) -> Membership:
        """The user's membership in `role` (a reader's, with its site); the one refusal if there is none."""
        self.require(role)
        return self.memberships[role]


def _load(*, user, **trial_lookup) -> Access:
    if not getattr(user, "is_authenticated", False):
        raise PermissionDenied(NO_ACCESS)
    lookup = {f"trial__{k}": v for k, v in trial_lookup.items()}
    scope = getattr(user, "api_token_trial_id", None)
    if scope is not None:
        lookup["trial_id"] = scope  # an API token reaches its own trial only
    memberships = list(Membership.objects.filter(user_id=user.pk, **lookup).select_related("trial", "site"))
    if not memberships:
        raise PermissionDenied(NO_ACCESS)
    trial = memberships[0].trial
    if getattr(user, "second_factor_verified", None) is False and _needs_second_factor(
            trial, [m.role for m in memberships]):
        raise SecondFactorRequired(SECOND_FACTOR_NEEDED)
    for membership in memberships:
        membership.trial = trial  # one Trial object for all of them
    return Access(trial=trial, user=user, memberships={m.role: m for m in memberships})


def access_for(*, user, code: str, roles: Iterable[str] = ()) -> Access:
    """The user's standing in the trial `code`; refused unless they hold one of `roles` (any role if none). One
    query."""
    return _load(user=user, code=code).require(*roles)


def access_to(*, user, trial: Trial, roles: Iterable[str] = ()) -> Access:
    """The same for a trial already loaded (services, commands); the Access carries that Trial object."""
    access = _load(user=user, pk=trial.pk)
    for membership in access.memberships.values():
        membership.trial = trial
    return Access(trial=trial, user=user, memberships=access.memberships).require(*roles)


__all__ = ["NO_ACCESS", "SECOND_FACTOR_NEEDED", "Access", "Role", "SecondFactorRequired", "access_for", "access_to",
           "second_factor_required"]
