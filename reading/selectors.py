"""Reads of the reading app, scoped: a reader sees only their own reads; the draft only in the assisted arm.

A reader's read is found by its id and the asking user together (`Read.reader.user`), so a read that is not the
asker's is simply not found, and every refusal says the same. Whether a read is available is decided in Python
from the rows (`_is_available`, the one definition). Who may see what is decided here, on every call.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Min, Q, QuerySet

from ai import selectors as ai_selectors
from ai.models import AIDraft, DraftStatus, TrialModel
from core import clock, db
from core.clock import iso
from core.errors import Conflict
from trial import lifecycle
from trial.access import Access
from trial.models import Arm, Case, CaseImage, Design, DraftRule, Membership, Role, Trial

from . import events
from .models import (
    CLOSED_READ_STATUSES,
    OPEN_READ_STATUSES,
    Read,
    ReadEvent,
    ReadStatus,
    RecordReport,
    Report,
    ReportDraft,
)

NOT_YOURS = "This case is not on your worklist."
NOT_YET = "This case is not available yet (waiting for its AI draft or the washout)."
_BIGINT = 2**63  # ids are 64-bit: a larger number in a URL is no read (and must not reach the database as one)

# The statuses in which a reader's worklist is shown (before reading starts it is empty).
_WORKLIST_STATUSES = lifecycle.STARTED


def _is_available(*, status: str, arm: str, available_from: datetime | None, draft_ready: bool,
                  now: datetime, without_draft: bool = False) -> bool:
    """A reader may open a read now: one not started yet, not before its washout (crossover) and in the
    assisted arm only once the trial model's draft of the case is ready, or once the trial's draft rule lets it open
    without one (`without_draft`: see _may_read_without_draft). A started read (in progress or submitted) always: it
    was available when it started, and nothing takes that back (a ready draft stays ready, the trial's model is
    fixed once cases are enrolled, a washout is set before its read can start), so the reading steps after the first
    need not ask again. A re-routed read never (its case went to another reader)."""
    if status in CLOSED_READ_STATUSES:
        return False
    if status != ReadStatus.ASSIGNED:
        return True
    if available_from is not None and available_from > now:
        return False
    return arm != Arm.ASSISTED or draft_ready or without_draft


def _may_read_without_draft(*, trial: Trial, arrived_at: datetime | None, draft_failed: bool, now: datetime) -> bool:
    """The trial's draft rule for a draft that failed or is late: "wait" (never without it), or "read_without" once
    the draft failed or the limit since the case's arrival has passed (the read is then an intercurrent event)."""
    if trial.draft_rule != DraftRule.READ_WITHOUT:
        return False
    return draft_failed or (arrived_at is not None and now - arrived_at >= timedelta(minutes=trial.draft_limit_minutes))


def _ready_drafts(*, case: int, trial: int) -> QuerySet[AIDraft]:
    """Ready drafts of a case by its trial's model (ai.TrialModel), by their ids."""
    return AIDraft.objects.filter(case_id=case, model_version__trials__trial_id=trial, status=DraftStatus.READY)


def _ready_draft(read: Read) -> AIDraft | None:
    """The read's ready draft (findings and impression), fetched once per request and kept on the read."""
    if not hasattr(read, "_ready_draft"):
        read._ready_draft = (_ready_drafts(case=read.case_id, trial=read.trial_id)
                             .only("id", "findings", "impression").first())
    return read._ready_draft


def _needs_draft(read: Read) -> bool:
    return read.arm == Arm.ASSISTED and read.status == ReadStatus.ASSIGNED


# Reads closed before their reader submitted them, and what their reader is told.
CLOSED_READS = {
    ReadStatus.REROUTED: ("rerouted", "You were withdrawn from this trial and the case went to another reader. What "
                                      "you typed is kept with your read; nothing else was saved."),
    ReadStatus.CASE_WITHDRAWN: ("case_withdrawn", "This case was withdrawn from the trial and is read no further. "
                                                  "What you typed is kept with your read; nothing else was saved."),
}


def refuse_closed(read: Read) -> None:
    """A read closed before it was submitted says why, before anything else is checked."""
    if read.status in CLOSED_READS:
        code, message = CLOSED_READS[read.status]
        raise Conflict(message, code=code)


