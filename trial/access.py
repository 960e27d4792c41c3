"""Who asks, about which trial: the trial and the asking user's roles in it, loaded once per request.

Every page and API call of a trial starts with `access_for(user, code, roles)`: one query (the user's memberships
in the trial, with the trial and each membership's site) and the one refusal (the same message whether the trial
does not exist or the user has no role in it, so a refusal reveals nothing). The selectors then take the Access
and check roles in memory, instead of asking the database again for every piece of the page.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied

from .models import Membership, Role, Trial

# One message whatever the reason, so that a refusal reveals nothing about whether the trial exists.
NO_ACCESS = "You do not have access to this trial, or it does not exist."


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
    memberships = list(Membership.objects.filter(user_id=user.pk, **{f"trial__{k}": v for k, v in trial_lookup.items()})
                       .select_related("trial", "site"))
    if not memberships:
        raise PermissionDenied(NO_ACCESS)
    trial = memberships[0].trial
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


__all__ = ["NO_ACCESS", "Access", "Role", "access_for", "access_to"]
