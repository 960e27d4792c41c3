"""Every write of the reading app: routing cases to readers, events, autosave, submit, correct, sign off."""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q

from ai.models import AIDraft
from core import clock, keys
from core.errors import Conflict, ServiceError, WrongStatus
from core.text import clean_text
from trial import audit, lifecycle, outbox, signatures
from trial import services as trial_services
from trial.events import announce
from trial.models import (
    Arm,
    Case,
    Design,
    Deviation,
    Membership,
    ReleasePolicy,
    Role,
    Signature,
    Site,
    Status,
    Trial,
)
from trial.selectors import require_role

from . import events, routing, timing
from . import selectors as reading_selectors
from .errors import AlreadySubmitted, StaleVersion
from .models import (
    CLOSED_READ_STATUSES,
    CORRECTION_REASON_LIMIT,
    OPEN_READ_STATUSES,
    REPORT_TEXT_LIMIT,
    TAB_ID_LENGTH,
    Read,
    ReadEvent,
    ReadStatus,
    RecordReport,
    Report,
    ReportDraft,
)
from .textdiff import draft_survival

# Statuses in which reads are delivered, opened and written.
_READING_STATUSES = lifecycle.statuses_allowing(lifecycle.READ)

# The second crossover read of a case waits for the first: until then its start is "never".
WAITING_FOR_FIRST_READ = datetime(9999, 1, 1, tzinfo=UTC)


# ------------------------------------------------------------------------------------------ routing


def _readers(trial: Trial) -> list[Membership]:
    return list(trial.memberships.filter(role=Role.READER).select_related("site", "allocation"))


def _open_load(trial: Trial) -> Counter:
    return Counter(Read.objects.filter(trial=trial, status__in=OPEN_READ_STATUSES)
                   .values_list("reader_id", flat=True))


def _arm_of(member: Membership) -> str | None:
    return getattr(getattr(member, "allocation", None), "arm", None)


def _pool(trial: Trial, case, arm: str, readers: list[Membership]) -> list[Membership]:
    """The readers who may read `case` in `arm`. Prospective: of the case's site, on duty, not withdrawn (nobody
    else; the case waits). Reader study: of the case's site when that site has readers of both arms, else of all
    sites (a batch is read by whoever the trial has)."""
    # a case-randomized trial randomizes cases, not readers: every reader reads in either arm
    in_arm = [m for m in readers if m.withdrawn_at is None
              and (trial.design == Design.CASE_RANDOMIZED or _arm_of(m) == arm)]
    if trial.is_prospective:
        return [m for m in in_arm if m.site_id == case.site_id and m.on_duty]
    local = [m for m in in_arm if m.site_id == case.site_id]
    if trial.design == Design.CASE_RANDOMIZED:
        return local or in_arm
    both_local = local and any(m.site_id == case.site_id for m in readers if _arm_of(m) not in (None, arm))
    return local if both_local else in_arm


def _arms_needed(trial: Trial, case) -> list[str]:
    if trial.design == Design.CASE_RANDOMIZED:
        allocation = getattr(case, "allocation", None)
        if allocation is None:
            raise ServiceError(f"Case {case.code} has no allocation.")
        return [allocation.arm]
    return [Arm.ASSISTED, Arm.STANDARD]