def require_available(read: Read) -> None:
    """Refuse a read that its reader may not open yet (see _is_available); the reading services check the row they
    hold locked."""
    refuse_closed(read)
    now = clock.now()
    draft_ready = _ready_draft(read) is not None if _needs_draft(read) else False
    without = (_needs_draft(read) and not draft_ready and _may_read_without_draft(
        trial=read.trial, arrived_at=read.case.arrived_at, now=now,
        draft_failed=AIDraft.objects.filter(case_id=read.case_id, model_version__trials__trial_id=read.trial_id,
                                            status=DraftStatus.FAILED).exists()))
    if not _is_available(status=read.status, arm=read.arm, available_from=read.available_from,
                         draft_ready=draft_ready, now=now, without_draft=without):
        raise PermissionDenied(NOT_YET)


# What the reading steps use of a read's trial and case (about half their columns: less to send and decode).
_TRIAL = ("id", "code", "title", "mode", "status", "design", "findings", "washout_days", "require_signoff",
          "draft_rule", "draft_limit_minutes", "read_window_hours")
_CASE = ("id", "trial", "site", "code", "clinical_history", "display_image", "values_image", "display_width",
         "display_height", "display_windows", "view_position", "arrived_at")
# What the viewer needs of the other images of the case's study (trial.models.CaseImage).
_IMAGE = ("id", "display_image", "values_image", "display_windows", "view_position", "display_width",
          "display_height")


@cache
def _own_read_select(saved: bool, images: bool, lock: str | None, vendor: str) -> db.Select:
    """A reader's own read by id (and the reader's user), with its trial and case, its saved text (LEFT JOIN) if
    asked, and the other images of the case's study if asked (LEFT JOIN: one row per image, in the study's order;
    staged images have no case and so never match); `lock`: None, "update" or "no_key", a row lock of the read only.
    Hand-written: see core.db."""
    parts = [db.Part(Read, "r", db.all_fields(Read)), db.Part(Trial, "t", _TRIAL), db.Part(Case, "c", _CASE)]
    joins = [f"INNER JOIN {db.table(Membership)} m ON m.{db.col(Membership, 'id')} = r.{db.col(Read, 'reader')}",
             f"INNER JOIN {db.table(Trial)} t ON t.{db.col(Trial, 'id')} = r.{db.col(Read, 'trial')}",
             f"INNER JOIN {db.table(Case)} c ON c.{db.col(Case, 'id')} = r.{db.col(Read, 'case')}"]
    if saved:
        parts.append(db.Part(ReportDraft, "d", db.all_fields(ReportDraft)))
        joins.append(f"LEFT OUTER JOIN {db.table(ReportDraft)} d ON d.{db.col(ReportDraft, 'read')} = "
                     f"r.{db.col(Read, 'id')}")
    order = ""
    if images:
        parts.append(db.Part(CaseImage, "i", _IMAGE))
        joins.append(f"LEFT OUTER JOIN {db.table(CaseImage)} i ON i.{db.col(CaseImage, 'case')} = "
                     f"c.{db.col(Case, 'id')}")
        order = f" ORDER BY i.{db.col(CaseImage, 'received_at')}, i.{db.col(CaseImage, 'id')}"  # CaseImage.Meta
    where = (f"WHERE r.{db.col(Read, 'id')} = %s AND m.{db.col(Membership, 'user')} = %s "
             f"AND m.{db.col(Membership, 'role')} = %s")
    return db.Select(parts, f"FROM {db.table(Read)} r {' '.join(joins)} {where}{order}{db.lock_clause('r', lock)}")


def _own(*, read_id: int, user, saved: bool, lock: str | None, images: bool = False) -> Read | None:
    if not (getattr(user, "is_authenticated", False) and 0 < read_id < _BIGINT):
        return None
    rows = _own_read_select(saved, images, lock, db.vendor()).rows([read_id, user.pk, Role.READER.value])
    if not rows:
        return None
    read, trial, case, *rest = rows[0]
    read.trial, read.case = trial, case
    if saved:
        Read.saved.related.set_cached_value(read, rest[0])  # None: no text saved yet
    if images:
        read._study_images = [case, *(row[-1] for row in rows if row[-1] is not None)]
    return read


