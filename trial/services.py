"""Every write to trials, sites, members, cases and allocations: one transaction each, audited."""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.base import ContentFile
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from core import clock
from core.errors import Conflict, NotAllowed, ServiceError, WrongStatus

from . import audit, dicom, events, lifecycle, randomization, roster, screening, signatures
from .errors import (
    CaseRejected,
    DuplicateCode,
    DuplicateImage,
    FileTooLarge,
    IllegalTransition,
    InvalidInvitation,
    NotEnrolled,
    NotYourInvitation,
    RoleConflict,
)
from .models import (
    FINDING_NAME_LENGTH,
    Allocation,
    ApiToken,
    Case,
    CaseIdentity,
    CaseImage,
    Design,
    Deviation,
    Invitation,
    Membership,
    Mode,
    Role,
    ScreeningEntry,
    SenderToken,
    Signature,
    Site,
    SiteEnrolment,
    Status,
    Trial,
)
from .selectors import pending_unblinding_of, require_role
from .tasks import prepare_image_values as prepare_image_values_task
from .tasks import prepare_viewer_image as prepare_viewer_image_task
from .tasks import settle_study as settle_study_task

logger = logging.getLogger(__name__)
User = get_user_model()

PSEUDONYM_PREFIX = {
    Role.INVESTIGATOR: "I",
    Role.READER: "R",
    Role.SENIOR: "S",
    Role.EXPERT: "E",
    Role.STATISTICIAN: "T",
    Role.MONITOR: "M",
}
# Settings that define the randomization, the scoring design and the conduct of a prospective trial (what a reader
# is shown, what counts as a deviation, which report is released): frozen once enrolment starts.
DESIGN_FIELDS = ("mode", "design", "ratio_assisted", "ratio_standard", "block_multiples", "fixed_block_reason",
                 "experts_per_item", "eligibility", "routing_rule", "draft_rule", "draft_limit_minutes",
                 "read_window_hours", "release_policy", "flag_urgency", "settle_seconds")
SETTINGS_FIELDS = (
    "title", "registration_id", "findings", "allow_no_preference", "washout_days", "require_signoff",
    "second_factor_for_all", "target_cases", "close_at_target",
) + DESIGN_FIELDS


def _locked(trial: Trial) -> Trial:
    """Re-read the trial under a row lock: allocations, case codes and pseudonyms are taken one at a time.

    NO KEY UPDATE, not UPDATE: rows inserted elsewhere that point at the trial (audit events, reads) take a
    key-share lock on it, which a plain FOR UPDATE would block, deadlocking against the audit-head lock."""
    return Trial.objects.select_for_update(no_key=True).get(pk=trial.pk)


def _require_investigator(trial: Trial, user) -> None:
    require_role(trial=trial, user=user, roles=[Role.INVESTIGATOR])


def clean_findings(findings) -> list[str]:
    if not isinstance(findings, (list, tuple)):
        raise ServiceError("Findings must be a list of names.", field="findings")
    cleaned = [" ".join(str(f).split()).lower() for f in findings]
    cleaned = [f for f in cleaned if f]
    if not cleaned:
        raise ServiceError("A trial needs at least one finding.", field="findings")
    if len(set(cleaned)) != len(cleaned):
        raise ServiceError("Each finding may appear only once.", field="findings")
    if any(len(f) > FINDING_NAME_LENGTH for f in cleaned):
        raise ServiceError(f"A finding name may have at most {FINDING_NAME_LENGTH} characters.", field="findings")
    return cleaned


def _validate_design(values: dict) -> None:
    n = values.get("experts_per_item")
    if n is not None and (n < 1 or n % 2 == 0):
        # An odd number of experts gives every pair a majority; the paper used 5.
        raise ServiceError("The number of experts per item must be odd (e.g. 3 or 5).", field="experts_per_item")
    if "block_multiples" in values or "ratio_assisted" in values or "ratio_standard" in values:
        try:
            randomization.Scheme(
                ratio=(int(values.get("ratio_assisted", 1)), int(values.get("ratio_standard", 1))),
                block_multiples=tuple(values.get("block_multiples", (1, 2, 3))),
            )
        except (TypeError, ValueError) as exc:
            raise ServiceError(f"Randomization settings are not valid: {exc}", field="block_multiples") from exc
        if len(set(values.get("block_multiples", (1, 2, 3)))) < 2 and not values.get("fixed_block_reason", "").strip():
            # With one block size, whoever has seen most of a block knows its last allocations.
            raise ServiceError("Give at least two block sizes, so that nobody can tell where a block ends, or state "
                               "why one size is needed.", field="block_multiples")
    if values.get("design") is not None and values["design"] not in Design.values:
        raise ServiceError("Unknown trial design.", field="design")
    if values.get("mode") is not None and values["mode"] not in Mode.values:
        raise ServiceError("Unknown trial mode.", field="mode")
    if values.get("mode") == Mode.PROSPECTIVE and values.get("design", Design.PAIRED_PARALLEL) not in \
            lifecycle.PROSPECTIVE_DESIGNS:
        raise ServiceError("A crossover reads every case twice per reader after a washout: it runs as a reader "
                           "study, not prospectively.", field="design")
    if values.get("eligibility") is not None:
        try:
            dicom.EligibilityRules.from_dict(values["eligibility"])
        except (TypeError, ValueError) as exc:
            raise ServiceError(f"Eligibility rules are not valid: {exc}", field="eligibility") from exc
    if values.get("target_cases") is not None and values["target_cases"] < 1:
        raise ServiceError("A target needs at least one case.", field="target_cases")


def scheme_for(trial: Trial) -> randomization.Scheme:
    return randomization.Scheme(
        arms=("assisted", "standard"),
        ratio=(trial.ratio_assisted, trial.ratio_standard),
        block_multiples=tuple(trial.block_multiples),
    )


# ----------------------------------------------------------------------------- trials and sites


@transaction.atomic
def create_trial(*, by, code: str, title: str, registration_id: str = "", design: str = Design.PAIRED_PARALLEL,
                 findings: list[str] | None = None, experts_per_item: int = 5, **options) -> Trial:
    """Create a trial in setup; its creator becomes its first investigator."""
    if not (by.is_staff or by.has_perm("trial.add_trial")):
        raise ServiceError("You are not allowed to create trials; ask an administrator.", code="forbidden")
    if options.get("mode") == Mode.PROSPECTIVE and "eligibility" not in options:
        # A trial in clinical practice screens every arriving image: adults' frontal chest radiographs by default.
        options["eligibility"] = dicom.EligibilityRules().to_dict()
    values = {"design": design, "experts_per_item": experts_per_item, **options}
    _validate_design(values)
    if Trial.objects.filter(code=code).exists():
        raise DuplicateCode(f"The trial code “{code}” is already used; choose another.", field="code")
    unknown = set(options) - set(SETTINGS_FIELDS)
    if unknown:
        raise ServiceError(f"Unknown trial settings: {', '.join(sorted(unknown))}.")
    try:
        with transaction.atomic():
            trial = Trial.objects.create(
                code=code, title=title, registration_id=registration_id, design=design,
                findings=(clean_findings(findings) if findings is not None
                          else Trial._meta.get_field("findings").get_default()),
                experts_per_item=experts_per_item, randomization_seed=randomization.new_seed(),
                uid_secret=secrets.token_bytes(32), created_by=by, **options,
            )
    except IntegrityError as exc:  # a concurrent create with the same code
        raise DuplicateCode(f"The trial code “{code}” is already used; choose another.", field="code") from exc
    audit.record(actor=by, action="trial.created", obj=trial, payload={
        "code": code, "title": title, "registration_id": registration_id, "design": design,
        "findings": trial.findings, "experts_per_item": experts_per_item,
        "randomization": randomization.ALGORITHM,
        # A commitment to the seed: after unblinding the seed can be revealed and checked against it.
        "seed_sha256": hashlib.sha256(bytes(trial.randomization_seed)).hexdigest(),
    })
    _add_membership(trial=trial, by=by, user=by, role=Role.INVESTIGATOR)
    return trial


@transaction.atomic
def update_trial_settings(*, trial: Trial, by, **changes) -> Trial:
    _require_investigator(trial, by)
    trial = _locked(trial)
    unknown = set(changes) - set(SETTINGS_FIELDS)
    if unknown:
        raise ServiceError(f"Unknown trial settings: {', '.join(sorted(unknown))}.")
    changed = {k: v for k, v in changes.items() if getattr(trial, k) != v}
    if any(k in DESIGN_FIELDS for k in changed) and trial.status != Status.SETUP:
        raise WrongStatus("The design, randomization and scoring settings are frozen once enrolment has started.")
    if "findings" in changed:
        if not trial.allows(lifecycle.CHANGE_FINDINGS):
            raise WrongStatus("Findings can no longer change: reading has started.", field="findings")
        changed["findings"] = clean_findings(changed["findings"])
    if changed.get("mode") == Mode.PROSPECTIVE and trial.eligibility is None and "eligibility" not in changes:
        changed["eligibility"] = dicom.EligibilityRules().to_dict()  # as create_trial gives a prospective trial
    merged = {k: getattr(trial, k) for k in DESIGN_FIELDS} | changed
    _validate_design(merged)
    if not changed:
        return trial
    before = {k: getattr(trial, k) for k in changed}
    for key, value in changed.items():
        setattr(trial, key, value)
    trial.save(update_fields=list(changed))
    audit.record(actor=by, action="trial.settings_changed", obj=trial, payload={"before": before, "after": changed})
    return trial


