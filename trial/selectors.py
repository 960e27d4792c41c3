"""Every read of trial data, scoped to what the asking user may see. Views and the API come here.

Selectors of one trial take the request's `Access` (trial.access: the trial and the asking user's roles, loaded
once per request) and check roles in memory; they never ask the database who the user is again."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import PermissionDenied
from django.db.models import Count, Prefetch, QuerySet
from django.utils import timezone  # expiry is security: the real clock, never a simulation's (core.clock)

from core.clock import iso

from . import audit, lifecycle, roster, screening
from .access import NO_ACCESS, Access, access_for, access_to  # noqa: F401  (NO_ACCESS: re-exported, as before)
from .models import (
    Allocation,
    ApiToken,
    Case,
    CaseIdentity,
    CaseImage,
    Delivery,
    Deviation,
    Invitation,
    Membership,
    Release,
    Role,
    ScreeningEntry,
    SenderToken,
    Signature,
    Site,
    Status,
    Trial,
)

# Everyone but experts: they are blinded to where a case comes from (the site is a blinded field of scoring).
SITE_ROLES = tuple(r for r in Role.values if r != Role.EXPERT)


# ------------------------------------------------------------------------------ checks for services (one per write)


def require_role(*, trial: Trial, user, roles: Iterable[str] | None = None) -> set[str]:
    """The user's roles on the trial; PermissionDenied unless they hold one of `roles` (any role if None). For
    services, which check once per write: pages and the API load an Access once per request instead."""
    return set(access_to(user=user, trial=trial, roles=roles or ()).roles)


# ------------------------------------------------------------------------------ the user's trials (no Access yet)


def trials_for_user(*, user) -> QuerySet[Trial]:
    if not getattr(user, "is_authenticated", False):
        return Trial.objects.none()
    trials = Trial.objects.filter(memberships__user=user)
    scope = getattr(user, "api_token_trial_id", None)
    if scope is not None:  # an API token sees its own trial only
        trials = trials.filter(pk=scope)
    return trials.distinct().order_by("-created_at")


def memberships_of_user(*, user) -> dict[int, list[str]]:
    """trial id → the user's roles, for the home page."""
    out: dict[int, list[str]] = {}
    for trial_id, role in Membership.objects.filter(user=user).values_list("trial_id", "role"):
        out.setdefault(trial_id, []).append(role)
    return out


def open_invitation(*, token: str) -> Invitation | None:
    """An invitation not used yet and not expired, by its secret token: whoever holds the link may see whom it
    invites, as what (only the invited address's account may take it: trial.services)."""
    return (Invitation.objects.select_related("trial", "site")
            .filter(token=token, accepted_at__isnull=True, expires_at__gt=timezone.now()).first())


# ------------------------------------------------------------------------------ the user's API tokens


def api_token_for_key(*, key: str) -> ApiToken | None:
    """The live token (not revoked, not expired) whose key is `key`, with its user and trial; None otherwise."""
    return (ApiToken.objects.select_related("user", "trial")
            .filter(key_hash=ApiToken.hash_key(key), revoked_at__isnull=True, expires_at__gt=timezone.now()).first())


def sender_token_for_key(*, key: str) -> SenderToken | None:
    """The live sender token (not revoked) whose key is `key`, with its site and trial; None otherwise."""
    return (SenderToken.objects.select_related("site__trial")
            .filter(key_hash=ApiToken.hash_key(key), revoked_at__isnull=True).first())


def api_tokens_of_user(*, user) -> QuerySet[ApiToken]:
    """The user's own tokens (never the key: only its first characters), newest first."""
    return ApiToken.objects.filter(user_id=user.pk).select_related("trial").order_by("-created_at")


# ------------------------------------------------------------------------------ one trial, as the asking user


def sites_for(*, access: Access) -> QuerySet[Site]:
    """Not for experts: they are blinded to where a case comes from."""
    access.require(*SITE_ROLES)
    return access.trial.sites.annotate(n_cases=Count("cases", distinct=True)).order_by("code")


def site_by_code(*, access: Access, code: str) -> Site | None:
    """One of the trial's sites by its code (None if there is none), for investigators choosing where a case or a
    reader belongs."""
    access.require(Role.INVESTIGATOR)
    return access.trial.sites.filter(code=code).first()


def members_for(*, access: Access) -> QuerySet[Membership]:
    access.require(Role.INVESTIGATOR)
    return access.trial.memberships.select_related("user", "site").order_by("role", "pseudonym")