def _route_case(trial: Trial, case, readers: list[Membership], load: Counter, *, by) -> int:
    """Give each arm of `case` that has no live read one reader, by the trial's rule; an arm with nobody eligible
    waits (prospective) or refuses (reader study). The number of reads made."""
    reads = list(Read.objects.filter(case=case).values_list("arm", "status"))
    covered = {arm for arm, status in reads if status != ReadStatus.REROUTED}
    plan: list[tuple[Membership, str]] = []
    for arm in _arms_needed(trial, case):
        if arm in covered:
            continue
        pool = _pool(trial, case, arm, readers)
        chosen = routing.choose([routing.Candidate(m.pk, load[m.pk]) for m in pool], rule=trial.routing_rule,
                                seed=bytes(trial.randomization_seed), arrival_index=case.arrival_index or 0, arm=arm,
                                attempt=sum(1 for a, _ in reads if a == arm))
        if chosen is None:
            if not trial.is_prospective:
                raise ServiceError(f"No randomized reader in the {arm} arm: cannot route {case.code}.")
            continue  # waits in the site's queue: routed when a reader of the arm comes on duty
        plan.append((next(m for m in pool if m.pk == chosen), arm))
    # The reads of a case are created in random order: nothing about an arm may follow from a read's id.
    keys.system_random.shuffle(plan)
    for reader, arm in plan:
        read = Read.objects.create(
            trial=trial, case=case, reader=reader, arm=arm,
            # a prospective worklist is in arrival order; a reader study's in a random order drawn once
            order_key=case.arrival_index if trial.is_prospective else keys.new_order_key())
        load[reader.pk] += 1
        if trial.is_prospective:
            audit.record(actor=by, action="read.assigned", obj=read, trial=trial,
                         payload={"case": case.code, "reader": reader.pseudonym})
    return len(plan)


def _route_crossover(trial: Trial, case, readers: list[Membership]) -> int:
    plan = []
    for reader in readers:
        first = _arm_of(reader)
        if first is None:
            continue
        second = Arm.STANDARD if first == Arm.ASSISTED else Arm.ASSISTED
        plan += [(reader, first, 1), (reader, second, 2)]
    keys.system_random.shuffle(plan)
    for reader, arm, period in plan:
        Read.objects.create(trial=trial, case=case, reader=reader, arm=arm, period=period,
                            order_key=keys.new_order_key(),
                            # the second crossover read waits for the first one (see submit_report)
                            available_from=WAITING_FOR_FIRST_READ if period == 2 else None)
    return len(plan)


@transaction.atomic
def route_trial(*, trial: Trial, by=None) -> int:
    """Put every enrolled case that lacks a reader in one of its arms on worklists, as the trial's design and mode
    say (see _pool and reading.routing). Idempotent. `by`: the investigator who asked (None: the system — when
    reading starts, a case arrives, a reader comes on duty or joins, or one is withdrawn). The number of cases
    given at least one read.

    paired-parallel: one reader of each arm per case, fewest open reads first; case-randomized: one reader in the
    case's allocated arm; crossover (a reader study only): every reader, both arms, first period in the reader's
    allocated arm, the second after the washout (set when the first read is submitted).
    """
    if by is not None:
        require_role(trial=trial, user=by, roles=[Role.INVESTIGATOR])
    trial = Trial.objects.select_for_update(no_key=True).get(pk=trial.pk)
    if trial.status in (Status.LOCKED, Status.UNBLINDED):
        return 0
    if trial.is_prospective:  # route_arrival routes one case under its site's lock: wait for those in flight
        list(Site.objects.select_for_update(no_key=True).filter(trial=trial).order_by("pk"))
    _close_withdrawn_reads(trial)  # in any status where reads may be open (a reader study's scoring too)
    if not trial.allows(lifecycle.READ):
        return 0
    readers = _readers(trial)
    load = _open_load(trial)
    routed = 0
    for case in reading_selectors.waiting_cases(trial).select_related("site", "allocation"):
        made = (_route_crossover(trial, case, readers) if trial.design == Design.CROSSOVER
                else _route_case(trial, case, readers, load, by=by))
        routed += bool(made)
    if routed and not trial.is_prospective:
        audit.record(actor=by, action="reading.routed", obj=trial, payload={"cases": routed})
    return routed


@transaction.atomic
def route_arrival(*, case_id: int) -> int:
    """A prospective trial's arriving case, routed at once: only this case, under its site's lock (the readers it
    may go to are of its site), so that arrivals at different sites do not wait for each other and the cost does not
    grow with the trial. route_trial (duty changes, withdrawals, the periodic sweep) takes every site's lock, so the
    two never route the same case twice. The number of reads made."""
    case = Case.objects.select_related("trial", "allocation").get(pk=case_id)
    trial = case.trial
    if not trial.is_prospective or not trial.allows(lifecycle.READ) or case.withdrawn_at is not None:
        return 0
    Site.objects.select_for_update(no_key=True).get(pk=case.site_id)
    readers = list(trial.memberships.filter(role=Role.READER, site_id=case.site_id, withdrawn_at__isnull=True,
                                            on_duty=True).select_related("allocation"))
    load = Counter(Read.objects.filter(reader__in=readers, status__in=OPEN_READ_STATUSES)
                   .values_list("reader_id", flat=True))
    return _route_case(trial, case, readers, load, by=None)