def _check_can_leave(trial: Trial, target: str) -> None:
    """Preconditions of each step, so that a trial cannot move on half-ready."""
    if target in (Status.ENROLLING, Status.OPEN) and trial.status == Status.SETUP:
        if not trial.sites.exists():
            raise IllegalTransition("Add at least one site before enrolment starts.")
    if target == Status.OPEN and trial.status == Status.SETUP and trial.design == Design.PAIRED_PARALLEL:
        readers = trial.memberships.filter(role=Role.READER, withdrawn_at__isnull=True)
        if not readers.exists():
            raise IllegalTransition("A prospective trial routes each case at arrival: add its readers first.")
    if target == Status.READING:
        if not trial.cases.exists():
            raise IllegalTransition("Enrol at least one case before reading starts.")
        if trial.design == Design.PAIRED_PARALLEL:
            arms = set(trial.allocations.filter(unit_type=Allocation.Unit.READER).values_list("arm", flat=True))
            if arms != {"assisted", "standard"}:
                raise IllegalTransition("Reading needs at least one randomized reader in each arm.")
        elif not trial.memberships.filter(role=Role.READER).exists():
            raise IllegalTransition("Reading needs at least one reader.")


# Statuses reached only through an electronically signed act (trial.signatures), never a plain transition.
SIGNED_STATUSES = {
    Status.LOCKED: "Locking is an electronically signed act: use the lock page (your password and second factor).",
    Status.UNBLINDED: "Unblinding needs two people, each signing with their password and second factor: an "
                      "investigator asks and a statistician approves, on the unblinding page.",
}


@transaction.atomic
def transition_trial(*, trial: Trial, by, to: str, reason: str = "") -> Trial:
    """Move the trial to its next status. Pausing a prospective trial needs a reason (shown to everyone who would
    otherwise wonder why nothing arrives)."""
    _require_investigator(trial, by)
    trial = _locked(trial)
    if to in SIGNED_STATUSES and trial.next_statuses() and to in trial.next_statuses():
        raise IllegalTransition(SIGNED_STATUSES[to])
    reason = " ".join((reason or "").split())
    if to == Status.PAUSED and not reason:
        raise ServiceError("Say why enrolment is paused: everyone who waits for cases sees it.", field="reason")
    if len(reason) > Trial._meta.get_field("pause_reason").max_length:
        raise ServiceError("The reason is too long.", field="reason")
    return _transition(trial=trial, by=by, to=to, payload={"reason": reason} if reason else None)


def _transition(*, trial: Trial, by, to: str, payload: dict | None = None) -> Trial:
    """The move itself, on a trial already locked for update, inside the caller's transaction."""
    if not lifecycle.can_move(trial.mode, trial.status, to):
        allowed = ", ".join(trial.next_statuses()) or "none (final)"
        raise IllegalTransition(
            f"A trial in “{trial.status}” cannot move to “{to}”. Allowed next status: {allowed}."
        )
    _check_can_leave(trial, to)
    before = trial.status
    trial.status = to
    trial.pause_reason = (payload or {}).get("reason", "") if to == Status.PAUSED else ""
    trial.save(update_fields=["status", "pause_reason"])
    audit.record(actor=by, action="trial.status_changed", obj=trial, payload={"from": before, "to": to,
                                                                               **(payload or {})})
    events.announce(events.trial_status_changed, trial_id=trial.pk, status=to, previous=before)
    if before == Status.SETUP and trial.design in (Design.PAIRED_PARALLEL, Design.CROSSOVER):
        # Readers who joined during setup (and were not withdrawn) are randomized now, in the order they joined.
        for membership in trial.memberships.filter(role=Role.READER, allocation__isnull=True,
                                                   withdrawn_at__isnull=True).order_by("id"):
            _allocate_reader(trial=trial, by=by, membership=membership)
        if to == Status.OPEN and trial.design == Design.PAIRED_PARALLEL and set(trial.allocations.filter(
                unit_type=Allocation.Unit.READER).values_list("arm", flat=True)) != {"assisted", "standard"}:
            # rolls back with the transition: every case would wait for ever in the empty arm
            raise IllegalTransition("Every case is read in both arms: the trial needs readers randomized to each "
                                    "arm before it opens (add readers).")
    return trial


# ----------------------------------------------------------------------------- lock and unblinding: signed acts


@transaction.atomic
def lock_trial(*, trial: Trial, by, proof: signatures.Reauthenticated) -> Trial:
    """Lock the database (scoring → locked), with the investigator's electronic signature on the audit chain's head
    (every trial-relevant write before the lock). `proof`: trial.signatures.reauthenticate, just before."""
    _require_investigator(trial, by)
    trial = _locked(trial)
    signatures.sign(trial=trial, by=by, proof=proof, meaning=Signature.Meaning.LOCK, obj=trial,
                    content_hash=audit.current_head().hash)
    return _transition(trial=trial, by=by, to=Status.LOCKED)


@transaction.atomic
def request_unblinding(*, trial: Trial, by, proof: signatures.Reauthenticated) -> Signature:
    """The first of the two people: an investigator asks, signing the locked data's hash."""
    _require_investigator(trial, by)
    trial = _locked(trial)
    if trial.status != Status.LOCKED:
        raise WrongStatus("Only a locked trial can be unblinded.")
    pending = pending_unblinding_of(trial)
    if pending is not None:
        raise Conflict(f"{pending.signer_name} already asked for unblinding on {pending.signed_at:%Y-%m-%d %H:%M} UTC; "
                       "it waits for a statistician's approval.")
    return signatures.sign(trial=trial, by=by, proof=proof, meaning=Signature.Meaning.UNBLIND_REQUEST, obj=trial,
                           content_hash=audit.current_head().hash)


@transaction.atomic
def approve_unblinding(*, trial: Trial, by, proof: signatures.Reauthenticated) -> Trial:
    """The second person: a statistician of the trial, not the one who asked, approves; the trial is unblinded and
    the audit event names both people and their signatures."""
    require_role(trial=trial, user=by, roles=[Role.STATISTICIAN])
    trial = _locked(trial)
    request = pending_unblinding_of(trial)
    if request is None:
        raise Conflict("Nobody has asked for unblinding: an investigator asks first, then a statistician approves.")
    if request.signer_id == by.pk:
        raise Conflict("Unblinding needs two people: the one who asked cannot also approve.")
    approval = signatures.sign(trial=trial, by=by, proof=proof, meaning=Signature.Meaning.UNBLIND_APPROVE, obj=trial,
                               content_hash=request.content_hash)
    return _transition(trial=trial, by=by, to=Status.UNBLINDED, payload={
        "requested_by": request.signer_name, "request_signature": request.pk,
        "approved_by": approval.signer_name, "approval_signature": approval.pk})


@transaction.atomic
def add_site(*, trial: Trial, by, code: str, name: str) -> Site:
    _require_investigator(trial, by)
    trial = _locked(trial)
    if trial.status in (Status.LOCKED, Status.UNBLINDED):
        raise WrongStatus("Sites cannot be added to a locked trial.")
    if trial.sites.filter(code=code).exists():
        raise DuplicateCode(f"The site code “{code}” is already used in this trial.", field="code")
    site = Site.objects.create(trial=trial, code=code, name=name)
    audit.record(actor=by, action="site.added", obj=site, payload={"code": code, "name": name})
    return site


# ----------------------------------------------------------------------------- members


# Roles that exclude every other role in the same trial, each with how it is named and why: a reader (as senior,
# expert, investigator or statistician they would see, or judge, the other arm's work or their own) and a member of
# the data-monitoring committee (who sees interim results by arm, and must stay independent of those who run the
# trial and can act on them).
EXCLUSIVE_ROLES = {  # role: (joining it, holding it, why)
    Role.READER: ("a reader", "a reader in this trial", "a reader may hold no other role in the same trial"),
    Role.MONITOR: ("on its data-monitoring committee", "on this trial's data-monitoring committee",
                   "the committee must be independent of the trial"),
}


def _check_role_conflict(*, user, role: str, held: set[str]) -> None:
    name = user.get_username()
    for exclusive, (joining, holding, why) in EXCLUSIVE_ROLES.items():
        others = held - {exclusive}
        if role == exclusive and others:
            raise RoleConflict(f"{name} is already {', '.join(sorted(others))} in this trial and cannot also be "
                               f"{joining}: {why}.", field="role")
        if role != exclusive and exclusive in held:
            raise RoleConflict(f"{name} is {holding} and cannot also be {role}: {why}.", field="role")


READERS_JOIN = ("Readers can join only while they can be randomized: before a reader study's reading starts, or "
                "until a prospective trial is locked.")


def _add_membership(*, trial: Trial, by, user, role: str, site: Site | None = None) -> Membership:
    if role not in Role.values:
        raise ServiceError("Unknown role.", field="role")
    if site is not None and site.trial_id != trial.pk:
        raise ServiceError("That site belongs to another trial.", field="site")
    if role == Role.READER and site is None and trial.design == Design.PAIRED_PARALLEL:
        # Readers are randomized within their site (stratified by site, as in the paper).
        raise ServiceError("A reader must belong to a site in a paired-parallel trial.", field="site")
    trial = _locked(trial)
    if role == Role.READER and not (trial.status == Status.SETUP or trial.allows(lifecycle.RANDOMIZE)):
        raise WrongStatus(READERS_JOIN, field="role")
    held = set(Membership.objects.filter(trial=trial, user=user).values_list("role", flat=True))
    if role in held:
        raise DuplicateCode(f"{user.get_username()} already holds the role {role} in this trial.", field="role")
    _check_role_conflict(user=user, role=role, held=held)
    prefix = PSEUDONYM_PREFIX[role]
    number = Membership.objects.filter(trial=trial, role=role).count() + 1
    membership = Membership.objects.create(
        trial=trial, user=user, role=role, site=site, pseudonym=f"{prefix}{number:02d}"
    )
    audit.record(actor=by, action="member.added", obj=membership, trial=trial, payload={
        "user": user.pk, "role": role, "site": site.code if site else None, "pseudonym": membership.pseudonym,
    })
    if role == Role.READER and trial.allows(lifecycle.RANDOMIZE) and trial.design != Design.CASE_RANDOMIZED:
        # A reader who joins a running trial is randomized at once, within the site's stratum.
        _allocate_reader(trial=trial, by=by, membership=membership)
    if role == Role.READER and trial.allows(lifecycle.READ):
        events.announce(events.readers_changed, trial_id=trial.pk)  # cases waiting for a reader may go to them
    return membership