def study_images(*, read: Read) -> list:
    """The images of the read's case's study in the order they are shown: the primary image (the case itself: the
    frontal film the AI drafts from) first, then the case's other images (trial.models.CaseImage, as received).
    Each has display_image, values_image (may be empty until prepared), display_windows, view_position,
    display_width and display_height. Joined by own_read; asked for here otherwise (one query)."""
    if not hasattr(read, "_study_images"):
        read._study_images = case_images(case=read.case)
    return read._study_images


def case_images(*, case) -> list:
    """The images of a case's study as study_images orders them (the case, its primary image, first); one query."""
    return [case, *CaseImage.objects.filter(case_id=case.pk).only(*_IMAGE)]


def viewer_images(images: list, url) -> list[dict]:
    """The viewer's description of each image (study.js; the API's "images" shape), named by its position in the case
    (1: the primary) and never by its database id (ids are shared by every trial: their order would tell the order
    of arrival across cases). `url(position, kind)` is the image's URL; without a values image yet, the viewer
    windows the display PNG's grey levels."""
    return [{"position": n, "view_position": image.view_position, "display_url": url(n, "display"),
             "values_url": url(n, "values") if image.values_image else None,
             "width": image.display_width, "height": image.display_height, "windows": image.display_windows or {}}
            for n, image in enumerate(images, start=1)]


def primary_image(images: list[dict]) -> dict | None:
    """The primary image of viewer_images as the single-image field `image` has always described it."""
    if not images:
        return None
    return {k: images[0][k] for k in ("display_url", "values_url", "width", "height", "windows")}


def image_file(images: list, *, position: int, kind: str):
    """The "display" or "values" file of the image at `position` (1-based) of `images`; None for any other kind or
    position, or a file not made yet."""
    if not 0 < position <= len(images):
        return None
    image = images[position - 1]
    field = {"display": image.display_image, "values": image.values_image}.get(kind)
    return field if field else None


def own_read(*, read_id: int, user, code: str | None = None) -> Read:
    """The user's own read `read_id` (with its trial, case, saved text and the images of the case's study),
    available to them now; the trial named by the URL (`code`), if any, must be the read's. Anything else is refused
    with the same message."""
    read = _own(read_id=read_id, user=user, saved=True, lock=None, images=True)
    if read is None or (code is not None and read.trial.code != code):
        raise PermissionDenied(NOT_YOURS)
    require_available(read)
    return read


def locked_own_read(*, read_id: int, user, no_key: bool = False) -> Read:
    """The same, under a row lock of the read only (inside the caller's transaction), with its trial and case.
    Availability is checked on the locked row, so nothing changes it before the write commits. The saved text is
    not joined: read it after the lock is granted (`saved_text`)."""
    read = _own(read_id=read_id, user=user, saved=False, lock="no_key" if no_key else "update")
    if read is None:
        raise PermissionDenied(NOT_YOURS)
    require_available(read)
    return read


def saved_text(*, read: Read) -> ReportDraft | None:
    """The read's autosaved text, by its own statement: under a lock it must come after the lock is granted
    (PostgreSQL re-reads only the locked row of a statement that waited for its lock, so a joined text could be
    the one from before the wait, and a stale tab would then overwrite a newer text)."""
    return ReportDraft.objects.filter(read_id=read.pk).first()


# ------------------------------------------------------------------------------------- the worklist


@dataclass(frozen=True)
class WorklistRow:
    id: int
    position: int
    case_code: str
    status: str
    available: bool
    arrived_at: datetime | None = None
    urgent: bool = False


@dataclass(frozen=True)
class Worklist:
    rows: list[WorklistRow]
    done: int
    total: int

    @property
    def resume(self) -> WorklistRow | None:
        return next((r for r in self.rows if r.available and r.status != ReadStatus.SUBMITTED), None)