def invitations_for(*, access: Access) -> QuerySet[Invitation]:
    access.require(Role.INVESTIGATOR)
    return access.trial.invitations.filter(accepted_at__isnull=True).select_related("site")


def cases_for(*, access: Access) -> QuerySet[Case]:
    """The case list is an investigator's view; readers and experts reach cases through their own work."""
    access.require(Role.INVESTIGATOR)
    return access.trial.cases.select_related("site").order_by("code")


def case_for(*, access: Access, code: str) -> Case:
    case = cases_for(access=access).filter(code=code).first()
    if case is None:
        raise PermissionDenied("No such case in this trial.")
    return case


def case_identity(*, access: Access, case: Case) -> CaseIdentity | None:
    """The link back to the hospital record (accession number): investigators only."""
    access.require(Role.INVESTIGATOR)
    if case.trial_id != access.trial.pk:
        raise PermissionDenied("No such case in this trial.")
    return CaseIdentity.objects.filter(case=case).first()


def case_image_for(*, access: Access, code: str, kind: str):
    """The file of a case image. Investigators now; the reading and scoring apps add their own routes."""
    case = case_for(access=access, code=code)
    return {"display": case.display_image, "thumbnail": case.thumbnail}[kind]


@dataclass(frozen=True)
class StudyImage:
    """One image of a case's study as its investigator sees it: `image` is the case itself for the primary image
    (the frontal film the AI drafts from), a CaseImage for the others."""
    position: int             # its place in the case (1: the primary), the name its files are served by
    image: Case | CaseImage
    received_at: datetime | None  # when it reached the platform
    added_at: datetime | None     # when it joined its case (a lateral that came first waited until its frontal film)

    @property
    def primary(self) -> bool:
        return self.position == 1


def case_images(*, access: Access, case: Case) -> list[StudyImage]:
    """Every image of the case's study, the primary first, then the others as received (CaseImage.Meta's order);
    staged images (no case yet) never. Investigators only."""
    access.require(Role.INVESTIGATOR)
    if case.trial_id != access.trial.pk:
        raise PermissionDenied("No such case in this trial.")
    primary = StudyImage(1, case, case.arrived_at or case.enrolled_at, case.enrolled_at)
    return [primary, *(StudyImage(n, image, image.received_at, image.added_at)
                       for n, image in enumerate(CaseImage.objects.filter(case=case), start=2))]


def case_study_image_for(*, access: Access, code: str, position: int, kind: str):
    """The file `kind` ("display" or "thumbnail") of the image at `position` of a case's study (1: the primary, as
    in case_images): investigators only; an unknown position or kind is refused."""
    case = case_for(access=access, code=code)
    if position == 1:  # the primary: no need to ask for the others
        image = case
    else:
        images = case_images(access=access, case=case)
        image = images[position - 1].image if 1 < position <= len(images) else None
    field_file = {"display": image.display_image, "thumbnail": image.thumbnail}.get(kind) if image else None
    if not field_file:
        raise PermissionDenied("Unknown image.")
    return field_file


def identity_rows(*, access: Access) -> list[dict]:
    """The link from every case code back to the hospital's record (accession number, patient id, study UID), for
    an export after unblinding: investigators only."""
    access.require(Role.INVESTIGATOR)
    return [{"case": code, "accession_number": acc, "patient_id": pid, "study_instance_uid": study}
            for code, acc, pid, study in CaseIdentity.objects.filter(case__trial=access.trial).order_by("case__code")
            .values_list("case__code", "accession_number", "patient_id", "study_instance_uid")]


# While units are still being allocated, the arms of those already allocated are hidden from the people who
# enrol them: "the arm that is behind" predicts the next allocation of a block most of the time.
ALLOCATION_HIDDEN_STATUSES = lifecycle.statuses_allowing(lifecycle.CONCEAL_ALLOCATIONS)


def allocations_for(*, access: Access) -> QuerySet[Allocation]:
    """Allocations already made (never the ones to come: the sequence stays on the server), once enrolment has
    closed."""
    access.require(Role.INVESTIGATOR)
    if access.trial.status in ALLOCATION_HIDDEN_STATUSES:
        raise PermissionDenied("The allocations are hidden while enrolment is open, so that nobody can predict the "
                               "next one.")
    return access.trial.allocations.select_related("membership__user", "case").order_by("stratum", "position")