@transaction.atomic
def add_member(*, trial: Trial, by, user, role: str, site: Site | None = None) -> Membership:
    _require_investigator(trial, by)
    return _add_membership(trial=trial, by=by, user=user, role=role, site=site)


@transaction.atomic
def invite_member(*, trial: Trial, by, email: str, role: str, site: Site | None = None,
                  accept_url: Callable[[str], str] | None = None) -> Invitation | Membership:
    """Add a known user at once; otherwise e-mail an invitation link that creates the account."""
    _require_investigator(trial, by)
    email = email.strip().lower()
    existing = User.objects.filter(email__iexact=email).first()
    if existing is not None:
        return add_member(trial=trial, by=by, user=existing, role=role, site=site)
    if role == Role.READER and not (trial.status == Status.SETUP or trial.allows(lifecycle.RANDOMIZE)):
        raise WrongStatus(READERS_JOIN, field="role")
    if role == Role.READER and site is None and trial.design == Design.PAIRED_PARALLEL:
        raise ServiceError("A reader must belong to a site in a paired-parallel trial.", field="site")
    if site is not None and site.trial_id != trial.pk:
        raise ServiceError("That site belongs to another trial.", field="site")
    # Expiry is security, on the real clock (never a simulation's: core.clock).
    if trial.invitations.filter(email=email, role=role, accepted_at__isnull=True,
                                expires_at__gt=timezone.now()).exists():
        raise DuplicateCode(f"{email} already has an open invitation as {role}.", field="email")
    expires_at = timezone.now() + timedelta(days=settings.CXR_INVITATION_DAYS)
    invitation = Invitation.objects.create(
        trial=trial, email=email, role=role, site=site, token=secrets.token_urlsafe(32), invited_by=by,
        expires_at=expires_at,
    )
    audit.record(actor=by, action="member.invited", obj=invitation, trial=trial,
                 payload={"email": email, "role": role, "site": site.code if site else None,
                          "expires_at": expires_at.isoformat()})
    link = accept_url(invitation.token) if accept_url else reverse("trial:accept_invitation", args=[invitation.token])
    transaction.on_commit(lambda: send_mail(
        subject=f"Invitation to the trial {trial.title}",
        message=(f"You are invited to join {trial.title} as {role}. Accept here: {link}\n\nThe link works once, for "
                 f"{email} only, until {expires_at:%Y-%m-%d %H:%M} UTC."),
        from_email=None, recipient_list=[email], fail_silently=True,
    ))
    return invitation


def _open_invitation(token: str) -> Invitation:
    invitation = Invitation.objects.select_for_update().filter(token=token).first()
    if invitation is None or invitation.accepted_at is not None or invitation.expires_at <= timezone.now():
        raise InvalidInvitation("This invitation is not valid, has expired or was already used; ask the "
                                "investigator for a new one.")
    return invitation


def _same_email(a: str, b: str) -> bool:
    return (a or "").strip().casefold() == (b or "").strip().casefold() != ""


@transaction.atomic
def accept_invitation(*, token: str, user) -> Membership:
    """The signed-in `user` takes the invitation: only if it was sent to their e-mail address, once, in time."""
    invitation = _open_invitation(token)
    if not _same_email(user.email, invitation.email):
        raise NotYourInvitation("This invitation was sent to another e-mail address than your account's. Log in "
                                "with the account of the invited address, or log out and create one from the link.")
    membership = _add_membership(trial=invitation.trial, by=user, user=user, role=invitation.role,
                                 site=invitation.site)
    invitation.accepted_at = clock.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit.record(actor=user, action="member.invitation_accepted", obj=invitation, trial=invitation.trial)
    return membership


@transaction.atomic
def join_by_invitation(*, token: str, username: str, password: str) -> Membership:
    """Create the invited person's account (with the invited e-mail address) and accept the invitation with it,
    in one transaction: a refused acceptance (the link used meanwhile, a reader joining after reading started)
    leaves no account behind. Whoever has an account with that address logs in and accepts instead."""
    invitation = _open_invitation(token)
    username = username.strip()
    if not username:
        raise ServiceError("A username is required.", field="username")
    if User.objects.filter(email__iexact=invitation.email).exists():
        raise DuplicateCode(f"An account with the address {invitation.email} exists: log in with it and open the "
                            "link again to accept.", field="username")
    if User.objects.filter(username__iexact=username).exists():
        raise DuplicateCode("This username is taken.", field="username")
    try:
        validate_password(password, User(username=username, email=invitation.email))
    except DjangoValidationError as exc:
        raise ServiceError(" ".join(exc.messages), field="password") from exc
    try:
        with transaction.atomic():
            user = User.objects.create_user(username=username, email=invitation.email, password=password)
    except IntegrityError as exc:  # the same username, taken by a concurrent request
        raise DuplicateCode("This username is taken.", field="username") from exc
    audit.record(actor=user, action="account.created_by_invitation", obj=invitation, trial=invitation.trial,
                 payload={"user": user.pk, "username": username, "role": invitation.role})
    return accept_invitation(token=token, user=user)


# ----------------------------------------------------------------------------- randomization


def _allocate(*, trial: Trial, by, stratum: str, unit_type: str, membership=None, case=None) -> Allocation:
    trial = _locked(trial)  # the lock makes "next position" safe under concurrent requests
    if not trial.allows(lifecycle.RANDOMIZE):
        raise WrongStatus(f"Allocations are made only while the trial is enrolling or open (it is {trial.status}).")
    position = Allocation.objects.filter(trial=trial, stratum=stratum).count()
    drawn = randomization.allocate(seed=bytes(trial.randomization_seed), stratum=stratum, index=position,
                                   scheme=scheme_for(trial))
    allocation = Allocation.objects.create(
        trial=trial, stratum=stratum, position=position, unit_type=unit_type, membership=membership, case=case,
        arm=drawn.arm, block=drawn.block, block_size=drawn.block_size, allocated_by=by,
    )
    # The arm is not in the payload (the audit page is shown while allocations are concealed): the event's state
    # hash binds it.
    audit.record(actor=by, action="allocation.made", obj=allocation, trial=trial, payload={
        "unit_type": unit_type, "unit": membership.pseudonym if membership else case.code,
        "stratum": stratum, "position": position,
    })
    return allocation


@transaction.atomic
def allocate_reader(*, trial: Trial, by, membership: Membership) -> Allocation:
    """Randomize one reader to an arm (paired-parallel), or to the arm they read first (crossover)."""
    _require_investigator(trial, by)
    return _allocate_reader(trial=trial, by=by, membership=membership)


def _allocate_reader(*, trial: Trial, by, membership: Membership) -> Allocation:
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if membership.trial_id != trial.pk or membership.role != Role.READER:
        raise ServiceError("Only readers of this trial are randomized.")
    if trial.design == Design.CASE_RANDOMIZED:
        raise ServiceError("In a case-randomized trial cases are randomized, not readers.")
    if Allocation.objects.filter(membership=membership).exists():
        raise DuplicateCode(f"Reader {membership.pseudonym} is already randomized.")
    stratum = membership.site.code if membership.site else "all"
    return _allocate(trial=trial, by=by, stratum=stratum, unit_type=Allocation.Unit.READER, membership=membership)


# ----------------------------------------------------------------------------- cases


def fingerprint(trial: Trial, sop_instance_uid: str) -> str:
    return hmac.new(bytes(trial.uid_secret), sop_instance_uid.encode(), hashlib.sha256).hexdigest()


# Statuses in which an arriving image is screened (and logged): enrolment open, paused for a while, or closed (the
# arrival is logged as not enrolled, with the trial's state as its reason).
SCREENING_STATUSES = (Status.ENROLLING, Status.OPEN, Status.PAUSED, Status.CLOSED)


def _screen_out(*, trial: Trial, site: Site, source: str, code: str, reason: str, by) -> ScreeningEntry:
    """The screening-log row of an image not enrolled, in its own transaction: the refusal that follows keeps it."""
    with transaction.atomic():
        entry = ScreeningEntry.objects.create(
            trial=trial, site=site, received_at=clock.now(), source=source,
            outcome=ScreeningEntry.Outcome.NOT_ENROLLED, code=code,
            reason=reason[:ScreeningEntry._meta.get_field("reason").max_length])
        audit.record(actor=by, action="screening.not_enrolled", obj=entry, trial=trial,
                     payload={"site": site.code, "source": source, "code": code})
    return entry


def _state_refusal(trial: Trial, site: Site) -> tuple[str, str] | None:
    """Why the trial or site enrols nothing now, as (code, reason); None when it enrols."""
    words = screening.STATE_CODES
    if trial.status == Status.PAUSED:
        return "trial_paused", f"{words['trial_paused']}: {trial.pause_reason}"
    if trial.status == Status.CLOSED:
        return "trial_closed", words["trial_closed"]
    if site.enrolment != SiteEnrolment.OPEN:
        code = "site_paused" if site.enrolment == SiteEnrolment.PAUSED else "site_closed"
        return code, words[code] + (f": {site.enrolment_reason}" if site.enrolment_reason else "")
    if trial.target_cases is not None and trial.cases.count() >= trial.target_cases:
        return "target_reached", f"{words['target_reached']} ({trial.target_cases} cases)"
    if site.target_cases is not None and site.cases.count() >= site.target_cases:
        return "target_reached", f"{words['target_reached']} at site {site.code} ({site.target_cases} cases)"
    return None