@cache
def _rows_select(vendor: str) -> db.Values:
    """The reader's reads in their stored order with their case's code and whether the trial model's draft of the
    case is ready (asked only where it decides anything, an assisted read not started yet). Hand-written: see
    core.db."""
    arm, status, case, trial = (f"r.{db.col(Read, name)}" for name in ("arm", "status", "case", "trial"))
    # names from the models' _meta, constants from the code; the one value (the reader) is bound
    def draft_is(state: DraftStatus) -> str:
        return (f"EXISTS (SELECT 1 FROM {db.table(AIDraft)} a INNER JOIN {db.table(TrialModel)} tm "  # noqa: S608
                f"ON tm.{db.col(TrialModel, 'model_version')} = a.{db.col(AIDraft, 'model_version')} "
                f"WHERE a.{db.col(AIDraft, 'case')} = {case} AND tm.{db.col(TrialModel, 'trial')} = {trial} "
                f"AND a.{db.col(AIDraft, 'status')} = '{state.value}')")

    waiting = f"{arm} = '{Arm.ASSISTED.value}' AND {status} = '{ReadStatus.ASSIGNED.value}'"
    ready = f"CASE WHEN {waiting} THEN {draft_is(DraftStatus.READY)} ELSE FALSE END"
    failed = f"CASE WHEN {waiting} THEN {draft_is(DraftStatus.FAILED)} ELSE FALSE END"
    fields = [Read._meta.get_field(n) for n in ("id", "status", "arm", "available_from")]
    case_fields = [Case._meta.get_field(n) for n in ("code", "arrived_at", "urgent")]
    text = (f"SELECT {', '.join(f'r.{db.qn(f.column)}' for f in fields)}, "  # noqa: S608
            f"{', '.join(f'c.{db.qn(f.column)}' for f in case_fields)}, {ready}, {failed} "
            f"FROM {db.table(Read)} r INNER JOIN {db.table(Case)} c ON c.{db.col(Case, 'id')} = {case} "
            f"WHERE r.{db.col(Read, 'reader')} = %s "
            f"AND {status} NOT IN ({', '.join(repr(s.value) for s in CLOSED_READ_STATUSES)}) "
            # urgent cases first where the trial flags urgency (never set otherwise), then the stored order: arrival
            # for a prospective trial, a random order drawn once for a reader study
            f"ORDER BY c.{db.col(Case, 'urgent')} DESC, r.{db.col(Read, 'order_key')}")
    return db.Values(text, [*fields, *case_fields, None, None])


def _rows(*, trial: Trial, reader_id: int) -> list[WorklistRow]:
    """The reader's reads in their stored order, each available or not: one query."""
    now = clock.now()
    return [WorklistRow(read_id, i + 1, case_code, status,
                        _is_available(status=status, arm=arm, available_from=available_from,
                                      draft_ready=bool(ready), now=now,
                                      without_draft=_may_read_without_draft(
                                          trial=trial, arrived_at=arrived_at, draft_failed=bool(failed), now=now)),
                        arrived_at, bool(urgent))
            for i, (read_id, status, arm, available_from, case_code, arrived_at, urgent, ready, failed)
            in enumerate(_rows_select(db.vendor()).rows([reader_id]))]


def worklist(*, access: Access) -> Worklist:
    """The reader's own reads in their stored random order; nothing about other readers."""
    reader = access.membership(Role.READER)
    if access.trial.status not in _WORKLIST_STATUSES:
        return Worklist([], 0, 0)
    rows = _rows(trial=access.trial, reader_id=reader.pk)
    return Worklist(rows, sum(r.status == ReadStatus.SUBMITTED for r in rows), len(rows))


# ------------------------------------------------------------------------------------- the reading screen


def radiograph(*, read_id: int, user, kind: str, position: int = 1):
    """A file of an image of the study of the user's own, available read: "display" (the PNG painted first) or
    "values" (the packed 16-bit values for window/level) of the image at `position` in the study (1: the primary
    image, 2 and on: the others, in study_images' order). None for any other kind or position, or a file not made
    yet. Images are named by their position in the case, never by their database id, which is shared by all trials
    and would tell the order of arrival across cases."""
    read = _own(read_id=read_id, user=user, saved=False, lock=None, images=position != 1)
    if read is None:
        raise PermissionDenied(NOT_YOURS)
    require_available(read)
    images = study_images(read=read) if position != 1 else [read.case]
    return image_file(images, position=position, kind=kind)