def arm_balance(*, access: Access) -> dict[str, dict[str, int]] | None:
    """stratum → arm → count of allocations made; None while enrolment is open (hidden)."""
    access.require(Role.INVESTIGATOR)
    if access.trial.status in ALLOCATION_HIDDEN_STATUSES:
        return None
    out: dict[str, dict[str, int]] = {}
    for row in allocations_for(access=access).values("stratum", "arm").annotate(n=Count("id")):
        out.setdefault(row["stratum"], {})[row["arm"]] = row["n"]
    return out


# While the trial is blinded the audit page shows no outcome: the payload keys of events written before outcomes left
# the payloads (times, scores, choices, text, arms), the correction reasons, and the time of day of the events of
# reading and scoring (an "opened" and a "submitted" of one read, seconds apart, are its reading time).
_REASON_IS_OUTCOME = ("report.", "scoring.")
_TIME_IS_OUTCOME = ("read.", "report.", "scoring.")


def audit_events_for(*, access: Access, limit: int = 500) -> list[dict]:
    """The trial's newest audit events for the audit page, blinded until the trial is unblinded (see above)."""
    access.require(Role.INVESTIGATOR)
    blinded = access.trial.status != Status.UNBLINDED
    rows = []
    for event in access.trial.audit_events.order_by("-id")[:limit]:
        payload = dict(event.payload or {})
        time_hidden = False
        if blinded and not event.action.startswith("trial."):  # a trial's own events hold its set-up (its findings)
            payload = {key: value for key, value in payload.items() if key not in audit.OUTCOME_KEYS}
            if event.action.startswith(_REASON_IS_OUTCOME):
                payload.pop("reason", None)
            time_hidden = event.action.startswith(_TIME_IS_OUTCOME)
        rows.append({"id": event.pk, "created_at": event.created_at, "time_hidden": time_hidden,
                     "actor_name": event.actor_name, "action": event.action, "object_type": event.object_type,
                     "object_id": event.object_id, "payload": payload, "state_hash": event.state_hash[:12],
                     "scheme": event.scheme})
    return rows


def audit_status_for(*, access: Access) -> dict | None:
    """The last verification of the audit trail (the nightly task, verify_audit), for the investigators' notice."""
    access.require(Role.INVESTIGATOR)
    return audit.last_verification()


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
    screening = [
        {"entry": e["id"], "site": e["site__code"], "received_at": iso(e["received_at"]), "source": e["source"],
         "outcome": e["outcome"], "code": e["code"], "case": e["case__code"]}
        for e in trial.screening.values("id", "site__code", "received_at", "source", "outcome", "code", "case__code")]
    deviations = [
        {"deviation": d["id"], "kind": d["kind"], "intercurrent": int(d["intercurrent"]),
         "occurred_at": iso(d["occurred_at"]), "case": d["case__code"], "reader": d["reader__pseudonym"],
         "read": d["read_id"], "details": d["description"], "reason": d["reason"]}
        for d in trial.deviations.values("id", "kind", "intercurrent", "occurred_at", "case__code",
                                         "reader__pseudonym", "read_id", "description", "reason")]
    return {"cases": cases, "allocations": allocations, "screening": screening, "deviations": deviations}


# ------------------------------------------------------------------------------ electronic signatures


def pending_unblinding_of(trial: Trial) -> Signature | None:
    """The request to unblind that waits for its second person (a locked trial is never unlocked, so a request made
    while it is locked is still open). NO PERMISSION CHECK: for the services and `pending_unblinding`."""
    if trial.status != Status.LOCKED:
        return None
    return trial.signatures.filter(meaning=Signature.Meaning.UNBLIND_REQUEST).order_by("-signed_at", "-id").first()


def pending_unblinding(*, access: Access) -> Signature | None:
    access.require(Role.INVESTIGATOR, Role.STATISTICIAN)
    return pending_unblinding_of(access.trial)


def signatures_for(*, access: Access) -> QuerySet[Signature]:
    """The trial's electronic signatures (lock, unblinding, plan freezes): for its investigators and statisticians."""
    access.require(Role.INVESTIGATOR, Role.STATISTICIAN)
    return access.trial.signatures.order_by("signed_at", "id")


# ------------------------------------------------------------------------------ conduct of a live trial