def enrol_case(*, trial: Trial, site: Site, by, data: bytes, filename: str = "", clinical_history: str = "",
               urgent: bool = False) -> Case:
    """An investigator's upload: screened, validated, de-identified, rendered and stored as a new case. A refusal
    stores nothing but its screening-log row."""
    _require_investigator(trial, by)
    return receive_image(trial=trial, site=site, by=by, data=data, source="upload", filename=filename,
                         clinical_history=clinical_history, urgent=urgent)


def receive_image(*, trial: Trial, site: Site, data: bytes, source: str, by=None, filename: str = "",
                  clinical_history: str = "", urgent: bool = False) -> Case | None:
    """One image arriving for `trial` at `site` (an upload, the PACS, the arrival simulator; `by`: None for a hospital
    system). A case is a study: the first frontal image of a study (by its original Study Instance UID) that passes
    the rules enrols the case; every other image of that study joins it (a lateral, a repeat, one arriving after the
    case was routed: added and logged); an image with no frontal image of its study yet waits (staged, None returned)
    until one arrives, and is screened out if its study settles (Trial.settle_seconds) without one.

    Eligibility is checked on the original header, before de-identification: the image's own facts (modality, body
    part, age) on every image; the view and the repeat rule on the study. Every image gets a screening-log row:
    enrolled, added, or not with the rule or refusal that decided (a staged image: when its study is decided).
    Raises (after logging) when the image is not taken: NotEnrolled, CaseRejected, FileTooLarge, DuplicateImage.
    Call it outside a transaction, so that a refusal's log row stays."""
    if site.trial_id != trial.pk:
        raise ServiceError("That site belongs to another trial.", field="site")
    trial = Trial.objects.get(pk=trial.pk)  # fresh: the caller's copy may be old
    site = Site.objects.get(pk=site.pk)
    if trial.status not in SCREENING_STATUSES:
        raise WrongStatus(f"Cases can be enrolled only while the trial is enrolling or open (it is "
                          f"{trial.get_status_display().lower()}).")

    def refuse(code: str, reason: str, error=NotEnrolled):
        _screen_out(trial=trial, site=site, source=source, code=code, reason=reason, by=by)
        raise error(reason, code={CaseRejected: code.removeprefix("dicom:"), NotEnrolled: code}.get(error))

    if len(data) > settings.CXR_MAX_DICOM_BYTES:
        refuse("dicom:too_large", f"The file is {len(data) / 1e6:.1f} MB; the limit is "
                                  f"{settings.CXR_MAX_DICOM_BYTES / 1e6:.0f} MB.", FileTooLarge)
    # All the work that can refuse happens before anything is written.
    try:
        ds = dicom.read_radiograph(data, max_bytes=settings.CXR_MAX_DICOM_BYTES, max_pixels=settings.CXR_MAX_PIXELS)
    except dicom.DicomRejection as exc:
        refuse(f"dicom:{exc.code}", exc.reason, CaseRejected)
    state = _state_refusal(trial, site)
    if state is not None:
        refuse(*state)
    # A re-sent image is a duplicate, whatever the rules would say of it (not a "repeat" of its patient).
    print_ = fingerprint(trial, str(ds.SOPInstanceUID))
    if _already_received(trial, print_):
        refuse("duplicate", "This image (same SOP Instance UID) is already enrolled in this trial.", DuplicateImage)
    arrival = dicom.arrival_from_header(ds, secret=bytes(trial.uid_secret))
    study_uid = str(ds.get("StudyInstanceUID", "") or "").strip()
    study = fingerprint(trial, f"study:{study_uid}") if study_uid else ""
    case = Case.objects.filter(trial=trial, study_key=study).order_by("pk").first() if study else None
    rules = dicom.EligibilityRules.from_dict(trial.eligibility) if trial.eligibility is not None else None
    frontal = rules is None or not rules.view_positions or arrival.view_position in rules.view_positions
    if rules is not None:
        # the image's own facts on every image; the repeat rule only for the image that would open a new case (the
        # other images of a study are not repeats of it), and the view rule on the study (frontal or not)
        earlier = (CaseIdentity.objects.filter(case__trial=trial, patient_key=arrival.patient_key,
                                               study_date__isnull=False).values_list("study_date", flat=True)
                   if arrival.patient_key and case is None else [])
        decision = dicom.decide(arrival, replace(rules, view_positions=(),
                                                 repeat_window_days=None if case else rules.repeat_window_days),
                                enrolled_study_dates=earlier)
        if not decision:
            refuse(decision.code, decision.reason)
        if case is None and not frontal and trial.settle_seconds == 0:
            decision = dicom.decide(arrival, rules)  # nothing waits: judged alone, as the view rule says
            refuse(decision.code, decision.reason)
    summary = dicom.image_summary(ds)
    try:
        rendered = dicom.render_display(ds, max_pixels=settings.CXR_MAX_PIXELS)
    except dicom.DicomRejection as exc:
        refuse(f"dicom:{exc.code}", exc.reason, CaseRejected)
    image = _Arrived(ds=ds, fingerprint=print_, study_key=study, summary=summary, rendered=rendered, source=source,
                     filename=filename, arrival=arrival)
    opening = {"trial": trial, "site": site, "by": by, "image": image, "clinical_history": clinical_history,
               "urgent": urgent}
    try:
        # under the trial's lock each path checks again whether the study has its case (two images of one study
        # arriving at once): the loser of the race takes the other path; cases are never deleted, so once at most
        if case is None and frontal:
            try:
                return _store_case(**opening)
            except _JoinsCase:
                pass
        try:
            return _store_image(trial=trial, site=site, by=by, image=image, frontal=frontal)
        except _OpensCase:
            return _store_case(**opening)
    except DuplicateImage as exc:  # the same image, enrolled by a concurrent arrival
        refuse("duplicate", exc.message, DuplicateImage)
    except NotEnrolled as exc:  # paused, closed or full meanwhile
        refuse(exc.code, exc.message)


def _already_received(trial: Trial, print_: str) -> bool:
    return (Case.objects.filter(trial=trial, source_fingerprint=print_).exists()
            or CaseImage.objects.filter(trial=trial, source_fingerprint=print_).exists())


@dataclass(frozen=True)
class _Arrived:
    """One image that passed the checks, ready to be stored: its original header and what was drawn from it."""

    ds: object
    fingerprint: str
    study_key: str
    summary: dict
    rendered: object
    source: str
    filename: str
    arrival: object


# The provisional Patient ID and Name of a staged image (no case yet): replaced by the case's code when it joins one.
STAGED_CODE = "STAGED"


def _rendered_fields(summary: dict, rendered) -> dict:
    """The RenderedImage fields of a stored image (a case's primary, or another image of its study)."""
    return {"modality": summary["modality"], "view_position": summary.get("view_position") or "",
            "rows": summary["rows"], "columns": summary["columns"], "bits_stored": summary["bits_stored"],
            "photometric": summary["photometric"], "transfer_syntax": summary["transfer_syntax"],
            "display_width": rendered.width, "display_height": rendered.height,
            "window_center": rendered.window_center, "window_width": rendered.window_width,
            "window_source": rendered.source}


def _save_files(row, clean_bytes: bytes, rendered, saved: list) -> None:
    """Write a stored image's files (de-identified DICOM, display PNG, thumbnail) before its row, noting each in
    `saved` so that a failed enrolment removes them."""
    files = ((row.dicom, "image.dcm", clean_bytes), (row.display_image, "display.png", rendered.png),
             (row.thumbnail, "thumbnail.png", rendered.thumbnail_png))
    for field, name, content in files:
        field.save(name, ContentFile(content), save=False)
        saved.append(field)


