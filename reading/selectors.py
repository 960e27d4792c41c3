"""Reads of the reading app, scoped: a reader sees only their own reads; the draft only in the assisted arm.

Every reading step is on a radiologist's critical path (and a server's CPU is what limits how many read at
once), so the steps' queries are few, plain and written out once (reading.queries): a read with its trial,
case and saved text, the reader's reads in order with whether their drafts are ready. Whether a read is
available is decided in Python from those rows (`_is_available`, the one definition). Who may see what is
decided here, on every call.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from ai import selectors as ai_selectors
from ai.models import AIDraft
from core.clock import iso
from trial.models import Arm, Membership, Role, Status, Trial
from trial.selectors import NO_ACCESS, require_role

from . import queries
from .models import Read, ReadEvent, ReadStatus, Report, ReportDraft

NOT_YOURS = "This case is not on your worklist."
NOT_YET = "This case is not available yet (waiting for its AI draft or the washout)."


def _first(queryset):
    """The row of a queryset filtered down to at most one: LIMIT 1 and no ORDER BY (a default ordering may
    join another table)."""
    rows = list(queryset.order_by()[:1])
    return rows[0] if rows else None


def _is_available(*, status: str, arm: str, available_from: datetime | None, draft_ready: bool,
                  now: datetime) -> bool:
    """A reader may open a read now: one not started yet, not before its washout (crossover) and in the
    assisted arm only once the trial model's draft of the case is ready. A started read (in progress or
    submitted) always: it was available when it started, and nothing takes that back (a ready draft stays
    ready, the trial's model is fixed once cases are enrolled, a washout is set before its read can start),
    so the reading steps after the first need not ask again."""
    if status != ReadStatus.ASSIGNED:
        return True
    if available_from is not None and available_from > now:
        return False
    return arm != Arm.ASSISTED or draft_ready


_DRAFT = "_reading_draft"  # the read's ready draft, once fetched in this request (None: none ready)


def _ready_draft(read: Read) -> AIDraft | None:
    if _DRAFT not in read.__dict__:
        read.__dict__[_DRAFT] = queries.ready_draft(case_id=read.case_id, trial_id=read.trial_id)
    return read.__dict__[_DRAFT]


def _needs_draft(read: Read) -> bool:
    return read.arm == Arm.ASSISTED and read.status == ReadStatus.ASSIGNED


def reader_of(*, user, code: str | None = None, trial: Trial | None = None) -> Membership:
    """The user's reader membership of the trial (`trial`, or by `code` with its trial loaded in the same
    query); the refusal of trial.selectors.trial_for_user whether the trial does not exist or the user is not
    one of its readers."""
    membership = None
    if getattr(user, "is_authenticated", False):
        if trial is not None:
            membership = _first(Membership.objects.filter(user_id=user.pk, role=Role.READER, trial=trial))
        else:
            membership = queries.reader_membership(code=code, user_id=user.pk)
    if membership is None:
        raise PermissionDenied(NO_ACCESS)
    if trial is not None:
        membership.trial = trial
    return membership


@dataclass(frozen=True)
class WorklistRow:
    id: int
    position: int
    case_code: str
    status: str
    available: bool


@dataclass(frozen=True)
class Worklist:
    rows: list[WorklistRow]
    done: int
    total: int

    @property
    def resume(self) -> WorklistRow | None:
        return next((r for r in self.rows if r.available and r.status != ReadStatus.SUBMITTED), None)


def _rows(*, reader_id: int) -> list[WorklistRow]:
    """The reader's reads in their stored order, each available or not: one query (reading.queries)."""
    now = timezone.now()
    return [WorklistRow(row.id, i + 1, row.case_code, row.status,
                        _is_available(status=row.status, arm=row.arm, available_from=row.available_from,
                                      draft_ready=row.draft_ready, now=now))
            for i, row in enumerate(queries.reader_rows(reader_id=reader_id))]


def worklist(*, trial: Trial | None = None, reader_user=None, reader: Membership | None = None) -> Worklist:
    """The reader's own reads in their stored random order; nothing about other readers. `reader`: the
    membership from `reader_of` (else the trial and the user)."""
    if reader is None:
        reader = reader_of(trial=trial, user=reader_user)
    if reader.role != Role.READER:
        raise PermissionDenied(NO_ACCESS)
    if reader.trial.status not in (Status.READING, Status.SCORING, Status.LOCKED, Status.UNBLINDED):
        return Worklist([], 0, 0)
    rows = _rows(reader_id=reader.pk)
    return Worklist(rows, sum(r.status == ReadStatus.SUBMITTED for r in rows), len(rows))


def _own_available(*, read_id: int, reader_user, trial: Trial | None, code: str | None, case: bool,
                   saved: bool = False) -> Read:
    read = queries.own_read(read_id=read_id, user_id=reader_user.pk, case=case, saved=saved) \
        if getattr(reader_user, "is_authenticated", False) else None
    wrong_trial = read is not None and ((trial is not None and read.trial_id != trial.pk)
                                        or (code is not None and read.trial.code != code))
    if read is None or wrong_trial:
        if code is not None:
            reader_of(code=code, user=reader_user)  # not a reader of that trial at all: say only that
        raise PermissionDenied(NOT_YOURS)
    require_available(read)
    return read


