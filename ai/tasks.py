"""Celery tasks of the ai app (queue `ai`): thin, idempotent, late-acknowledged."""
from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded

from core.celery import AI_QUEUE, task

from .backends import TransientModelError

# Long enough for a 512-token report on a CPU; a GPU needs seconds.
SOFT_TIME_LIMIT = 15 * 60
MAX_RETRIES = 5


@task(queue=AI_QUEUE, bind=True, retry_on=(TransientModelError,), max_retries=MAX_RETRIES,
      redeliver_if_worker_dies=True, soft_time_limit=SOFT_TIME_LIMIT, time_limit=SOFT_TIME_LIMIT + 60)
def generate_draft(self, draft_id: int) -> None:
    from .services import generate_draft, mark_failed

    task_id = self.request.id or "inline"
    try:
        generate_draft(draft_id=draft_id, task_id=task_id)
    except SoftTimeLimitExceeded:
        mark_failed(draft_id=draft_id, task_id=task_id,
                    reason=f"The model took longer than {SOFT_TIME_LIMIT // 60} minutes.")
    except TransientModelError as exc:
        if self.request.retries >= MAX_RETRIES:
            mark_failed(draft_id=draft_id, task_id=task_id, reason=f"Gave up after {MAX_RETRIES + 1} attempts: {exc}")
            return
        raise


@task(queue=AI_QUEUE, bind=True, retry_on=(TransientModelError,), max_retries=MAX_RETRIES,
      redeliver_if_worker_dies=True, soft_time_limit=SOFT_TIME_LIMIT, time_limit=SOFT_TIME_LIMIT + 60)
def redraft(self, draft_id: int) -> None:
    """A ready draft made again from the study's later image (services.redraft). Giving up keeps the ready draft."""
    from .services import redraft as make_again

    try:
        make_again(draft_id=draft_id)
    except SoftTimeLimitExceeded:
        return
    except TransientModelError:
        if self.request.retries >= MAX_RETRIES:
            return
        raise


@task()
def requeue_pending() -> int:
    """For celery beat: drafts whose task was lost (the broker was down when they were requested) are sent again."""
    from .services import requeue_pending

    return requeue_pending()
