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


@task()
def route_open_trials() -> int:
    """For celery beat: cases of prospective trials still waiting for a reader (a receiver that failed, a roster
    that changed) are routed; the number of cases given a read."""
    from trial import lifecycle
    from trial.models import Mode, Trial

    from .services import route_trial

    statuses = lifecycle.statuses_allowing(lifecycle.READ)
    return sum(route_trial(trial=trial) for trial in Trial.objects.filter(mode=Mode.PROSPECTIVE, status__in=statuses))

