"""The project's one task decorator: every task is late-acknowledged and routed to a named queue, and (when asked)
retried with backoff or redelivered when its worker dies. Tasks are thin and idempotent: they import their service
inside the body, so services can import tasks at module level (the `_task` suffix) without a cycle."""
from __future__ import annotations

import importlib
from collections.abc import Callable

from celery import shared_task  # the one place it is used (ruff bans it elsewhere)

DEFAULT_QUEUE = "default"  # CPU work: routing, scoring items, analyses, images
AI_QUEUE = "ai"            # the model: a GPU worker (or a CPU one) with concurrency 1 per device

# Message priorities on the Redis broker, where 0 is served first (settings.CELERY_BROKER_TRANSPORT_OPTIONS); the
# filesystem broker of the demo keeps arrival order. An urgent case of a live trial first, then a live trial's
# cases, then everything else (settings.CELERY_TASK_DEFAULT_PRIORITY), then a reader study's batch.
PRIORITY_URGENT = 0
PRIORITY_LIVE = 2
PRIORITY_BATCH = 7

# task name → queue, filled by @task; Celery asks route_task (settings.CELERY_TASK_ROUTES) where to send each one
# (Celery 5 deprecates the task's own `queue` attribute in favour of routes).
_QUEUES: dict[str, str] = {}


def route_task(name, args, kwargs, options, task=None, **kw) -> dict | None:
    """The queue the task's @task named. A process that sends a task by name without having imported its module
    (so its decorator has not run here) imports it first, so that the model's task never lands on the CPU queue."""
    if name not in _QUEUES and "." in name:
        try:
            importlib.import_module(name.rsplit(".", 1)[0])
        except ImportError:
            return None
    queue = _QUEUES.get(name)
    return {"queue": queue} if queue else None


def task(*, queue: str = DEFAULT_QUEUE, retry_on: tuple[type[BaseException], ...] = (), max_retries: int = 3,
         redeliver_if_worker_dies: bool = False, bind: bool = False, **options) -> Callable:
    """`@task(queue="ai", retry_on=(TransientModelError,))`. The task's name is its module path and function name
    (what Celery would give it), stated so that a rename is a visible change of the message format.
    `redeliver_if_worker_dies`: a task whose worker was killed mid-task goes back to the queue (long, idempotent
    work: a draft, an analysis run); off by default, because a task that itself kills its worker (memory) would
    come back for ever."""
    def decorate(fn: Callable) -> Callable:
        name = f"{fn.__module__}.{fn.__name__}"
        _QUEUES[name] = queue
        settings = {"name": name, "acks_late": True, "reject_on_worker_lost": redeliver_if_worker_dies}
        if retry_on:
            settings.update(autoretry_for=tuple(retry_on), retry_backoff=True, retry_backoff_max=300,
                            retry_jitter=True, max_retries=max_retries)
        settings.update(options)
        return shared_task(bind=bind, **settings)(fn)
    return decorate