def visible_draft(*, read: Read) -> AIDraft | None:
    """The AI draft, for the assisted arm only: the standard arm never receives it, by any route."""
    if read.arm != Arm.ASSISTED:
        return None
    return _ready_draft(read)


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
    rows = _rows(trial=read.trial, reader_id=read.reader_id)
    index = next(i for i, row in enumerate(rows) if row.id == read.pk)
    after = [r.id for r in rows[index + 1:] + rows[:index] if r.available and r.status != ReadStatus.SUBMITTED]
    return Place(index + 1, len(rows), after[0] if after else None)


@dataclass(frozen=True)
class ReadScreen:
    """Everything the reading screen shows of one read (of own_read): the draft only in the assisted arm, every
    image of the case's study (the primary first)."""
    read: Read
    draft: AIDraft | None
    saved: ReportDraft | None
    report: Report | None
    place: Place
    images: list


def read_screen(*, read: Read) -> ReadScreen:
    return ReadScreen(read=read, draft=visible_draft(read=read), saved=getattr(read, "saved", None),
                      report=latest_report(read=read), place=place_of(read=read), images=study_images(read=read))


# ------------------------------------------------------------------------------------- senior sign-off


NO_SIGNOFF = "This trial has no senior sign-off."


def signoff_queue(*, access: Access) -> QuerySet[Report]:
    """Latest versions of submitted reports, not yet signed, never of a case on the senior's own worklist; nothing
    here says which arm a report comes from. Refused in a trial without sign-off."""
    access.require(Role.SENIOR)
    if not access.trial.require_signoff:
        raise PermissionDenied(NO_SIGNOFF)
    return (Report.objects.filter(read__trial=access.trial, signed_at__isnull=True)
            .exclude(read__case__reads__reader__user_id=access.user.pk)
            .select_related("read__case", "read__reader")
            .exclude(read__reports__version__gt=F("version"))  # latest versions only
            .order_by("created_at"))


def report_for_senior(*, access: Access, report_id: int) -> Report:
    report = signoff_queue(access=access).filter(pk=report_id).first() if 0 < report_id < _BIGINT else None
    if report is None:
        raise PermissionDenied("This report is not in your sign-off queue.")
    return report


def signoff_images(*, report: Report) -> list:
    """The images of the study of a report in the senior's queue (from report_for_senior, which is the check), in the
    order they are shown: the primary image (the case itself) first, then the case's other images as received; staged
    images (no case yet) never. One query beyond the report's own."""
    return study_images(read=report.read)


def signoff_image(*, access: Access, report_id: int, position: int, kind: str):
    """A file of an image of the study of a report that the senior may sign now (the sign-off page's own check):
    "display" or "values" of the image at `position` (1: the primary image, then as in signoff_images). None for any
    other kind or position, or a file not made yet; a report not in the senior's queue is refused."""
    report = report_for_senior(access=access, report_id=report_id)
    images = signoff_images(report=report) if position != 1 else [report.read.case]
    return image_file(images, position=position, kind=kind)


# ------------------------------------------------------------------------------------- dashboard


# Reads shorter or longer than these are listed for the investigator to check (a reader who clicked
# through, a screen left open), one by one: never aggregated by arm before unblinding.
OUTLIER_SHORT_SECONDS = 5
OUTLIER_LONG_SECONDS = 30 * 60


def dashboard(*, access: Access) -> dict:
    """Conduct, not outcomes: enrolment by site, backlog, per-reader progress, outliers one by one."""
    access.require(Role.INVESTIGATOR)
    trial = access.trial
    per_reader = (Read.objects.filter(trial=trial).exclude(status__in=CLOSED_READ_STATUSES)
                  .values("reader__pseudonym", "reader__site__code", "reader__on_duty", "reader__withdrawn_at")
                  .annotate(total=Count("id"), done=Count("id", filter=Q(status=ReadStatus.SUBMITTED)),
                            open=Count("id", filter=Q(status__in=OPEN_READ_STATUSES)),
                            started=Count("id", filter=Q(status=ReadStatus.IN_PROGRESS)))
                  .order_by("reader__pseudonym"))
    outliers = (Read.objects.filter(trial=trial, status=ReadStatus.SUBMITTED)
                .filter(Q(active_seconds__lt=OUTLIER_SHORT_SECONDS) | Q(wall_seconds__gt=OUTLIER_LONG_SECONDS))
                .values("reader__pseudonym", "case__code", "active_seconds", "wall_seconds")
                .order_by("reader__pseudonym", "case__code"))
    backlog = Read.objects.filter(trial=trial, status__in=OPEN_READ_STATUSES).count()
    # Apps above this one add their own sections (scoring: the blinding-integrity check of the reports' style)
    sections = [section for _, section in events.conduct_sections.send(sender=__name__, access=access) if section]
    return {
        "enrolment": list(trial.cases.values("site__code").annotate(n=Count("id")).order_by("site__code")),
        "per_reader": list(per_reader),
        "backlog": backlog,
        "outliers": list(outliers),
        "drafts": ai_selectors.draft_progress(access=access),
        "sections": sections,
        "turnaround": turnaround(trial=trial, since=clock.now() - TURNAROUND_WINDOW),
        # cases of a live trial waiting for a reader on duty in one of their arms
        "waiting": waiting_cases(trial).count() if trial.is_prospective else 0,
    }