def _store_case(*, trial, site, by, image: _Arrived, clinical_history, urgent) -> Case:
    ds, summary, rendered, source, arrival = image.ds, image.summary, image.rendered, image.source, image.arrival
    saved: list = []
    try:
        with transaction.atomic():
            locked = _locked(trial)
            if locked.status not in SCREENING_STATUSES:
                raise WrongStatus(f"Cases can be enrolled only while the trial is enrolling or open (it is "
                                  f"{locked.status}).")
            site = Site.objects.select_for_update(no_key=True).get(pk=site.pk)
            state = _state_refusal(locked, site)  # again, under the lock: the trial may have paused or filled
            if state is not None:
                raise NotEnrolled(state[1], code=state[0])
            if _already_received(locked, image.fingerprint):  # the same image, stored by a concurrent arrival
                raise DuplicateImage("This image (same SOP Instance UID) is already enrolled in this trial.")
            if image.study_key and Case.objects.filter(trial=locked, study_key=image.study_key).exists():
                raise _JoinsCase  # another image of the study opened its case meanwhile: this one joins it
            locked.case_counter += 1
            locked.save(update_fields=["case_counter"])
            code = f"C{locked.case_counter:04d}"
            clean, record = dicom.deidentify(ds, case_code=code, uid_secret=bytes(trial.uid_secret),
                                             uid_root=settings.CXR_UID_ROOT)
            clean_bytes = dicom.dicom_bytes(clean)
            now = clock.now()
            case = Case(
                trial=locked, site=site, code=code, clinical_history=clinical_history.strip(),
                source_fingerprint=image.fingerprint, enrolled_by=by, arrived_at=now,
                arrival_index=locked.case_counter, urgent=bool(urgent and locked.flag_urgency),
                study_key=image.study_key,
                **_rendered_fields(summary, rendered),
            )
            _save_files(case, clean_bytes, rendered, saved)
            case.save()
            CaseIdentity.objects.create(
                case=case, accession_number=record.accession_number or "", patient_id=record.patient_id or "",
                study_instance_uid=record.study_instance_uid or "", sop_instance_uid=record.sop_instance_uid,
                original_filename=image.filename[:255], patient_key=arrival.patient_key,
                study_date=arrival.study_date, **_filing_identity(ds),
            )
            entry = ScreeningEntry.objects.create(trial=locked, site=site, received_at=now, source=source,
                                                  outcome=ScreeningEntry.Outcome.ENROLLED, case=case)
            audit.record(actor=by, action="case.enrolled", obj=case, trial=locked, payload={
                "code": code, "site": site.code, "modality": case.modality, "has_history": bool(case.clinical_history),
                "dicom_sha256": hashlib.sha256(clean_bytes).hexdigest(), "source": source, "screening": entry.pk,
                "urgent": case.urgent,
            })
            if locked.design == Design.CASE_RANDOMIZED:
                _allocate(trial=locked, by=by, stratum=site.code, unit_type=Allocation.Unit.CASE, case=case)
            _close_at_target(trial=locked, site=site)
            staged = _join_staged(case=case, by=by)
            case_id = case.pk
            # robust: a broker that is down is logged and the case stays; the sweep makes the image later
            transaction.on_commit(lambda: prepare_viewer_image_task.delay(case_id), robust=True)
            for image_id in staged:
                transaction.on_commit(lambda i=image_id: prepare_image_values_task.delay(i), robust=True)
            events.announce(events.case_enrolled, case_id=case_id)
    except IntegrityError as exc:
        _delete_files(saved)
        if not _already_received(trial, image.fingerprint):
            raise  # not the same image enrolled meanwhile: a real fault, not a duplicate
        raise DuplicateImage("This image (same SOP Instance UID) is already enrolled in this trial.") from exc
    except BaseException:
        _delete_files(saved)  # nothing is kept from a refused or failed enrolment
        raise
    return case


def _join_staged(*, case: Case, by) -> list[int]:
    """The staged images of the case's study join it (their stored copy now names the case), each logged."""
    joined = []
    for staged in CaseImage.objects.select_for_update().filter(trial=case.trial, study_key=case.study_key,
                                                               case__isnull=True).order_by("received_at", "pk"):
        _rename_patient(staged, case.code)
        staged.case, staged.added_at = case, clock.now()
        staged.save(update_fields=["case", "added_at", "dicom"])
        _log_added(image=staged, case=case, by=by)
        joined.append(staged.pk)
    return joined


def _rename_patient(image: CaseImage, code: str) -> None:
    """Rewrite a staged image's provisional Patient ID and Name as its case's code (one file, rewritten in place)."""
    import pydicom

    with image.dicom.open("rb") as fh:
        ds = pydicom.dcmread(fh)
    ds.PatientID = ds.PatientName = code
    name = image.dicom.name
    image.dicom.storage.delete(name)
    image.dicom.storage.save(name, ContentFile(dicom.dicom_bytes(ds)))


def _log_added(*, image: CaseImage, case: Case, by) -> None:
    entry = ScreeningEntry.objects.create(trial=case.trial, site=image.site, received_at=image.received_at,
                                          source=image.source, outcome=ScreeningEntry.Outcome.ADDED, case=case)
    audit.record(actor=by, action="case.image_added", obj=case, trial=case.trial, payload={
        "code": case.code, "site": image.site.code, "source": image.source, "screening": entry.pk,
        "image": image.pk, "view_position": image.view_position,
        # how long after its case opened (and, in a prospective trial, was routed) the image came
        "seconds_after_case": round((image.received_at - case.arrived_at).total_seconds(), 1)
        if case.arrived_at else None})
    events.announce(events.case_image_added, case_id=case.pk, image_id=image.pk)


def _store_image(*, trial, site, by, image: _Arrived, frontal: bool) -> Case | None:
    """Store an image that does not open a case: it joins its study's case, or is staged until its study has a
    frontal image (or settles without one)."""
    saved: list = []
    try:
        with transaction.atomic():
            locked = _locked(trial)  # serializes with the image that would open the study's case
            if _already_received(locked, image.fingerprint):
                raise DuplicateImage("This image (same SOP Instance UID) is already enrolled in this trial.")
            case = (Case.objects.select_for_update(no_key=True, of=("self",)).filter(
                trial=locked, study_key=image.study_key).order_by("pk").first() if image.study_key else None)
            if case is None and frontal:
                raise _OpensCase
            code = case.code if case is not None else STAGED_CODE
            clean, record = dicom.deidentify(image.ds, case_code=code, uid_secret=bytes(trial.uid_secret),
                                             uid_root=settings.CXR_UID_ROOT)
            summary, rendered, now = image.summary, image.rendered, clock.now()
            row = CaseImage(
                trial=locked, site=site, case=case, study_key=image.study_key, source_fingerprint=image.fingerprint,
                source=image.source, received_at=now, added_at=now if case is not None else None,
                **_rendered_fields(summary, rendered), original_sop_instance_uid=record.sop_instance_uid or "",
                original_series_instance_uid=str(image.ds.get("SeriesInstanceUID", "") or "")[:64],
                original_sop_class_uid=str(image.ds.get("SOPClassUID", "") or "")[:64])
            _save_files(row, dicom.dicom_bytes(clean), rendered, saved)
            row.save()
            if case is not None:
                _log_added(image=row, case=case, by=by)
                row_id = row.pk
                transaction.on_commit(lambda: prepare_image_values_task.delay(row_id), robust=True)
            else:
                audit.record(actor=by, action="image.staged", obj=locked, trial=locked, payload={
                    "site": site.code, "source": image.source, "image": row.pk})
                study, delay = image.study_key, locked.settle_seconds
                transaction.on_commit(lambda: settle_study_task.apply_async((locked.pk, study), countdown=delay + 1),
                                      robust=True)
    except IntegrityError as exc:
        _delete_files(saved)
        if not _already_received(trial, image.fingerprint):
            raise
        raise DuplicateImage("This image (same SOP Instance UID) is already enrolled in this trial.") from exc
    except BaseException:
        _delete_files(saved)
        raise
    return case


class _OpensCase(Exception):
    """A frontal image meant to join its study's case finds none under the lock: it opens the case."""


class _JoinsCase(Exception):
    """An image meant to open its study's case finds, under the lock, that another image of the study opened it."""


def settle_studies(*, trial_id: int | None = None, study_key: str | None = None) -> int:
    """Staged images whose study settled (Trial.settle_seconds after its last image) without a frontal image are
    screened out: the view rule decides (the study has no accepted view), each with its screening-log row; their
    files are removed. Returns how many were screened out. For the task at each staging and the beat sweep."""
    screened = 0
    now = clock.now()
    staged = CaseImage.objects.filter(case__isnull=True).select_related("trial", "site")
    if trial_id is not None:
        staged = staged.filter(trial_id=trial_id)
    if study_key is not None:
        staged = staged.filter(study_key=study_key)
    for trial_pk, key in set(staged.values_list("trial_id", "study_key")):
        with transaction.atomic():
            trial = _locked(Trial.objects.get(pk=trial_pk))
            rows = list(CaseImage.objects.select_for_update().filter(trial=trial, study_key=key, case__isnull=True))
            if not rows or max(r.received_at for r in rows) + timedelta(seconds=trial.settle_seconds) > now:
                continue  # gone, or still settling
            rules = dicom.EligibilityRules.from_dict(trial.eligibility or {})
            accepted = ", ".join(rules.view_positions) or "any"
            for row in rows:
                reason = (f"{dicom.EXCLUSION_CODES['view_position']}: no frontal image in the study within "
                          f"{trial.settle_seconds} s ({row.view_position or 'none'}; accepted: {accepted}).")
                entry = ScreeningEntry.objects.create(
                    trial=trial, site=row.site, received_at=row.received_at, source=row.source,
                    outcome=ScreeningEntry.Outcome.NOT_ENROLLED, code="view_position",
                    reason=reason[:ScreeningEntry._meta.get_field("reason").max_length])
                audit.record(actor=None, action="screening.not_enrolled", obj=entry, trial=trial,
                             payload={"site": row.site.code, "source": row.source, "code": "view_position"})
                files = [row.dicom, row.display_image, row.thumbnail]
                row.delete()
                transaction.on_commit(lambda f=files: _delete_files(f))
                screened += 1
    return screened


def prepare_image_values(*, image: CaseImage) -> CaseImage:
    """The viewer's values image and window presets of one more image of a case (as prepare_viewer_image)."""
    return _write_values(image)


def _filing_identity(ds) -> dict[str, str]:
    """What the identity key keeps from the original header so that a report sent back files next to the image: the
    series and SOP class of the image and the patient's module (trial.outbox). Investigators only; never exported."""
    def text(keyword: str, limit: int) -> str:
        value = ds.get(keyword)
        return "" if value is None else str(value).strip()[:limit]

    return {"series_instance_uid": text("SeriesInstanceUID", 64), "sop_class_uid": text("SOPClassUID", 64),
            "patient_name": text("PatientName", 324), "patient_birth_date": text("PatientBirthDate", 8),
            "patient_sex": text("PatientSex", 16)}


def _close_at_target(*, trial: Trial, site: Site) -> None:
    """With `close_at_target`, a site that reached its target closes, and the trial closes to enrolment at its own
    (the system acts, audited)."""
    if not trial.close_at_target:
        return
    if site.target_cases is not None and site.enrolment != SiteEnrolment.CLOSED \
            and site.cases.count() >= site.target_cases:
        _set_site_enrolment(site=site, by=None, state=SiteEnrolment.CLOSED, reason="Target reached.")
    if trial.target_cases is not None and trial.status == Status.OPEN and trial.cases.count() >= trial.target_cases:
        _transition(trial=trial, by=None, to=Status.CLOSED, payload={"reason": "Target reached."})