def _close_withdrawn_reads(trial: Trial) -> int:
    """The open reads of withdrawn cases are closed (read no further), and those of withdrawn readers are closed as
    re-routed, so that their cases go to another reader of the same arm and site (or wait for one). The autosaved
    text stays with each closed read; finished reads stay as they are."""
    reads = list(Read.objects.select_for_update(of=("self",)).filter(trial=trial, status__in=OPEN_READ_STATUSES)
                 .filter(Q(reader__withdrawn_at__isnull=False) | Q(case__withdrawn_at__isnull=False))
                 .select_related("case", "reader"))
    for read in reads:
        withdrawn_case = read.case.withdrawn_at is not None
        read.status = ReadStatus.CASE_WITHDRAWN if withdrawn_case else ReadStatus.REROUTED
        read.save(update_fields=["status"])
        audit.record(actor=None, action="read.closed_case_withdrawn" if withdrawn_case else "read.rerouted",
                     obj=read, trial=trial,
                     payload={"case": read.case.code, "reader": read.reader.pseudonym,
                              "had_text": ReportDraft.objects.filter(read=read).exists()})
    return len(reads)


# ------------------------------------------------------------------------------------------ events


def note_delivery(*, read: Read) -> None:
    """When the server first sent a read's case to its reader (the reading page or the read API): the reading clock
    starts there, whatever the client reports later. This is the one write a GET makes in this project (a
    measurement, not a change the user asked for): once per read, only while the read is open and the trial is
    reading, by a conditional UPDATE that a concurrent submit cannot turn into a stamp of a submitted read; nothing
    when it is already stamped (no query). An assisted read also stamps the case's draft (AIDraft.delivered_at),
    before the page reads it: from then on it is what the reader is shown, and the ai app never makes it again."""
    if read.delivered_at is not None or read.status not in OPEN_READ_STATUSES or not read.trial.allows(lifecycle.READ):
        return
    now = clock.now()
    if Read.objects.filter(pk=read.pk, delivered_at__isnull=True, trial__status__in=_READING_STATUSES,
                           status__in=OPEN_READ_STATUSES).update(delivered_at=now):
        read.delivered_at = now
        if read.arm == Arm.ASSISTED:
            # its own statement, committed before the page reads the draft: it waits for a redraft being stored (which
            # holds the draft's row), or makes that store give way (ai.services._store_redraft)
            AIDraft.objects.filter(case_id=read.case_id, delivered_at__isnull=True).update(delivered_at=now)


def _add_event(read: Read, kind: str, tab_id: str, server_time: datetime, client_time: datetime | None = None,
               skew: float | None = None) -> ReadEvent:
    return ReadEvent.objects.create(read=read, kind=kind, tab_id=tab_id[:TAB_ID_LENGTH] or "unknown",
                                    server_time=server_time, client_time=client_time, clock_skew_seconds=skew)


def _require_reading(trial: Trial) -> None:
    if not trial.allows(lifecycle.READ):
        raise WrongStatus(f"The trial is not in its reading phase (it is {trial.status}); nothing was saved.")


@transaction.atomic
def record_event(*, read_id: int, by, kind: str, tab_id: str, client_time: datetime | None = None) -> ReadEvent:
    if kind not in ReadEvent.Kind.values or kind in (ReadEvent.Kind.SUBMITTED, ReadEvent.Kind.AUTOSAVED):
        raise ServiceError(f"Unknown event “{kind}”.", field="kind")
    read = reading_selectors.locked_own_read(read_id=read_id, user=by)
    if read.status == ReadStatus.SUBMITTED:
        raise AlreadySubmitted("This read is submitted; its time is closed.")
    _refuse_rerouted(read)
    _require_reading(read.trial)
    now = clock.now()
    skew = (client_time - now).total_seconds() if client_time else None
    event = _add_event(read, kind, tab_id, now, client_time, skew)
    if kind == ReadEvent.Kind.OPENED and read.opened_at is None:
        read.opened_at, read.status = now, ReadStatus.IN_PROGRESS
        read.save(update_fields=["opened_at", "status"])
        audit.record(actor=by, action="read.opened", obj=read, trial=read.trial, payload={"case": read.case.code})
    return event


