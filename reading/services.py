"""Every write of the reading app: routing cases to readers, events, autosave, submit, correct, sign off."""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

from django.core.exceptions import PermissionDenied
from django.db import transaction

from core import clock, keys
from core.errors import Conflict, ServiceError, WrongStatus
from core.text import clean_text
from trial import audit, signatures
from trial.models import Arm, Design, Membership, Role, Signature, Status, Trial
from trial.selectors import require_role

from . import selectors as reading_selectors
from . import timing
from .errors import AlreadySubmitted, StaleVersion
from .models import (
    CORRECTION_REASON_LIMIT,
    REPORT_TEXT_LIMIT,
    TAB_ID_LENGTH,
    Read,
    ReadEvent,
    ReadStatus,
    Report,
    ReportDraft,
)
from .textdiff import draft_survival

# The second crossover read of a case waits for the first: until then its start is "never".
WAITING_FOR_FIRST_READ = datetime(9999, 1, 1, tzinfo=UTC)


# ------------------------------------------------------------------------------------------ routing


def _readers(trial: Trial) -> list[Membership]:
    return list(trial.memberships.filter(role=Role.READER).select_related("site", "allocation"))


def _open_load(trial: Trial) -> Counter:
    return Counter(Read.objects.filter(trial=trial).exclude(status=ReadStatus.SUBMITTED)
                   .values_list("reader_id", flat=True))


def _least_loaded(candidates: list[Membership], load: Counter) -> Membership:
    fewest = min(load[m.pk] for m in candidates)
    return keys.system_random.choice([m for m in candidates if load[m.pk] == fewest])  # random tie-break


@transaction.atomic
def route_trial(*, trial: Trial, by=None) -> int:
    """Put every enrolled, unrouted case on worklists, as the trial's design says. Idempotent. `by`: the
    investigator who asked (None: the system, when reading starts).

    paired-parallel: one reader of each arm per case, within the case's site when that site has readers
    of both arms, fewest open reads first; case-randomized: one reader in the case's allocated arm;
    crossover: every reader, both arms, first period in the reader's allocated arm, the second after
    the washout (set when the first read is submitted).
    """
    if by is not None:
        require_role(trial=trial, user=by, roles=[Role.INVESTIGATOR])
    trial = Trial.objects.select_for_update(no_key=True).get(pk=trial.pk)
    readers = _readers(trial)
    load = _open_load(trial)
    routed = 0
    cases = trial.cases.filter(reads__isnull=True).select_related("site", "allocation").order_by("code")
    for case in cases:
        plan: list[tuple[Membership, str, int]] = []
        if trial.design == Design.PAIRED_PARALLEL:
            for arm in (Arm.ASSISTED, Arm.STANDARD):
                in_arm = [m for m in readers if getattr(getattr(m, "allocation", None), "arm", None) == arm]
                local = [m for m in in_arm if m.site_id == case.site_id]
                both_local = local and any(m.site_id == case.site_id for m in readers
                                           if getattr(getattr(m, "allocation", None), "arm", None) != arm)
                pool = local if both_local else in_arm
                if not pool:
                    raise ServiceError(f"No randomized reader in the {arm} arm: cannot route {case.code}.")
                plan.append((_least_loaded(pool, load), arm, 1))
        elif trial.design == Design.CASE_RANDOMIZED:
            allocation = getattr(case, "allocation", None)
            if allocation is None:
                raise ServiceError(f"Case {case.code} has no allocation.")
            local = [m for m in readers if m.site_id == case.site_id] or readers
            if not local:
                raise ServiceError("The trial has no reader.")
            plan.append((_least_loaded(local, load), allocation.arm, 1))
        else:  # crossover
            for reader in readers:
                first = getattr(getattr(reader, "allocation", None), "arm", None)
                if first is None:
                    continue
                second = Arm.STANDARD if first == Arm.ASSISTED else Arm.ASSISTED
                plan += [(reader, first, 1), (reader, second, 2)]
        # The reads of a case are created in random order: nothing about an arm may follow from a read's id.
        keys.system_random.shuffle(plan)
        for reader, arm, period in plan:
            Read.objects.create(trial=trial, case=case, reader=reader, arm=arm, period=period,
                                order_key=keys.new_order_key(),
                                # the second crossover read waits for the first one (see submit_report)
                                available_from=WAITING_FOR_FIRST_READ if period == 2 else None)
            load[reader.pk] += 1
        routed += 1
    if routed:
        audit.record(actor=by, action="reading.routed", obj=trial, payload={"cases": routed})
    return routed


# ------------------------------------------------------------------------------------------ events


def note_delivery(*, read: Read) -> None:
    """When the server first sent a read's case to its reader (the reading page or the read API): the reading clock
    starts there, whatever the client reports later. This is the one write a GET makes in this project (a
    measurement, not a change the user asked for): once per read, only while the read is open and the trial is
    reading, by a conditional UPDATE that a concurrent submit cannot turn into a stamp of a submitted read; nothing
    when it is already stamped (no query)."""
    if read.delivered_at is not None or read.status == ReadStatus.SUBMITTED or read.trial.status != Status.READING:
        return
    now = clock.now()
    if Read.objects.filter(pk=read.pk, delivered_at__isnull=True, trial__status=Status.READING,
                           status__in=(ReadStatus.ASSIGNED, ReadStatus.IN_PROGRESS)).update(delivered_at=now):
        read.delivered_at = now


def _add_event(read: Read, kind: str, tab_id: str, server_time: datetime, client_time: datetime | None = None,
               skew: float | None = None) -> ReadEvent:
    return ReadEvent.objects.create(read=read, kind=kind, tab_id=tab_id[:TAB_ID_LENGTH] or "unknown",
                                    server_time=server_time, client_time=client_time, clock_skew_seconds=skew)


def _require_reading(trial: Trial) -> None:
    if trial.status != Status.READING:
        raise WrongStatus(f"The trial is not in its reading phase (it is {trial.status}); nothing was saved.")


@transaction.atomic
def record_event(*, read_id: int, by, kind: str, tab_id: str, client_time: datetime | None = None) -> ReadEvent:
    if kind not in ReadEvent.Kind.values or kind in (ReadEvent.Kind.SUBMITTED, ReadEvent.Kind.AUTOSAVED):
        raise ServiceError(f"Unknown event “{kind}”.", field="kind")
    read = reading_selectors.locked_own_read(read_id=read_id, user=by)
    if read.status == ReadStatus.SUBMITTED:
        raise AlreadySubmitted("This read is submitted; its time is closed.")
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
    return report


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
    if read.trial.status not in (Status.READING,):
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
    return report


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