def prepare_viewer_image(*, case: Case) -> Case:
    """Write the viewer's 16-bit values image and window presets (a second, slower rendering that the
    upload need not wait for: the reading screen paints the display image first). Idempotent."""
    return _write_values(case)


def _write_values(row):
    """The values image and window presets of a stored image (a Case's primary or a CaseImage), made once: when two
    workers race, the first one's stays and the other's file is removed."""
    if row.values_image:
        return row
    with row.dicom.open("rb") as fh:
        ds = dicom.read_radiograph(fh.read(), max_pixels=settings.CXR_MAX_PIXELS)
    values = dicom.render_values(ds, max_pixels=settings.CXR_MAX_PIXELS)
    name = row.values_image.field.generate_filename(row, "values.png")
    stored = row.values_image.storage.save(name, ContentFile(values.png))
    updated = type(row).objects.filter(pk=row.pk, values_image="").update(values_image=stored,
                                                                          display_windows=values.windows)
    if not updated:  # another worker finished first: keep theirs, drop ours
        row.values_image.storage.delete(stored)
    row.refresh_from_db()
    return row


def remove_orphan_files(*, older_than: timedelta = timedelta(hours=1)) -> int:
    """Files under trials/ that no case or image names, older than `older_than`: what an enrolment killed between
    writing its files and committing its rows left behind (de-identified, but not the trial's). The files are written
    before the rows on purpose — a row never names a missing file — so this sweep is their other half. Returns how
    many were removed. For celery beat (daily)."""
    from django.core.files.storage import default_storage

    referenced: set[str] = set()
    for model in (Case, CaseImage):
        for row in model.objects.values_list("dicom", "display_image", "thumbnail", "values_image"):
            referenced.update(name for name in row if name)
    cutoff = clock.now() - older_than
    removed = 0

    def walk(folder: str) -> None:
        nonlocal removed
        try:
            folders, files = default_storage.listdir(folder)
        except FileNotFoundError:
            return
        for name in files:
            path = f"{folder}/{name}"
            if path not in referenced and default_storage.get_modified_time(path) < cutoff:
                default_storage.delete(path)
                removed += 1
        for sub in folders:
            walk(f"{folder}/{sub}")

    walk("trials")
    if removed:
        logger.warning("Removed %d files that no case names (an enrolment interrupted before its commit)", removed)
    return removed


def _delete_files(files) -> None:
    for field_file in files:
        try:
            field_file.storage.delete(field_file.name)
        except OSError:  # pragma: no cover - best effort cleanup; the transaction already rolled back
            logger.exception("Could not remove %s after a failed enrolment", field_file.name)


# ----------------------------------------------------------------------------- conduct of a prospective trial


def _set_site_enrolment(*, site: Site, by, state: str, reason: str) -> Site:
    before = site.enrolment
    site.enrolment, site.enrolment_reason = state, reason
    site.save(update_fields=["enrolment", "enrolment_reason"])
    audit.record(actor=by, action="site.enrolment_changed", obj=site, trial=site.trial,
                 payload={"site": site.code, "from": before, "to": state, "reason": reason})
    return site


@transaction.atomic
def set_site_enrolment(*, site: Site, by, state: str, reason: str = "") -> Site:
    """Open, pause or close one site's enrolment (the rest of the trial goes on). Pausing or closing needs a reason;
    work already routed at the site goes on."""
    _require_investigator(site.trial, by)
    if state not in SiteEnrolment.values:
        raise ServiceError("Unknown enrolment state of a site.", field="state")
    reason = " ".join((reason or "").split())
    if state != SiteEnrolment.OPEN and not reason:
        raise ServiceError("Say why the site's enrolment stops.", field="reason")
    if len(reason) > Site._meta.get_field("enrolment_reason").max_length:
        raise ServiceError("The reason is too long.", field="reason")
    trial = _locked(site.trial)
    if trial.status in (Status.LOCKED, Status.UNBLINDED):
        raise WrongStatus("The trial is locked.")
    site = Site.objects.select_for_update(no_key=True).get(pk=site.pk)
    if site.enrolment == state and site.enrolment_reason == reason:
        return site
    return _set_site_enrolment(site=site, by=by, state=state, reason=reason)


@transaction.atomic
def set_site_target(*, site: Site, by, target_cases: int | None) -> Site:
    _require_investigator(site.trial, by)
    if target_cases is not None and (isinstance(target_cases, bool) or int(target_cases) < 1):
        raise ServiceError("A target needs at least one case.", field="target_cases")
    if _locked(site.trial).status in (Status.LOCKED, Status.UNBLINDED):
        raise WrongStatus("The trial is locked.")
    site = Site.objects.select_for_update(no_key=True).get(pk=site.pk)
    before = site.target_cases
    site.target_cases = None if target_cases is None else int(target_cases)
    site.save(update_fields=["target_cases"])
    audit.record(actor=by, action="site.target_changed", obj=site, trial=site.trial,
                 payload={"site": site.code, "from": before, "to": site.target_cases})
    return site


# DICOM AE titles: at most 16 characters of the Default Character Repertoire, no backslash or control character;
# leading and trailing spaces are not significant (PS3.5, AE value representation).
AE_TITLE_LIMIT = 16


def _clean_ae_title(value) -> str:
    title = str(value).strip()
    if not title or len(title) > AE_TITLE_LIMIT or "\\" in title or not title.isascii() \
            or any(ord(c) < 32 for c in title):
        raise ServiceError(f"“{value}” is not a DICOM AE title (1 to 16 ASCII characters, no backslash).",
                           field="dicom_ae_titles")
    return title


@transaction.atomic
def set_site_dicom_senders(*, site: Site, by, ae_titles, hosts=()) -> Site:
    """The calling AE titles (and optionally host addresses) from which this site's PACS sends images to the DICOM
    listener. An AE title names one site among the trials that are receiving images, so that every image reaches
    exactly one trial and site."""
    import ipaddress

    _require_investigator(site.trial, by)
    titles = sorted({_clean_ae_title(t) for t in ae_titles})
    addresses = []
    for host in hosts:
        try:
            addresses.append(str(ipaddress.ip_address(str(host).strip())))
        except ValueError as exc:
            raise ServiceError(f"“{host}” is not an IP address.", field="dicom_hosts") from exc
    trial = _locked(site.trial)
    if trial.status in (Status.LOCKED, Status.UNBLINDED):
        raise WrongStatus("The trial is locked.")
    taken = {t: other for other in Site.objects.exclude(pk=site.pk).exclude(
        trial__status__in=(Status.LOCKED, Status.UNBLINDED)).select_related("trial")
        for t in other.dicom_ae_titles}
    clash = sorted(t for t in titles if t in taken)
    if clash:
        other = taken[clash[0]]
        raise Conflict(f"The AE title {clash[0]} already sends to site {other.code} of trial {other.trial.code}: a "
                       "sender names one site, so that each image reaches one trial.", field="dicom_ae_titles")
    site = Site.objects.select_for_update(no_key=True).get(pk=site.pk)
    before = {"ae_titles": site.dicom_ae_titles, "hosts": site.dicom_hosts}
    site.dicom_ae_titles, site.dicom_hosts = titles, sorted(set(addresses))
    site.save(update_fields=["dicom_ae_titles", "dicom_hosts"])
    audit.record(actor=by, action="site.dicom_senders_changed", obj=site, trial=trial, payload={
        "site": site.code, "before": before, "after": {"ae_titles": titles, "hosts": site.dicom_hosts}})
    return site


SENDER_TOKEN_PREFIX = "cxrs_"


@transaction.atomic
def issue_sender_token(*, site: Site, by, name: str = "") -> tuple[SenderToken, str]:
    """A key with which a hospital system (the site's PACS or router) sends images to this site over DICOMweb
    (STOW-RS): the token and its key, shown this once and stored only as its hash."""
    _require_investigator(site.trial, by)
    name = " ".join((name or "").split())[:SenderToken._meta.get_field("name").max_length]
    key = SENDER_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = SenderToken.objects.create(site=site, name=name, prefix=key[:13], key_hash=ApiToken.hash_key(key),
                                       created_by=by)
    audit.record(actor=by, action="site.sender_token_created", obj=token, trial=site.trial,
                 payload={"site": site.code, "name": name, "prefix": token.prefix})
    return token, key


@transaction.atomic
def revoke_sender_token(*, token: SenderToken, by) -> SenderToken:
    token = SenderToken.objects.select_for_update().select_related("site__trial").get(pk=token.pk)
    _require_investigator(token.site.trial, by)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record(actor=by, action="site.sender_token_revoked", obj=token, trial=token.site.trial,
                     payload={"site": token.site.code, "prefix": token.prefix})
    return token


def note_sender_token_use(*, token: SenderToken) -> None:
    """When a sender token was last used, to the minute (not a write per request)."""
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        SenderToken.objects.filter(pk=token.pk).update(last_used_at=now)


