"""Celery tasks of the stats app (queue `default`): thin, idempotent, late-acknowledged."""
from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(bind=True, name="stats.tasks.run_analysis", acks_late=True, reject_on_worker_lost=True)
def run_analysis(self, run_id: int) -> None:
    """Runs one analysis run; a second delivery finds it done (or running elsewhere) and does nothing."""
    services.execute_run(run_id=run_id, task_id=self.request.id or "inline")