def _clean_text(value: str, field: str) -> str:
    return clean_text(value, field=field, limit=REPORT_TEXT_LIMIT)


def _clean_flags(read: Read, flags: dict) -> dict[str, bool]:
    findings = set(read.trial.findings)
    unknown = set(flags or {}) - findings
    if unknown:
        raise ServiceError(f"Unknown finding(s): {', '.join(sorted(unknown))}.", field="finding_flags")
    return {name: bool((flags or {}).get(name, False)) for name in read.trial.findings}


@transaction.atomic
def autosave(*, read_id: int, by, findings: str, impression: str, finding_flags: dict, base_version: int | None,
             tab_id: str) -> ReportDraft:
    """Keep the text; refuse (409, with the newer text) a save based on an older version than stored."""
    read = reading_selectors.locked_own_read(read_id=read_id, user=by)
    if read.status == ReadStatus.SUBMITTED:
        raise AlreadySubmitted("This read is already submitted; the report can only be corrected.")
    _require_reading(read.trial)
    saved = reading_selectors.saved_text(read=read)  # once the read's lock is granted: a stale tab is always seen
    if saved is not None and base_version is not None and base_version < saved.version and saved.tab_id != tab_id:
        raise StaleVersion("Another tab saved a newer text of this report.", current=saved)
    if saved is not None and base_version is None and saved.version > 0 and saved.tab_id != tab_id:
        raise StaleVersion("This report already has saved text from another tab.", current=saved)
    now = clock.now()
    values = {"findings": _clean_text(findings, "findings"), "impression": _clean_text(impression, "impression"),
              "finding_flags": _clean_flags(read, finding_flags), "tab_id": tab_id[:TAB_ID_LENGTH], "saved_at": now}
    if saved is None:
        saved = ReportDraft.objects.create(read=read, version=1, **values)
    else:
        for key, value in values.items():
            setattr(saved, key, value)
        saved.version += 1  # under the read's lock: no lost update
        saved.save(update_fields=[*values, "version"])
    _add_event(read, ReadEvent.Kind.AUTOSAVED, tab_id, now)
    if read.status == ReadStatus.ASSIGNED:
        read.status = ReadStatus.IN_PROGRESS
        read.save(update_fields=["status"])
    return saved


def _refuse_rerouted(read: Read) -> None:
    reading_selectors.refuse_closed(read)


def _times(read: Read, *, until: datetime) -> timing.ReadingTime:
    events = [timing.Event(*row) for row in ReadEvent.objects.filter(read_id=read.pk)
              .order_by("server_time", "id").values_list("kind", "tab_id", "server_time")]
    return timing.reading_time(events, gap_cap_seconds=timing.GAP_CAP_SECONDS, until=until,
                               delivered=read.delivered_at)


