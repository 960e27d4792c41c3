"""Celery tasks of the scoring app: thin and idempotent (building twice makes nothing twice)."""
from __future__ import annotations

import logging

from celery import shared_task

from trial.errors import ServiceError

from . import services

logger = logging.getLogger(__name__)


@shared_task(name="scoring.tasks.trial_status_changed", acks_late=True)
def trial_status_changed(trial_id: int, status: str) -> None:
    """Sent by trial when a trial changes status (by name: trial does not import scoring)."""
    from trial.models import Status, Trial

    if status != Status.SCORING:
        return
    trial = Trial.objects.get(pk=trial_id)
    try:
        services.build_items(trial=trial, by=None)
    except ServiceError as exc:
        # The status change stands; the investigator's scoring page says what is missing, and
        # "Build items now" retries once it is fixed.
        logger.warning("Scoring items of %s not built: %s", trial.code, exc.message)
        services.note_build_refused(trial=trial, reason=exc.message)


@shared_task(name="scoring.tasks.build_open_trials", acks_late=True)
def build_open_trials() -> int:
    """For celery beat: build the items of cases that became ready since (a late sign-off, a corrected
    report), in every trial that is scoring, or reading with scoring already started."""
    from django.db.models import Q

    from trial.models import Status, Trial

    built = 0
    trials = Trial.objects.filter(Q(status=Status.SCORING)
                                  | Q(status=Status.READING, scoring_items__isnull=False)).distinct()
    for trial in trials:
        try:
            built += services.build_items(trial=trial, by=None).total
        except ServiceError as exc:
            logger.warning("Scoring items of %s not built: %s", trial.code, exc.message)
    return built
