"""Every read of trial data, scoped to what the asking user may see. Views and the API come here."""
from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet

from core.clock import iso

from .models import Allocation, AuditEvent, Case, CaseIdentity, Invitation, Membership, Role, Site, Trial

# One message whatever the reason, so that a refusal reveals nothing about whether the trial exists.
NO_ACCESS = "You do not have access to this trial, or it does not exist."


def roles_of(*, trial: Trial, user) -> set[str]:
    if not getattr(user, "is_authenticated", False):
        return set()
    return set(Membership.objects.filter(trial=trial, user=user).values_list("role", flat=True))


def require_role(*, trial: Trial, user, roles: Iterable[str] | None = None) -> set[str]:
    """The user's roles on the trial; PermissionDenied unless they hold one of `roles` (any role if None)."""
    held = roles_of(trial=trial, user=user)
    wanted = set(roles) if roles is not None else set(Role.values)
    if not held & wanted:
        raise PermissionDenied(NO_ACCESS)
    return held


def trial_for_user(*, code: str, user, roles: Iterable[str] | None = None) -> Trial:
    """The trial by code if the user holds one of `roles` on it; the same refusal when it does not exist."""
    trial = Trial.objects.filter(code=code).first()
    if trial is None:
        raise PermissionDenied(NO_ACCESS)
    require_role(trial=trial, user=user, roles=roles)
    return trial


def trials_for_user(*, user) -> QuerySet[Trial]:
    if not getattr(user, "is_authenticated", False):
        return Trial.objects.none()
    return Trial.objects.filter(memberships__user=user).distinct().order_by("-created_at")


def memberships_of_user(*, user) -> dict[int, list[str]]:
    """trial id → the user's roles, for the home page."""
    out: dict[int, list[str]] = {}
    for trial_id, role in Membership.objects.filter(user=user).values_list("trial_id", "role"):
        out.setdefault(trial_id, []).append(role)
    return out


def sites_for(*, trial: Trial, user) -> QuerySet[Site]:
    """Not for experts: they are blinded to where a case comes from (the site is a blinded field of scoring)."""
    require_role(trial=trial, user=user, roles=[r for r in Role.values if r != Role.EXPERT])
    return trial.sites.annotate(n_cases=Count("cases", distinct=True)).order_by("code")


def members_for(*, trial: Trial, user) -> QuerySet[Membership]:
    require_role(trial=trial, user=user, roles=[Role.INVESTIGATOR])
    return trial.memberships.select_related("user", "site").order_by("role", "pseudonym")


def invitations_for(*, trial: Trial, user) -> QuerySet[Invitation]:
    require_role(trial=trial, user=user, roles=[Role.INVESTIGATOR])
    return trial.invitations.filter(accepted_at__isnull=True).select_related("site")


def cases_for(*, trial: Trial, user) -> QuerySet[Case]:
    """The case list is an investigator's view; readers and experts reach cases through their own work."""
    require_role(trial=trial, user=user, roles=[Role.INVESTIGATOR])
    return trial.cases.select_related("site").order_by("code")


def case_for(*, trial: Trial, code: str, user) -> Case:
    case = cases_for(trial=trial, user=user).filter(code=code).first()
    if case is None:
        raise PermissionDenied("No such case in this trial.")
    return case


def case_identity(*, case: Case, user) -> CaseIdentity | None:
    """The link back to the hospital record (accession number): investigators only."""
    require_role(trial=case.trial, user=user, roles=[Role.INVESTIGATOR])
    return CaseIdentity.objects.filter(case=case).first()


def case_image_for(*, trial: Trial, code: str, user, kind: str):
    """The file of a case image. Investigators now; the reading and scoring apps add their own routes."""
    case = case_for(trial=trial, code=code, user=user)
    return {"display": case.display_image, "thumbnail": case.thumbnail}[kind]


def identity_rows(*, trial: Trial, user) -> list[dict]:
    """The link from every case code back to the hospital's record (accession number, patient id, study UID), for
    an export after unblinding: investigators only."""
    require_role(trial=trial, user=user, roles=[Role.INVESTIGATOR])
    return [{"case": code, "accession_number": acc, "patient_id": pid, "study_instance_uid": study}
            for code, acc, pid, study in CaseIdentity.objects.filter(case__trial=trial).order_by("case__code")
            .values_list("case__code", "accession_number", "patient_id", "study_instance_uid")]


def allocations_for(*, trial: Trial, user) -> QuerySet[Allocation]:
    """Allocations already made (never the ones to come: the sequence stays on the server)."""
    require_role(trial=trial, user=user, roles=[Role.INVESTIGATOR])
    return trial.allocations.select_related("membership__user", "case").order_by("stratum", "position")


def arm_balance(*, trial: Trial, user) -> dict[str, dict[str, int]]:
    """stratum → arm → count of allocations made."""
    out: dict[str, dict[str, int]] = {}
    for row in allocations_for(trial=trial, user=user).values("stratum", "arm").annotate(n=Count("id")):
        out.setdefault(row["stratum"], {})[row["arm"]] = row["n"]
    return out


def audit_events_for(*, trial: Trial, user) -> QuerySet[AuditEvent]:
    require_role(trial=trial, user=user, roles=[Role.INVESTIGATOR])
    return trial.audit_events.order_by("-id")


# ------------------------------------------------------------------------------ the analysis dataset (no user)


def analysis_rows(trial: Trial) -> dict[str, list[dict]]:
    """The trial's part of the analysis dataset: cases and allocations, pseudonyms only, real arm names.
    NO PERMISSION CHECK: for stats.selectors.dataset_rows, after its own checks (role, lock, masking)."""
    cases = [{"case": c["code"], "site": c["site__code"], "enrolled_at": iso(c["enrolled_at"]),
              "view_position": c["view_position"]}
             for c in trial.cases.values("code", "site__code", "enrolled_at", "view_position")]
    allocations = [
        {"unit_type": a["unit_type"], "unit": a["membership__pseudonym"] or a["case__code"], "stratum": a["stratum"],
         "position": a["position"], "block": a["block"], "block_size": a["block_size"], "arm": a["arm"],
         "allocated_at": iso(a["allocated_at"])}
        for a in trial.allocations.values("unit_type", "membership__pseudonym", "case__code", "stratum", "position",
                                          "block", "block_size", "arm", "allocated_at")]
    return {"cases": cases, "allocations": allocations}