@transaction.atomic
def submit_report(*, read_id: int, by, findings: str, impression: str, finding_flags: dict,
                  base_version: int | None = None, tab_id: str = "") -> Report:
    """Freeze the reader's report; the read's time is computed from its events, never from the client."""
    # NO KEY UPDATE (not UPDATE): other transactions that insert rows pointing at this read (its events, a tab's
    # autosave of another read…) take key-share locks on it; a plain FOR UPDATE would make them wait for the submit
    read = reading_selectors.locked_own_read(read_id=read_id, user=by, no_key=True)
    if read.status == ReadStatus.SUBMITTED:
        raise AlreadySubmitted("This report was already submitted.")
    _refuse_rerouted(read)
    _require_reading(read.trial)
    if not impression.strip():
        raise ServiceError("An impression is required.", field="impression")
    saved = reading_selectors.saved_text(read=read)
    if saved is not None and base_version is not None and base_version < saved.version and saved.tab_id != tab_id:
        raise StaleVersion("Another tab saved a newer text of this report; review it before submitting.",
                           current=saved)
    now = clock.now()
    _add_event(read, ReadEvent.Kind.SUBMITTED, tab_id, now)
    survival = None
    if read.arm == Arm.ASSISTED:
        draft = reading_selectors.visible_draft(read=read)
        if draft is not None:
            survival = draft_survival(draft=f"{draft.findings}\n{draft.impression}", report=f"{findings}\n{impression}")
    report = Report.objects.create(
        read=read, version=1, findings=_clean_text(findings, "findings").strip(),
        impression=_clean_text(impression, "impression").strip(), finding_flags=_clean_flags(read, finding_flags),
        author=by, created_at=now, draft_edit_distance=survival.edit_distance if survival else None,
        draft_kept_share=survival.kept_share if survival else None)
    times = _times(read, until=now)
    read.status, read.submitted_at = ReadStatus.SUBMITTED, now
    read.wall_seconds, read.active_seconds = times.wall_seconds, times.active_seconds
    read.save(update_fields=["status", "submitted_at", "wall_seconds", "active_seconds"])
    if read.period == 1 and read.trial.design == Design.CROSSOVER:
        Read.objects.filter(case_id=read.case_id, reader_id=read.reader_id, period=2).update(
            available_from=now + timedelta(days=read.trial.washout_days))
    # No outcome in the payload (investigators read the audit log blinded): the event's state hash binds the text
    # and the reading times.
    audit.record(actor=by, action="report.submitted", obj=report, trial=read.trial,
                 payload={"read": read.pk, "case": read.case.code, "version": 1})
    _record_read_deviations(read, by=by, had_draft=read.arm != Arm.ASSISTED or survival is not None)
    if not read.trial.require_signoff:
        announce(events.reports_final, trial_id=read.trial_id, case_id=read.case_id)
    return report


def _record_read_deviations(read: Read, *, by, had_draft: bool) -> None:
    """The deviations a submitted read shows by itself: assisted without a draft (the trial's draft rule let it
    open), submitted past the trial's time window, or read by someone outside the case's site or arm."""
    trial, case = read.trial, read.case

    def record(**values) -> None:
        # recorded by the platform, not in the reader's name: a deviation of one arm only (a draft not shown) would
        # otherwise tell the investigators, on the conduct page and in the audit log, which arm the reader is in
        trial_services.record_deviation(trial=trial, by=None, case=case, reader=read.reader, read_id=read.pk,
                                        **values)

    if not had_draft:
        record(kind=Deviation.Kind.DRAFT_NOT_SHOWN, occurred_at=read.opened_at,
               description=f"{case.code}: read without its AI draft (draft rule: "
                           f"{trial.get_draft_rule_display()}).")
    if trial.read_window_hours is not None and case.arrived_at is not None and read.submitted_at is not None \
            and read.submitted_at - case.arrived_at > timedelta(hours=trial.read_window_hours):
        hours = (read.submitted_at - case.arrived_at).total_seconds() / 3600
        record(kind=Deviation.Kind.PAST_WINDOW, occurred_at=read.submitted_at,
               description=f"{case.code}: read submitted {hours:.1f} h after arrival (window "
                           f"{trial.read_window_hours} h).")
    if not trial.is_prospective:
        return  # a reader study reads its batch across sites where a site lacks an arm (route_trial)
    arm = getattr(getattr(read.reader, "allocation", None), "arm", None)
    outside_arm = trial.design == Design.PAIRED_PARALLEL and arm != read.arm
    if read.reader.site_id != case.site_id or outside_arm:
        record(kind=Deviation.Kind.OUTSIDE_SITE_OR_ARM, occurred_at=read.submitted_at,
               description=f"{case.code}: read by {read.reader.pseudonym}, outside the case's site or arm.")


