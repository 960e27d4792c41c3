"""Reads of the reading app, scoped: a reader sees only their own reads; the draft only in the assisted arm."""
from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from ai import selectors as ai_selectors
from ai.models import AIDraft, DraftStatus
from trial.models import Arm, Role, Status, Trial
from trial.selectors import require_role

from .models import Read, ReadStatus, Report, ReportDraft

NOT_YOURS = "This case is not on your worklist."


def _reader_membership(*, trial: Trial, user):
    require_role(trial=trial, user=user, roles=[Role.READER])
    return trial.memberships.get(user=user, role=Role.READER)


def _available_q(trial: Trial) -> Q:
    """Reads a reader may open now: assisted ones only once the draft is ready; crossover after washout."""
    model = ai_selectors.trial_model(trial=trial)
    ready_cases = AIDraft.objects.filter(model_version=model, status=DraftStatus.READY).values("case_id") \
        if model else AIDraft.objects.none().values("case_id")
    draft_ok = Q(arm=Arm.STANDARD) | Q(case_id__in=ready_cases) if model else Q(arm=Arm.STANDARD)
    washout_ok = Q(available_from__isnull=True) | Q(available_from__lte=timezone.now())
    return (draft_ok & washout_ok) | Q(status=ReadStatus.SUBMITTED)


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


def worklist(*, trial: Trial, reader_user) -> Worklist:
    """The reader's own reads in their stored random order; nothing about other readers. Two queries."""
    membership = _reader_membership(trial=trial, user=reader_user)
    if trial.status not in (Status.READING, Status.SCORING, Status.LOCKED, Status.UNBLINDED):
        return Worklist([], 0, 0)
    reads = (Read.objects.filter(reader=membership).order_by("order_key")
             .annotate(is_available=Count("pk", filter=_available_q(trial)))
             .values("id", "status", "case__code", "is_available"))
    rows = [WorklistRow(r["id"], i + 1, r["case__code"], r["status"], bool(r["is_available"]))
            for i, r in enumerate(reads)]
    return Worklist(rows, sum(r.status == ReadStatus.SUBMITTED for r in rows), len(rows))


def read_for_reader(*, read_id: int, reader_user, trial: Trial | None = None) -> Read:
    """The reader's own, available read; anything else is refused with the same message."""
    read = (Read.objects.select_related("trial", "case", "reader").filter(pk=read_id).first())
    if read is None or read.reader.user_id != reader_user.pk or read.reader.role != Role.READER \
            or (trial is not None and read.trial_id != trial.pk):
        raise PermissionDenied(NOT_YOURS)
    if not Read.objects.filter(pk=read.pk).filter(_available_q(read.trial)).exists():
        raise PermissionDenied("This case is not available yet (waiting for its AI draft or the washout).")
    return read


def visible_draft(*, read: Read) -> AIDraft | None:
    """The AI draft, for the assisted arm only: the standard arm never receives it, by any route."""
    if read.arm != Arm.ASSISTED:
        return None
    return ai_selectors.ready_draft_of_case(case=read.case)


def saved_text(*, read: Read) -> ReportDraft | None:
    return ReportDraft.objects.filter(read=read).first()


def latest_report(*, read: Read) -> Report | None:
    return read.reports.order_by("-version").first()


def next_read(*, read: Read) -> Read | None:
    """The next unfinished, available read on the same worklist, after this one in the stored order."""
    candidates = (Read.objects.filter(reader=read.reader).exclude(pk=read.pk)
                  .exclude(status=ReadStatus.SUBMITTED).filter(_available_q(read.trial)).order_by("order_key"))
    return candidates.filter(order_key__gt=read.order_key).first() or candidates.first()


def position_of(*, read: Read) -> tuple[int, int]:
    reads = Read.objects.filter(reader=read.reader)
    return reads.filter(order_key__lt=read.order_key).count() + 1, reads.count()


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
