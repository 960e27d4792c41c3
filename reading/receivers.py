"""What the reading app does when the trial app announces an event (connected in ReadingConfig.ready)."""
from __future__ import annotations

from trial.models import Status

from .tasks import route_trial as route_trial_task


def route_when_reading_starts(sender, *, trial_id: int, status: str, **kwargs) -> None:
    if status == Status.READING:
        route_trial_task.delay(trial_id)