def _locked_read(read_id: int) -> Read:
    """The read under its row lock (all writes to its reports take this lock, so a correction and a sign-off
    never cross), with its trial, case and reader."""
    return Read.objects.select_for_update(of=("self",), no_key=True).select_related(
        "trial", "case", "reader").get(pk=read_id)


def _require_signer(read: Read, by) -> None:
    """A senior of a trial that asks for sign-off, who has no read of the case: the one rule of every sign-off path
    (correcting as a senior, signing)."""
    require_role(trial=read.trial, user=by, roles=[Role.SENIOR])
    if not read.trial.require_signoff:
        raise WrongStatus("This trial has no senior sign-off.")
    if Read.objects.filter(case_id=read.case_id, reader__user_id=by.pk).exists():
        raise ServiceError("A senior cannot sign a report of a case on their own worklist.")


def _new_version(read: Read, *, by, findings: str, impression: str, finding_flags: dict, reason: str) -> Report:
    if read.status != ReadStatus.SUBMITTED:
        raise Conflict("Only a submitted report can be corrected; keep editing the draft instead.")
    if not read.trial.allows(lifecycle.READ):
        raise WrongStatus(f"Reports can no longer be corrected (the trial is {read.trial.status}).")
    reason = clean_text(reason, field="reason", limit=CORRECTION_REASON_LIMIT, strip=True)
    if not reason:
        raise ServiceError("A correction needs a reason.", field="reason")
    if not impression.strip():
        raise ServiceError("An impression is required.", field="impression")
    last = read.reports.order_by("-version").first()
    report = Report.objects.create(
        read=read, version=last.version + 1, findings=_clean_text(findings, "findings").strip(),
        impression=_clean_text(impression, "impression").strip(), finding_flags=_clean_flags(read, finding_flags),
        reason=reason, author=by, created_at=clock.now(),
        draft_edit_distance=last.draft_edit_distance, draft_kept_share=last.draft_kept_share,
    )
    audit.record(actor=by, action="report.corrected", obj=report, trial=read.trial,
                 payload={"read": read.pk, "version": report.version})  # the reason is in the state hash
    return report


def report_content_sha256(report: Report) -> str:
    """SHA-256 of what a senior signs: the version's text and findings, in canonical JSON."""
    body = {"read": report.read_id, "version": report.version, "findings": report.findings,
            "impression": report.impression, "finding_flags": report.finding_flags}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                          .encode()).hexdigest()


def _sign(read: Read, report: Report, *, by, proof: signatures.Reauthenticated) -> Report:
    latest = read.reports.order_by("-version").first()
    if latest.pk != report.pk:
        raise Conflict("Only the latest version of a report can be signed.")
    if report.signed_at is not None:
        raise Conflict("This report is already signed.")
    report.signed_by, report.signed_at = by, clock.now()
    report.save(update_fields=["signed_by", "signed_at"])
    audit.record(actor=by, action="report.signed", obj=report, trial=read.trial,
                 payload={"read": read.pk, "version": report.version})
    signatures.sign(trial=read.trial, by=by, proof=proof, meaning=Signature.Meaning.SIGN_OFF, obj=report,
                    content_hash=report_content_sha256(report))
    _release_record(read.case_id)
    announce(events.reports_final, trial_id=read.trial_id, case_id=read.case_id)
    return report


def _release_record(case_id: int) -> None:
    """When a signature makes (or changes) the case's report of record, it goes into the outbox to the hospital in
    the signature's transaction (trial.outbox): a signed report is never left unsent, nothing leaves for a signature
    that rolled back."""
    case = Case.objects.select_related("trial", "site").get(pk=case_id)
    record = reading_selectors.report_of_record(case=case)
    if record is not None:
        outbox.release_report(case=case, source=record.source, findings=record.findings,
                              impression=record.impression, signed_by_id=record.signed_by_id,
                              signed_at=record.signed_at)


@transaction.atomic
def correct_report(*, read_id: int, by, findings: str, impression: str, finding_flags: dict, reason: str) -> Report:
    """A new version with a reason, by the reader; earlier versions are kept (a senior corrects through
    correct_and_sign)."""
    read = _locked_read(read_id)
    if read.reader.user_id != by.pk:
        raise PermissionDenied("Only the reader corrects a report here; a senior edits it at sign-off.")
    return _new_version(read, by=by, findings=findings, impression=impression, finding_flags=finding_flags,
                        reason=reason)