# The turnaround of a live trial is shown over the cases that arrived lately (what a site's workflow is now).
TURNAROUND_WINDOW = timedelta(days=7)


def _minutes(deltas: list) -> dict:
    values = sorted(d.total_seconds() / 60 for d in deltas if d is not None and d.total_seconds() >= 0)
    if not values:
        return {"n": 0}

    def quantile(q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))]

    return {"n": len(values), "p50": quantile(0.5), "p90": quantile(0.9)}


def turnaround(*, trial: Trial, since: datetime) -> dict:
    """Minutes from arrival to the draft ready, to each report submitted and to each report signed, over the cases
    that arrived since `since` (p50, p90, n). Both arms together: conduct, not a comparison of the arms."""
    cases = {c["id"]: c["arrived_at"] for c in trial.cases.filter(arrived_at__gte=since).values("id", "arrived_at")}
    drafts = (AIDraft.objects.filter(case_id__in=cases, model_version__trials__trial=trial, status=DraftStatus.READY)
              .values_list("case_id", "finished_at"))
    reports = (Report.objects.filter(read__case_id__in=cases, version=1)
               .values_list("read__case_id", "read__submitted_at", "signed_at"))
    first_signed = dict(Report.objects.filter(read__case_id__in=cases, signed_at__isnull=False)
                        .values_list("read_id").annotate(first=Min("signed_at")).values_list("read_id", "first"))
    signed = (Read.objects.filter(case_id__in=cases, pk__in=first_signed).values_list("case_id", "pk"))
    return {
        "since": since,
        "draft": _minutes([finished - cases[case] for case, finished in drafts if finished]),
        "submitted": _minutes([submitted - cases[case] for case, submitted, _ in reports if submitted]),
        "signed": _minutes([first_signed[read] - cases[case] for case, read in signed]),
    }


def waiting_cases(trial: Trial) -> QuerySet[Case]:
    """Cases not withdrawn with fewer live reads than their design needs (a re-routed read is not live), in arrival
    order, urgent first: what routing still has to place. NO PERMISSION CHECK: for the routing service and the
    investigator's dashboard (which counts them)."""
    live = Count("reads", filter=~Q(reads__status=ReadStatus.REROUTED))
    cases = trial.cases.filter(withdrawn_at__isnull=True).annotate(live=live)
    if trial.design == Design.CROSSOVER:
        cases = cases.filter(live=0)
    else:
        cases = cases.filter(live__lt=1 if trial.design == Design.CASE_RANDOMIZED else 2)
    return cases.order_by("-urgent", "arrival_index", "code")


# ------------------------------------------------------------------------------------- rows for analyses (no user)