def require_available(read: Read) -> None:
    """Refuse a read that its reader may not open yet (see _is_available); `read` as its caller loaded it (the
    reading services check the row they hold locked)."""
    draft_ready = _ready_draft(read) is not None if _needs_draft(read) else False
    if not _is_available(status=read.status, arm=read.arm, available_from=read.available_from,
                         draft_ready=draft_ready, now=timezone.now()):
        raise PermissionDenied(NOT_YET)


def read_for_reader(*, read_id: int, reader_user, trial: Trial | None = None, code: str | None = None) -> Read:
    """The reader's own, available read, with its trial, its case and its saved text; anything else is refused
    with the same message. `trial` or `code`: the trial named by the URL, if any. One query (two in the assisted
    arm before the read starts)."""
    return _own_available(read_id=read_id, reader_user=reader_user, trial=trial, code=code, case=True, saved=True)


def radiograph_for_reader(*, read_id: int, reader_user, kind: str):
    """The file of the radiograph of the reader's own, available read: "display" (the PNG painted first) or
    "values" (the packed 16-bit values for window/level); None for any other kind, or a missing file."""
    read = _own_available(read_id=read_id, reader_user=reader_user, trial=None, code=None, case=True)
    field = {"display": read.case.display_image, "values": read.case.values_image}.get(kind)
    return field if field else None


def visible_draft(*, read: Read) -> AIDraft | None:
    """The AI draft, for the assisted arm only: the standard arm never receives it, by any route."""
    if read.arm != Arm.ASSISTED:
        return None
    return _ready_draft(read)


def saved_text(*, read: Read) -> ReportDraft | None:
    if Read.saved.related.is_cached(read):  # loaded with the read (read_for_reader)
        return Read.saved.related.get_cached_value(read)
    return queries.saved_text(read_id=read.pk)


def latest_report(*, read: Read) -> Report | None:
    if read.status != ReadStatus.SUBMITTED:
        return None  # a report exists only once the read is submitted (submit_report sets both at once)
    return read.reports.order_by("-version").first()


@dataclass(frozen=True)
class Place:
    """Where a read stands on its worklist: n of N, and the next unfinished, available read after it."""
    position: int
    total: int
    next_id: int | None


def place_of(*, read: Read) -> Place:
    """From the reader's reads in order (the worklist's rows)."""
    rows = _rows(reader_id=read.reader_id)
    index = next(i for i, row in enumerate(rows) if row.id == read.pk)
    after = [r.id for r in rows[index + 1:] + rows[:index] if r.available and r.status != ReadStatus.SUBMITTED]
    return Place(index + 1, len(rows), after[0] if after else None)


@dataclass(frozen=True)
class ReadScreen:
    """Everything the reading screen shows of one read (of read_for_reader): the draft only in the assisted arm."""
    read: Read
    draft: AIDraft | None
    saved: ReportDraft | None
    report: Report | None
    place: Place


def read_screen(*, read: Read) -> ReadScreen:
    return ReadScreen(read=read, draft=visible_draft(read=read), saved=saved_text(read=read),
                      report=latest_report(read=read), place=place_of(read=read))


# ------------------------------------------------------------------------------------- senior sign-off


def signoff_queue(*, trial: Trial, user) -> QuerySet[Report]:
    """Latest versions of submitted reports of both arms, not yet signed, not the senior's own."""
    require_role(trial=trial, user=user, roles=[Role.SENIOR])
    return (Report.objects.filter(read__trial=trial, signed_at__isnull=True)
            .exclude(read__reader__user=user)
            .select_related("read__case", "read__reader")
            .exclude(read__reports__version__gt=F("version"))  # latest versions only
            .order_by("created_at"))


def report_for_senior(*, trial: Trial, report_id: int, user) -> Report:
    report = signoff_queue(trial=trial, user=user).filter(pk=report_id).first()
    if report is None:
        raise PermissionDenied("This report is not in your sign-off queue.")
    return report


# ------------------------------------------------------------------------------------- dashboard


# Reads shorter or longer than these are listed for the investigator to check (a reader who clicked
# through, a screen left open), one by one: never aggregated by arm before unblinding.
OUTLIER_SHORT_SECONDS = 5
OUTLIER_LONG_SECONDS = 30 * 60