@transaction.atomic
def set_site_destinations(*, site: Site, by, pacs_ae_title: str = "", pacs_host: str = "", pacs_port=None,
                          pacs_tls: bool = False, fhir_base_url: str = "", fhir_token_env: str = "") -> Site:
    """Where this site's reports of record go: its PACS (AE title, host, port; TLS or not) and its FHIR server
    (base URL; the name of the environment variable that holds its token). Empty: not sent that way."""
    from django.core.validators import URLValidator

    _require_investigator(site.trial, by)
    pacs_ae_title = _clean_ae_title(pacs_ae_title) if str(pacs_ae_title).strip() else ""
    pacs_host = str(pacs_host).strip()
    if pacs_ae_title or pacs_host or pacs_port not in (None, ""):
        if not (pacs_ae_title and pacs_host and pacs_port not in (None, "")):
            raise ServiceError("A PACS needs its AE title, host and port.", field="pacs_host")
        try:
            pacs_port = int(pacs_port)
        except (TypeError, ValueError):
            pacs_port = 0
        if not 1 <= pacs_port <= 65535:
            raise ServiceError("The PACS port is a number from 1 to 65535.", field="pacs_port")
        if len(pacs_host) > 255 or any(c.isspace() for c in pacs_host):
            raise ServiceError("The PACS host is a host name or an IP address.", field="pacs_host")
    else:
        pacs_port = None
    fhir_base_url = str(fhir_base_url).strip().rstrip("/")
    if fhir_base_url:
        try:
            URLValidator(schemes=["https", "http"])(fhir_base_url)
        except DjangoValidationError as exc:
            raise ServiceError("The FHIR base URL is not a URL.", field="fhir_base_url") from exc
        if fhir_base_url.startswith("http://") and not settings.CXR_ALLOW_PLAIN_HTTP_DESTINATIONS:
            raise ServiceError("Reports carry PHI: the FHIR server must be reached over HTTPS.", field="fhir_base_url")
    fhir_token_env = str(fhir_token_env).strip()
    if fhir_token_env and not fhir_token_env.replace("_", "").isalnum():
        raise ServiceError("The token is named by an environment variable (letters, digits, _).",
                           field="fhir_token_env")
    site = Site.objects.select_for_update(no_key=True).select_related("trial").get(pk=site.pk)
    fields = ("pacs_ae_title", "pacs_host", "pacs_port", "pacs_tls", "fhir_base_url", "fhir_token_env")
    before = {f: getattr(site, f) for f in fields}
    site.pacs_ae_title, site.pacs_host, site.pacs_port, site.pacs_tls = pacs_ae_title, pacs_host, pacs_port, \
        bool(pacs_tls)
    site.fhir_base_url, site.fhir_token_env = fhir_base_url, fhir_token_env
    site.save(update_fields=list(fields))
    audit.record(actor=by, action="site.destinations_changed", obj=site, trial=site.trial, payload={
        "site": site.code, "before": before, "after": {f: getattr(site, f) for f in fields}})
    return site


def _reader(membership: Membership) -> Membership:
    membership = Membership.objects.select_for_update(no_key=True).select_related("trial", "user").get(
        pk=membership.pk)
    if membership.role != Role.READER:
        raise ServiceError("Only readers go on and off duty or are withdrawn.")
    return membership


@transaction.atomic
def set_on_duty(*, membership: Membership, by, on_duty: bool) -> Membership:
    """A reader marks themselves on or off duty (or an investigator does, from the site's roster). Cases are routed
    only to readers on duty; a reader who comes on duty receives the cases waiting for their arm at their site."""
    membership = _reader(membership)
    if by.pk != membership.user_id:
        _require_investigator(membership.trial, by)
    if membership.withdrawn_at is not None:
        raise WrongStatus("A withdrawn reader does not go on duty again.")
    if membership.on_duty == bool(on_duty):
        return membership
    membership.on_duty = bool(on_duty)
    membership.save(update_fields=["on_duty"])
    audit.record(actor=by, action="reader.on_duty" if on_duty else "reader.off_duty", obj=membership,
                 trial=membership.trial, payload={"reader": membership.pseudonym})
    if on_duty:
        events.announce(events.readers_changed, trial_id=membership.trial_id)
    return membership