def analysis_rows(trial: Trial) -> dict[str, list[dict]]:
    """The reading app's part of the analysis dataset: reads (with server-measured times), their events, every
    report version and the final reports' finding calls; pseudonyms only, real arm names. NO PERMISSION CHECK: for
    stats.selectors.dataset_rows, after its own checks (role, lock, masking)."""
    rows: dict[str, list[dict]] = {}
    rows["reads"] = [
        {"read": r["id"], "case": r["case__code"], "reader": r["reader__pseudonym"],
         "reader_site": r["reader__site__code"], "arm": r["arm"], "period": r["period"], "status": r["status"],
         "delivered_at": iso(r["delivered_at"]), "opened_at": iso(r["opened_at"]),
         "submitted_at": iso(r["submitted_at"]),
         "wall_seconds": r["wall_seconds"], "active_seconds": r["active_seconds"]}
        for r in Read.objects.filter(trial=trial).values(
            "id", "case__code", "reader__pseudonym", "reader__site__code", "arm", "period", "status",
            "delivered_at", "opened_at", "submitted_at", "wall_seconds", "active_seconds")]
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
            "report": r["id"], "read": r["read_id"], "case": r["read__case__code"],
            "reader": r["read__reader__pseudonym"],
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


# ------------------------------------------------------------------------------------- the report of record


@dataclass(frozen=True)
class ReportOfRecord:
    """The one report of a case that may leave the platform, as the trial's release policy names it."""

    source: str            # "standard", "assisted" or "senior"
    findings: str
    impression: str
    signed_at: datetime
    signed_by_id: int


def report_of_record(*, case: Case) -> ReportOfRecord | None:
    """The case's clinical report of record by its trial's release policy, once signed; None for a research-only
    trial, a withdrawn case, or while it is not signed. NO PERMISSION CHECK: for the outbound wire to the hospital
    (after its own checks); nothing else of a trial ever leaves the platform."""
    from trial.models import ReleasePolicy

    policy = case.trial.release_policy
    if policy == ReleasePolicy.RESEARCH_ONLY or case.withdrawn_at is not None:
        return None
    if policy == ReleasePolicy.SENIOR:
        record = RecordReport.objects.filter(case=case).first()
        return None if record is None else ReportOfRecord("senior", record.findings, record.impression,
                                                          record.signed_at, record.author_id)
    report = (Report.objects.filter(read__case=case, read__arm=policy)
              .exclude(read__status__in=CLOSED_READ_STATUSES)
              .order_by("-version").first())
    if report is None or report.signed_at is None:
        return None
    return ReportOfRecord(policy, report.findings, report.impression, report.signed_at, report.signed_by_id)


def record_queue(*, access: Access) -> list[dict]:
    """Cases whose report of record a senior writes (release policy "senior"), with both reports signed and no
    report of record yet, never a case on the senior's own worklist. The two reports are shown as "1" and "2" in
    an order drawn per case, never by arm."""
    access.require(Role.SENIOR)
    from trial.models import ReleasePolicy

    if access.trial.release_policy != ReleasePolicy.SENIOR:
        return []
    reports = (Report.objects.filter(read__trial=access.trial, signed_at__isnull=False, read__case__withdrawn_at=None,
                                     read__case__record_report__isnull=True)
               .exclude(read__status__in=CLOSED_READ_STATUSES)
               .exclude(read__case__reads__reader__user_id=access.user.pk)
               .exclude(read__reports__version__gt=F("version"))
               .select_related("read__case").order_by("read__case__arrival_index", "read__case__code"))
    by_case: dict[int, list[Report]] = defaultdict(list)
    for report in reports:
        by_case[report.read.case_id].append(report)
    out = []
    for case_id, pair in by_case.items():
        if len(pair) != 2:
            continue
        pair.sort(key=lambda r: hashlib.sha256(f"{case_id}/{r.pk}".encode()).hexdigest())
        out.append({"case": pair[0].read.case, "reports": [
            {"label": str(i + 1), "findings": r.findings, "impression": r.impression} for i, r in enumerate(pair)]})
    return out


def record_item(*, access: Access, case_code: str) -> dict:
    """The record_queue item of one case (its two signed reports as 1 and 2): the check of the page on which the
    senior writes its report of record, and of that page's images."""
    item = next((item for item in record_queue(access=access) if item["case"].code == case_code), None)
    if item is None:
        raise PermissionDenied("This case has no report of record for you to write.")
    return item


def record_image(*, access: Access, case_code: str, position: int, kind: str):
    """A file of an image of the study of a case whose report of record the senior may write now (record_item's
    check), by its position in the case as case_images orders them; None for an unknown position or kind."""
    case = record_item(access=access, case_code=case_code)["case"]
    images = case_images(case=case) if position != 1 else [case]
    return image_file(images, position=position, kind=kind)