def dashboard(*, trial: Trial, user) -> dict:
    """Conduct, not outcomes: enrolment by site, arm balance of allocations, backlog, per-reader progress."""
    require_role(trial=trial, user=user, roles=[Role.INVESTIGATOR])
    per_reader = (Read.objects.filter(trial=trial).values("reader__pseudonym", "reader__site__code")
                  .annotate(total=Count("id"), done=Count("id", filter=Q(status=ReadStatus.SUBMITTED)),
                            open=Count("id", filter=Q(status=ReadStatus.IN_PROGRESS)))
                  .order_by("reader__pseudonym"))
    outliers = (Read.objects.filter(trial=trial, status=ReadStatus.SUBMITTED)
                .filter(Q(active_seconds__lt=OUTLIER_SHORT_SECONDS) | Q(wall_seconds__gt=OUTLIER_LONG_SECONDS))
                .values("reader__pseudonym", "case__code", "active_seconds", "wall_seconds")
                .order_by("reader__pseudonym", "case__code"))
    backlog = Read.objects.filter(trial=trial).exclude(status=ReadStatus.SUBMITTED).count()
    return {
        "enrolment": list(trial.cases.values("site__code").annotate(n=Count("id")).order_by("site__code")),
        "per_reader": list(per_reader),
        "backlog": backlog,
        "outliers": list(outliers),
        "drafts": ai_selectors.draft_progress(trial=trial, user=user),
    }


# ------------------------------------------------------------------------------------- rows for analyses (no user)


def analysis_rows(trial: Trial) -> dict[str, list[dict]]:
    """The reading app's part of the analysis dataset: reads (with server-measured times), their events, every
    report version and the final reports' finding calls; pseudonyms only, real arm names. NO PERMISSION CHECK: for
    stats.selectors.dataset_rows, after its own checks (role, lock, masking)."""
    rows: dict[str, list[dict]] = {}
    rows["reads"] = [
        {"read": r["id"], "case": r["case__code"], "reader": r["reader__pseudonym"],
         "reader_site": r["reader__site__code"], "arm": r["arm"], "period": r["period"], "status": r["status"],
         "opened_at": iso(r["opened_at"]), "submitted_at": iso(r["submitted_at"]),
         "wall_seconds": r["wall_seconds"], "active_seconds": r["active_seconds"]}
        for r in Read.objects.filter(trial=trial).values(
            "id", "case__code", "reader__pseudonym", "reader__site__code", "arm", "period", "status", "opened_at",
            "submitted_at", "wall_seconds", "active_seconds")]
    events, seq = [], defaultdict(int)
    for read_id, kind, server_time, tab, skew in (
            ReadEvent.objects.filter(read__trial=trial).order_by("read_id", "server_time", "id")
            .values_list("read_id", "kind", "server_time", "tab_id", "clock_skew_seconds")):
        seq[read_id] += 1
        events.append({"read": read_id, "seq": seq[read_id], "kind": kind, "server_time": iso(server_time),
                       "tab": tab, "clock_skew_seconds": skew})
    rows["reading_events"] = events
    reports = list(Report.objects.filter(read__trial=trial).values(
        "id", "read_id", "read__case__code", "read__reader__pseudonym", "read__arm", "version", "created_at",
        "signed_at", "findings", "impression", "reason", "draft_kept_share", "draft_edit_distance", "finding_flags"))
    latest: dict[int, int] = {}
    for r in reports:
        latest[r["read_id"]] = max(latest.get(r["read_id"], 0), r["version"])
    rows["reports"], rows["reader_calls"] = [], []
    for r in reports:
        final = r["version"] == latest[r["read_id"]]
        rows["reports"].append({
            "report": r["id"], "read": r["read_id"], "case": r["read__case__code"], "reader": r["read__reader__pseudonym"],
            "arm": r["read__arm"], "version": r["version"], "final": int(final), "created_at": iso(r["created_at"]),
            "signed": int(r["signed_at"] is not None), "signed_at": iso(r["signed_at"]), "findings": r["findings"],
            "impression": r["impression"], "reason": r["reason"], "draft_kept_share": r["draft_kept_share"],
            "draft_edit_distance": r["draft_edit_distance"]})
        if final:
            for finding in trial.findings:
                rows["reader_calls"].append({
                    "read": r["read_id"], "case": r["read__case__code"], "reader": r["read__reader__pseudonym"],
                    "arm": r["read__arm"], "finding": finding,
                    "call": int(bool((r["finding_flags"] or {}).get(finding)))})
    return rows


def final_reports(*, trial: Trial) -> list[dict]:
    """The latest version of every submitted read's report: case, arm, findings, impression (ordered by case, arm
    and read). NO PERMISSION CHECK: for the retrospective evaluation, after its own checks (unblinded, analysts)."""
    final: dict[int, tuple] = {}
    for row in (Report.objects.filter(read__trial=trial, read__submitted_at__isnull=False)
                .values_list("read_id", "version", "read__case__code", "read__arm", "findings", "impression")):
        if row[0] not in final or row[1] > final[row[0]][1]:
            final[row[0]] = row
    return [{"read": read_id, "case": code, "arm": arm, "findings": findings, "impression": impression}
            for read_id, _, code, arm, findings, impression in sorted(final.values(), key=lambda r: (r[2], r[3], r[0]))]