@transaction.atomic
def set_roster(*, membership: Membership, by, roster_text: str, time_zone: str | None = None) -> Membership:
    """A reader's weekly roster (trial.roster's text; empty: none, duty by hand), and optionally their site's time
    zone. Applied at once, then every minute (apply_rosters)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    membership = _reader(membership)
    _require_investigator(membership.trial, by)
    try:
        parsed = roster.parse(roster_text or "") or None
    except roster.RosterError as exc:
        raise ServiceError(str(exc), field="roster") from exc
    if time_zone:
        try:
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ServiceError(f"“{time_zone}” is not a time zone (e.g. Europe/Berlin).", field="time_zone") from exc
        if membership.site is None:
            raise ServiceError("A reader without a site has no time zone.", field="time_zone")
        site = Site.objects.select_for_update(no_key=True).get(pk=membership.site_id)
        if site.time_zone != time_zone:
            site.time_zone = time_zone
            site.save(update_fields=["time_zone"])
            audit.record(actor=by, action="site.time_zone_changed", obj=site, trial=membership.trial,
                         payload={"site": site.code, "time_zone": time_zone})
        membership.site = site  # the roster is read in the new zone
    membership.roster = parsed
    membership.save(update_fields=["roster"])
    audit.record(actor=by, action="reader.roster_set", obj=membership, trial=membership.trial,
                 payload={"reader": membership.pseudonym, "roster": roster.text(parsed)})
    _apply_roster(membership, now=clock.now())
    return membership


# How far back apply_rosters looks for a shift's start or end (its beat runs every minute; a little overlap).
ROSTER_LOOKBACK = timedelta(seconds=70)


def _apply_roster(membership: Membership, *, now, since=None) -> bool:
    """Put a reader with a roster on or off duty as it says now (in their site's time zone), where a shift started or
    ended since `since` (None: whatever it says now, as when the roster is set). Between two shift boundaries a
    reader's own switch stands (a rota says when a shift starts and ends, not that nobody may step out). True if it
    changed."""
    from zoneinfo import ZoneInfo

    if membership.roster is None or membership.withdrawn_at is not None:
        return False
    zone = ZoneInfo(membership.site.time_zone if membership.site else "UTC")
    wanted = roster.on_duty_at(membership.roster, now.astimezone(zone))
    if since is not None and roster.on_duty_at(membership.roster, since.astimezone(zone)) == wanted:
        return False  # no shift started or ended meanwhile
    if membership.on_duty == wanted:
        return False
    membership.on_duty = wanted
    membership.save(update_fields=["on_duty"])
    audit.record(actor=None, action="reader.on_duty" if wanted else "reader.off_duty", obj=membership,
                 trial=membership.trial, payload={"reader": membership.pseudonym, "by": "roster"})
    if wanted:
        events.announce(events.readers_changed, trial_id=membership.trial_id)
    return True


def apply_rosters() -> int:
    """For celery beat: every reader with a roster in a trial that reads goes on or off duty as it says; the number
    of readers whose duty changed."""
    changed = 0
    now = clock.now()
    readers = Membership.objects.filter(role=Role.READER, roster__isnull=False, withdrawn_at__isnull=True,
                                        trial__status__in=lifecycle.statuses_allowing(lifecycle.READ))
    for membership_id in readers.values_list("pk", flat=True):
        with transaction.atomic():
            # of=("self",): the site is an outer join (a reader may have none), which PostgreSQL cannot lock
            membership = (Membership.objects.select_for_update(no_key=True, of=("self",))
                          .select_related("site", "trial").get(pk=membership_id))
            changed += _apply_roster(membership, now=now, since=now - ROSTER_LOOKBACK)
    return changed


def record_deviation(*, trial: Trial, by, kind: str, description: str, reason: str = "", case: Case | None = None,
                     reader: Membership | None = None, read_id: int | None = None,
                     occurred_at=None) -> Deviation:
    """Log a protocol deviation or intercurrent event, inside the caller's transaction (the write it concerns)."""
    if kind not in Deviation.Kind.values:
        raise ServiceError("Unknown kind of deviation.", field="kind")
    limit = Deviation._meta.get_field("description").max_length
    description, reason = " ".join(description.split())[:limit], " ".join((reason or "").split())
    if not description:
        raise ServiceError("Say what happened.", field="description")
    if len(reason) > Deviation._meta.get_field("reason").max_length:
        raise ServiceError("The reason is too long.", field="reason")
    deviation = Deviation.objects.create(
        trial=trial, kind=kind, occurred_at=occurred_at or clock.now(), recorded_by=by if getattr(by, "pk", None)
        else None, case=case, reader=reader, read_id=read_id, description=description, reason=reason,
        intercurrent=kind in Deviation.INTERCURRENT)
    # The reader and the read are bound by the event's state hash, not named in its payload: the audit page is shown
    # while the allocation is concealed, and some deviations exist in one arm only.
    audit.record(actor=by, action="deviation.recorded", obj=deviation, trial=trial, payload={
        "kind": kind, "case": case.code if case else None})
    return deviation


@transaction.atomic
def report_deviation(*, trial: Trial, by, description: str, reason: str = "", case: Case | None = None) -> Deviation:
    """An investigator logs a deviation the platform could not see itself (kind "other")."""
    _require_investigator(trial, by)
    if case is not None and case.trial_id != trial.pk:
        raise ServiceError("That case belongs to another trial.", field="case")
    return record_deviation(trial=trial, by=by, kind=Deviation.Kind.OTHER, description=description, reason=reason,
                            case=case)


@transaction.atomic
def withdraw_reader(*, membership: Membership, by, reason: str) -> Membership:
    """A reader leaves the trial or is withdrawn: no more cases; their open reads go to another reader of the same arm
    and site (reading does it, on the announced event: the text typed so far stays with the old read); their
    finished reads stay. A deviation (intercurrent event) is logged."""
    membership = _reader(membership)
    _require_investigator(membership.trial, by)
    reason = " ".join((reason or "").split())
    if not reason:
        raise ServiceError("Say why the reader is withdrawn.", field="reason")
    if membership.withdrawn_at is not None:
        raise Conflict(f"Reader {membership.pseudonym} is already withdrawn.")
    trial = _locked(membership.trial)
    if trial.status in (Status.LOCKED, Status.UNBLINDED):
        raise WrongStatus("The trial is locked.")
    membership.withdrawn_at, membership.on_duty = clock.now(), False
    membership.withdrawal_reason = reason[:Membership._meta.get_field("withdrawal_reason").max_length]
    membership.save(update_fields=["withdrawn_at", "on_duty", "withdrawal_reason"])
    audit.record(actor=by, action="reader.withdrawn", obj=membership, trial=trial,
                 payload={"reader": membership.pseudonym})
    record_deviation(trial=trial, by=by, kind=Deviation.Kind.READER_WITHDRAWN, reader=membership, reason=reason,
                     description=f"Reader {membership.pseudonym} withdrawn; open reads re-routed.")
    events.announce(events.reader_withdrawn, trial_id=trial.pk, membership_id=membership.pk)
    return membership


@transaction.atomic
def withdraw_case(*, case: Case, by, reason: str) -> Case:
    """Withdraw a case (e.g. the patient withdrew consent, or the image was of another patient): it is read and
    scored no further; what exists stays, and the analysis plan decides how it counts (an intercurrent event)."""
    _require_investigator(case.trial, by)
    reason = " ".join((reason or "").split())
    if not reason:
        raise ServiceError("Say why the case is withdrawn.", field="reason")
    trial = _locked(case.trial)
    if trial.status in (Status.LOCKED, Status.UNBLINDED):
        raise WrongStatus("The trial is locked.")
    case = Case.objects.select_for_update(no_key=True).get(pk=case.pk)
    if case.withdrawn_at is not None:
        raise Conflict(f"Case {case.code} is already withdrawn.")
    case.withdrawn_at = clock.now()
    case.withdrawal_reason = reason[:Case._meta.get_field("withdrawal_reason").max_length]
    case.save(update_fields=["withdrawn_at", "withdrawal_reason"])
    audit.record(actor=by, action="case.withdrawn", obj=case, trial=trial, payload={"case": case.code})
    record_deviation(trial=trial, by=by, kind=Deviation.Kind.CASE_WITHDRAWN, case=case, reason=reason,
                     description=f"Case {case.code} withdrawn.")
    events.announce(events.case_withdrawn, trial_id=trial.pk, case_id=case.pk)
    return case


# ----------------------------------------------------------------------------- API tokens

TOKEN_PREFIX = "cxr_"


@transaction.atomic
def issue_api_token(*, trial: Trial, by, name: str = "", days: int | None = None) -> tuple[ApiToken, str]:
    """A new API token of `by` for `trial` (where they hold a role), expiring after `days`: the token and its key,
    which is shown this once and stored only as its hash. Nobody mints tokens for anyone else."""
    require_role(trial=trial, user=by)
    days = settings.CXR_API_TOKEN_DEFAULT_DAYS if days is None else int(days)
    if not 1 <= days <= settings.CXR_API_TOKEN_MAX_DAYS:
        raise ServiceError(f"A token lives between 1 and {settings.CXR_API_TOKEN_MAX_DAYS} days.", field="days")
    name = " ".join((name or "").split())[:ApiToken._meta.get_field("name").max_length]
    key = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(trial=trial, user=by, name=name, prefix=key[:12], key_hash=ApiToken.hash_key(key),
                                    expires_at=timezone.now() + timedelta(days=days))
    audit.record(actor=by, action="token.created", obj=token, trial=trial, payload={
        "user": by.pk, "name": name, "prefix": token.prefix, "expires_at": token.expires_at.isoformat()})
    return token, key


@transaction.atomic
def revoke_api_token(*, token: ApiToken, by) -> ApiToken:
    """Revoke a token: its owner may, and staff may (never mint one)."""
    token = ApiToken.objects.select_for_update().get(pk=token.pk)
    if token.user_id != by.pk and not by.is_staff:
        raise NotAllowed("Only the token's owner or an administrator can revoke it.")
    if token.revoked_at is not None:
        return token
    token.revoked_at = timezone.now()
    token.revoked_by = by
    token.save(update_fields=["revoked_at", "revoked_by"])
    audit.record(actor=by, action="token.revoked", obj=token, trial=token.trial,
                 payload={"user": token.user_id, "prefix": token.prefix})
    return token


def note_token_use(*, token: ApiToken) -> None:
    """When a token was last used, to the hour (not a write per request)."""
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > timedelta(hours=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)


# ----------------------------------------------------------------------------- accounts (audited)

# Fields of a user that an audit event may name with their values; the password is named, never its hash.
USER_AUDIT_FIELDS = ("username", "email", "first_name", "last_name", "is_active", "is_staff", "is_superuser")


def user_snapshot(user) -> dict:
    return {f: getattr(user, f) for f in USER_AUDIT_FIELDS}


def record_account_change(*, by, action: str, obj, payload: dict | None = None) -> None:
    """An audit event for a change to an account, a group, a permission or a second factor, written in the
    transaction of that change (the admin's save_model/delete_model/save_related and the services below)."""
    audit.record(actor=by, action=action, obj=obj, payload=payload or {})


def record_user_saved(*, by, user, before: dict | None, password_changed: bool = False) -> None:
    after = user_snapshot(user)
    if before is None:
        record_account_change(by=by, action="account.user_created", obj=user, payload={"after": after})
        return
    changed = {k: {"before": before[k], "after": after[k]} for k in after if before.get(k) != after[k]}
    if password_changed:
        changed["password"] = "changed"
    if changed:
        record_account_change(by=by, action="account.user_changed", obj=user, payload={"changes": changed})


def permission_names(permissions) -> list[str]:
    return sorted(f"{p.content_type.app_label}.{p.codename}" for p in permissions)


def record_access_rights(*, by, obj, before: dict[str, list[str]], after: dict[str, list[str]]) -> None:
    """Groups and permissions of a user (or a group's permissions), before and after: one event if anything moved."""
    changes = {}
    for name in after:
        added = sorted(set(after[name]) - set(before.get(name, [])))
        removed = sorted(set(before.get(name, [])) - set(after[name]))
        if added or removed:
            changes[name] = {"added": added, "removed": removed}
    if changes:
        record_account_change(by=by, action="account.access_changed", obj=obj, payload={"changes": changes})


@transaction.atomic
def set_password(*, user, by, password: str, how: str) -> None:
    """A new password (`how`: "changed" by its owner, "reset" through an e-mailed link): validated, audited."""
    try:
        validate_password(password, user)
    except DjangoValidationError as exc:
        raise ServiceError(" ".join(exc.messages), field="password") from exc
    user.set_password(password)
    user.save(update_fields=["password"])
    record_account_change(by=by, action=f"account.password_{how}", obj=user, payload={"user": user.pk})


# ----------------------------------------------------------------------------- second factor


def pending_totp_device(*, user):
    """The user's authenticator being set up (not confirmed yet): the same one until it is confirmed, so that the
    QR code does not change on every visit."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-id").first()
    return device or TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


def _new_recovery_codes(user) -> list[str]:
    from django_otp.plugins.otp_static.models import StaticDevice, StaticToken

    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name="Recovery codes", confirmed=True)
    codes = [StaticToken.random_token() for _ in range(settings.CXR_RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


def confirm_totp_device(*, user, device, code: str) -> list[str] | None:
    """Confirm the authenticator being set up with a code from it; it replaces any earlier one, and new recovery
    codes are made (returned, to be shown once). None if the code is not right (the device's own throttle counts
    the failure, so this is not one transaction with the refusal)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    if device.user_id != user.pk or device.confirmed:
        raise ServiceError("This authenticator is not being set up.", code="invalid_device")
    if not device.verify_token((code or "").strip().replace(" ", "")):
        return None
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=True).exclude(pk=device.pk).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = _new_recovery_codes(user)
        record_account_change(by=user, action="account.second_factor_enrolled", obj=user,
                              payload={"device": "totp", "recovery_codes": len(codes)})
    return codes


def verify_second_factor(*, user, code: str):
    """The confirmed device of `user` that accepts `code` (a code of the authenticator or a recovery code), or None.
    Each device throttles its own failures (django-otp); a recovery code is used up, and that is audited."""
    from django_otp import devices_for_user

    code = (code or "").strip().replace(" ", "").lower()
    if not code:
        return None
    for device in devices_for_user(user, confirmed=True):
        allowed, _ = device.verify_is_allowed()
        if allowed and device.verify_token(code):
            if device.__class__.__name__ == "StaticDevice":
                with transaction.atomic():
                    record_account_change(by=user, action="account.recovery_code_used", obj=user,
                                          payload={"left": device.token_set.count()})
            return device
    return None


def second_factor_wait(*, user) -> int:
    """Seconds until the user's authenticator accepts another try (0: now), after failed codes."""
    from django_otp import devices_for_user

    waits = []
    for device in devices_for_user(user, confirmed=True):
        allowed, data = device.verify_is_allowed()
        if not allowed and data and data.get("locked_until"):
            waits.append(int((data["locked_until"] - timezone.now()).total_seconds()) + 1)
    return max([0, *waits])


@transaction.atomic
def new_recovery_codes(*, user) -> list[str]:
    codes = _new_recovery_codes(user)
    record_account_change(by=user, action="account.recovery_codes_generated", obj=user,
                          payload={"recovery_codes": len(codes)})
    return codes


@transaction.atomic
def reset_second_factor(*, user, by) -> None:
    """Remove every device of `user` (staff, for someone who lost their phone): they enrol again at next login."""
    from django_otp.plugins.otp_static.models import StaticDevice
    from django_otp.plugins.otp_totp.models import TOTPDevice

    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()
    record_account_change(by=by, action="account.second_factor_reset", obj=user, payload={"user": user.pk})
