"""Celery tasks of the ai app (queue `ai`): thin, idempotent, late-acknowledged."""
from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from . import backends, services

# Long enough for a 512-token report on a CPU; a GPU needs seconds.
SOFT_TIME_LIMIT = 15 * 60
MAX_RETRIES = 5


@shared_task(name="ai.tasks.draft_case", acks_late=True)
def draft_case(case_id: int) -> None:
    """Sent by trial on enrolment (by name: trial does not import ai)."""
    from trial.models import Case

    case = Case.objects.filter(pk=case_id).first()
    if case is not None:
        services.request_draft(case=case)


@shared_task(bind=True, name="ai.tasks.generate_draft", acks_late=True, reject_on_worker_lost=True,
             soft_time_limit=SOFT_TIME_LIMIT, time_limit=SOFT_TIME_LIMIT + 60,
             autoretry_for=(backends.TransientModelError,), retry_backoff=True, retry_backoff_max=300,
             retry_jitter=True, max_retries=MAX_RETRIES)
def generate_draft(self, draft_id: int) -> None:
    try:
        services.generate_draft(draft_id=draft_id, task_id=self.request.id or "inline")
    except SoftTimeLimitExceeded:
        services.mark_failed(draft_id=draft_id, task_id=self.request.id or "inline",
                             reason=f"The model took longer than {SOFT_TIME_LIMIT // 60} minutes.")
    except backends.TransientModelError as exc:
        if self.request.retries >= MAX_RETRIES:
            services.mark_failed(draft_id=draft_id, task_id=self.request.id or "inline",
                                 reason=f"Gave up after {MAX_RETRIES + 1} attempts: {exc}")
            return
        raise