@transaction.atomic
def correct_and_sign(*, read_id: int, by, findings: str, impression: str, finding_flags: dict,
                     reason: str, proof: signatures.Reauthenticated) -> Report:
    """A senior edits a report (a new version with a reason) and signs it, in one transaction: a refused signature
    leaves no unsigned correction behind."""
    read = _locked_read(read_id)
    _require_signer(read, by)
    report = _new_version(read, by=by, findings=findings, impression=impression, finding_flags=finding_flags,
                          reason=reason)
    return _sign(read, report, by=by, proof=proof)


@transaction.atomic
def sign_report(*, report: Report, by, proof: signatures.Reauthenticated) -> Report:
    """A senior signs the latest version of a report as written (to edit it, correct_and_sign), with an electronic
    signature bound to the version's content (`proof`: trial.signatures.reauthenticate, just before)."""
    read = _locked_read(report.read_id)
    _require_signer(read, by)
    return _sign(read, Report.objects.get(pk=report.pk), by=by, proof=proof)


# ------------------------------------------------------------------------------------------ the report of record


def _both_signed(case_id: int) -> dict[str, Report]:
    """The latest version of each arm's report of a case, when every one is signed; {} otherwise."""
    latest: dict[str, Report] = {}
    for report in Report.objects.filter(read__case_id=case_id).exclude(
            read__status__in=CLOSED_READ_STATUSES).select_related("read"):
        current = latest.get(report.read.arm)
        if current is None or report.version > current.version:
            latest[report.read.arm] = report
    if set(latest) != {Arm.ASSISTED, Arm.STANDARD} or any(r.signed_at is None for r in latest.values()):
        return {}
    return latest


@transaction.atomic
def write_report_of_record(*, case_id: int, by, findings: str, impression: str,
                           proof: signatures.Reauthenticated) -> RecordReport:
    """A senior writes the clinical report of record from the case's two signed reports and signs it (trials whose
    release policy is "senior"): once, by a senior who read neither report of the case."""
    case = Case.objects.select_related("trial").get(pk=case_id)
    trial = case.trial
    require_role(trial=trial, user=by, roles=[Role.SENIOR])
    if trial.release_policy != ReleasePolicy.SENIOR:
        raise WrongStatus("In this trial the report of record is not written by a senior (see its release policy).")
    if not trial.allows(lifecycle.READ):
        raise WrongStatus(f"Reports can no longer be written (the trial is {trial.status}).")
    if Read.objects.filter(case_id=case.pk, reader__user_id=by.pk).exists():
        raise ServiceError("A senior cannot write the report of record of a case on their own worklist.")
    case = Case.objects.select_for_update(no_key=True).get(pk=case.pk)
    if case.withdrawn_at is not None:
        raise WrongStatus("This case was withdrawn.")
    if RecordReport.objects.filter(case=case).exists():
        raise Conflict("The report of record of this case is already written and signed.")
    if not _both_signed(case.pk):
        raise WrongStatus("The report of record is written from the case's two signed reports: both are not signed "
                          "yet.")
    impression = clean_text(impression, field="impression", limit=REPORT_TEXT_LIMIT, strip=True)
    if not impression:
        raise ServiceError("An impression is required.", field="impression")
    record = RecordReport.objects.create(
        case=case, findings=clean_text(findings, field="findings", limit=REPORT_TEXT_LIMIT, strip=True),
        impression=impression, author=by, signed_at=clock.now())
    audit.record(actor=by, action="report_of_record.written", obj=record, trial=trial, payload={"case": case.code})
    signatures.sign(trial=trial, by=by, proof=proof, meaning=Signature.Meaning.RECORD_REPORT, obj=record,
                    content_hash=hashlib.sha256(json.dumps(
                        {"findings": record.findings, "impression": record.impression}, sort_keys=True,
                        ensure_ascii=False).encode()).hexdigest())
    _release_record(case.pk)
    return record
