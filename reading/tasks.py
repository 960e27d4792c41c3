"""Celery tasks of the reading app: thin and idempotent."""
from __future__ import annotations

from core.celery import task


@task()
def route_trial(trial_id: int) -> int:
    """Put every enrolled, unrouted case of the trial on worklists (idempotent: routed cases are left alone)."""
    from trial.models import Trial

    from .services import route_trial

    trial = Trial.objects.filter(pk=trial_id).first()
    return route_trial(trial=trial) if trial is not None else 0
