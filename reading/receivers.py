"""What the reading app does when the trial app announces an event (connected in ReadingConfig.ready)."""
from __future__ import annotations

from trial.models import Status

from .tasks import route_trial as route_trial_task


def route_when_reading_starts(sender, *, trial_id: int, status: str, **kwargs) -> None:
    if status == Status.READING:
        route_trial_task.delay(trial_id)


def route_on_arrival(sender, *, case_id: int, **kwargs) -> None:
    """A prospective trial's case goes to its readers at once, in the arriving request's process (a small write
    under its site's lock; the periodic route_open_trials catches a case this leaves waiting)."""
    from .services import route_arrival

    route_arrival(case_id=case_id)


def route_when_readers_change(sender, *, trial_id: int, **kwargs) -> None:
    from trial.models import Trial

    from .services import route_trial

    trial = Trial.objects.filter(pk=trial_id).first()
    if trial is not None:
        route_trial(trial=trial)
