"""Celery tasks of the scoring app: thin and idempotent (building twice makes nothing twice)."""
from __future__ import annotations

import logging

from core.celery import task
from core.errors import ServiceError

logger = logging.getLogger(__name__)


@task()
def build_items(trial_id: int) -> int:
    """Build the scoring items of a trial that has just started scoring. A refusal (too few experts, say) leaves
    the status change standing: the investigator's scoring page says what is missing, and "Build items now"
    retries once it is fixed."""
    from trial.models import Trial

    from . import services

    trial = Trial.objects.get(pk=trial_id)
    try:
        return services.build_items(trial=trial, by=None).total
    except ServiceError as exc:
        logger.warning("Scoring items of %s not built: %s", trial.code, exc.message)
        services.note_build_refused(trial=trial, reason=exc.message)
        return 0


@task()
def build_open_trials() -> int:
    """For celery beat (config.settings.CELERY_BEAT_SCHEDULE): build the items of cases that became ready since (a
    late sign-off, a corrected report), in every trial that is scoring, or reading with scoring already started."""
    from . import services

    return services.build_open_trials()


@task()
def build_case_items(trial_id: int, case_id: int) -> int:
    """A prospective trial's items of one case, as soon as its reports are final (experts' lists grow as reports
    accrue). A refusal is logged; the periodic build_open_trials builds what this left."""
    from trial.models import Trial

    from . import services

    trial = Trial.objects.get(pk=trial_id)
    try:
        return services.build_case_items(trial=trial, case_id=case_id).total
    except ServiceError as exc:
        logger.warning("Scoring items of %s, case %s, not built: %s", trial.code, case_id, exc.message)
        return 0
