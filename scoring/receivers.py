"""What the scoring app does when the trial app announces an event (connected in ScoringConfig.ready)."""
from __future__ import annotations

from trial.models import Status

from .tasks import build_case_items as build_case_items_task
from .tasks import build_items as build_items_task


def build_when_scoring_starts(sender, *, trial_id: int, status: str, **kwargs) -> None:
    if status == Status.SCORING:
        build_items_task.delay(trial_id)


def build_when_reports_final(sender, *, trial_id: int, case_id: int, **kwargs) -> None:
    """A prospective trial scores as reports accrue: the case's items are built once both its reports are final.
    (A reader study builds when an investigator starts scoring, and then periodically.)"""
    from trial.models import Mode, Trial

    if Trial.objects.filter(pk=trial_id, mode=Mode.PROSPECTIVE).exists():
        build_case_items_task.delay(trial_id, case_id)


def backlog_section(sender, *, access, **kwargs) -> dict:
    """The scoring app's backlog on the investigator's conduct page (completion counts only)."""
    from .selectors import backlog_section

    return backlog_section(access=access)


def conduct_section(sender, *, access, **kwargs) -> dict:
    """The scoring app's section of the investigator's conduct page: the blinding-integrity check of the style."""
    from .selectors import conduct_section

    return conduct_section(access=access)
