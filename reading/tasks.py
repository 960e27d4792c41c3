"""Celery tasks of the reading app: thin and idempotent."""
from celery import shared_task

from . import services


@shared_task(name="reading.tasks.trial_status_changed", acks_late=True)
def trial_status_changed(trial_id: int, status: str) -> None:
    """Sent by trial when a trial changes status (by name: trial does not import reading)."""
    from trial.models import Status, Trial

    if status == Status.READING:
        services.route_trial(trial=Trial.objects.get(pk=trial_id))
