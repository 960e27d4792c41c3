"""The project's one task decorator: every task is late-acknowledged, re-delivered when its worker dies, routed to a
named queue, and (when asked) retried with backoff. Tasks are thin and idempotent: they import their service inside
the body, so services can import tasks at module level (the `_task` suffix) without a cycle."""
from __future__ import annotations

from collections.abc import Callable

from celery import shared_task  # the one place it is used (ruff bans it elsewhere)

DEFAULT_QUEUE = "default"  # CPU work: routing, scoring items, analyses, images
AI_QUEUE = "ai"            # the model: a GPU worker (or a CPU one) with concurrency 1 per device

# task name → queue, filled by @task; Celery asks route_task (settings.CELERY_TASK_ROUTES) where to send each one
# (Celery 5 deprecates the task's own `queue` attribute in favour of routes).
_QUEUES: dict[str, str] = {}


def route_task(name, args, kwargs, options, task=None, **kw) -> dict | None:
    queue = _QUEUES.get(name)
    return {"queue": queue} if queue else None


def task(*, queue: str = DEFAULT_QUEUE, retry_on: tuple[type[BaseException], ...] = (), max_retries: int = 3,
         bind: bool = False, **options) -> Callable:
    """`@task(queue="ai", retry_on=(TransientModelError,))`. The task's name is its module path and function name
    (what Celery would give it), stated so that a rename is a visible change of the message format."""
    def decorate(fn: Callable) -> Callable:
        name = f"{fn.__module__}.{fn.__name__}"
        _QUEUES[name] = queue
        settings = {"name": name, "acks_late": True, "reject_on_worker_lost": True}
        if retry_on:
            settings.update(autoretry_for=tuple(retry_on), retry_backoff=True, retry_backoff_max=300,
                            retry_jitter=True, max_retries=max_retries)
        settings.update(options)
        return shared_task(bind=bind, **settings)(fn)
    return decorate
