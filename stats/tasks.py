"""Celery tasks of the stats app (queue `default`): thin, idempotent, late-acknowledged."""
from __future__ import annotations

from core.celery import task


@task(bind=True, redeliver_if_worker_dies=True)
def run_analysis(self, run_id: int) -> None:
    """Runs one analysis run; a second delivery finds it done (or running elsewhere) and does nothing."""
    from .services import execute_run

    execute_run(run_id=run_id, task_id=self.request.id or "inline")