def conduct(*, access: Access, days: int = 14) -> dict:
    """The investigator's conduct page of a prospective trial (or a reader study's screening): enrolment per site
    against its target, the screening log by reason, arrivals per day per site, readers on duty, deviations, and the
    projected date to reach the target. Never an outcome, and nothing by arm (readers appear by pseudonym and site,
    as on the members list)."""
    access.require(Role.INVESTIGATOR)
    from datetime import timedelta

    from core import clock

    trial = access.trial
    today = clock.now().date()
    first = today - timedelta(days=days - 1)
    sites = list(trial.sites.annotate(n_cases=Count("cases", distinct=True)).order_by("code"))
    entries = trial.screening.all()
    by_code = [{"code": row["code"], "n": row["n"], "label": screening.label(row["code"])}
               for row in entries.filter(outcome=ScreeningEntry.Outcome.NOT_ENROLLED)
               .values("code").annotate(n=Count("id")).order_by("-n", "code")]
    per_day: dict[str, dict[str, int]] = {}
    for row in (entries.filter(received_at__date__gte=first).values("received_at__date", "site__code", "outcome")
                .annotate(n=Count("id"))):
        day = per_day.setdefault(str(row["received_at__date"]), {})
        day[row["site__code"]] = day.get(row["site__code"], 0) + row["n"]
    enrolled_per_day = {str(row["arrived_at__date"]): row["n"] for row in trial.cases.filter(
        arrived_at__date__gte=first).values("arrived_at__date").annotate(n=Count("id"))}
    daily = [enrolled_per_day.get(str(first + timedelta(days=i)), 0) for i in range(days)]
    n_cases = sum(site.n_cases for site in sites)
    target = trial.target_cases
    return {
        "sites": sites, "n_cases": n_cases, "target": target,
        "screened": entries.count(), "not_enrolled": by_code,
        "added": entries.filter(outcome=ScreeningEntry.Outcome.ADDED).count(),
        "staged": trial.case_images.filter(case__isnull=True).count(),
        "days": [{"day": str(first + timedelta(days=i)),
                  "sites": [per_day.get(str(first + timedelta(days=i)), {}).get(s.code, 0) for s in sites],
                  "enrolled": daily[i]} for i in range(days)],
        "projected": (lifecycle.projected_date(daily, remaining=target - n_cases, today=today)
                      if target is not None else None),
        "readers": [_with_roster_text(m) for m in trial.memberships.filter(role=Role.READER)
                    .select_related("site", "user").order_by("site__code", "pseudonym")],
        "deviations": list(trial.deviations.select_related("case", "reader", "recorded_by")
                           .order_by("-occurred_at", "-id")[:200]),
        "deviation_counts": dict(trial.deviations.values_list("kind").annotate(n=Count("id")).order_by("kind")),
        "recent_screening": list(entries.select_related("site", "case").order_by("-received_at", "-id")[:50]),
    }


def _with_roster_text(member: Membership) -> Membership:
    member.roster_text = roster.text(member.roster)
    return member


def deviation_kinds() -> list[tuple[str, str]]:
    return list(Deviation.Kind.choices)


# ------------------------------------------------------------------------------------------ the hospital's wires


def hospital_wires(*, access: Access) -> dict:
    """The investigator's page of the wires to the hospital: each site's senders (DICOM AE titles, STOW-RS tokens)
    and destinations (PACS, FHIR), and the outbox: every released report of record with its deliveries, their state,
    attempts and last answer. No report text, no PHI, nothing by arm (the release policy names one source for the
    whole trial)."""
    access.require(Role.INVESTIGATOR)
    trial = access.trial
    sites = list(trial.sites.order_by("code").prefetch_related(
        Prefetch("sender_tokens", queryset=SenderToken.objects.filter(revoked_at__isnull=True))))
    releases = list(Release.objects.filter(trial=trial).select_related("case", "amends")
                    .prefetch_related(Prefetch("deliveries", queryset=Delivery.objects.prefetch_related(
                        "tries"))).order_by("-created_at", "-id")[:500])
    states = dict(Delivery.objects.filter(release__trial=trial).values_list("state").annotate(n=Count("id"))
                  .order_by("state"))
    return {"sites": sites, "releases": releases, "states": states,
            "failed": [d for r in releases for d in r.deliveries.all() if d.state == Delivery.State.FAILED]}


def release_of(*, access: Access, case_code: str, version: int) -> Release | None:
    access.require(Role.INVESTIGATOR)
    return (Release.objects.filter(trial=access.trial, case__code=case_code, version=version)
            .select_related("case__site", "case__trial", "case__identity", "amends").first())


def delivery_of(*, access: Access, delivery_id: int) -> Delivery | None:
    access.require(Role.INVESTIGATOR)
    return Delivery.objects.filter(pk=delivery_id, release__trial=access.trial).select_related(
        "release__trial", "release__case__site").first()
