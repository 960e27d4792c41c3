"""core.celery: one task decorator (late acknowledgement, redelivery, a named queue) and the beat schedule."""
from __future__ import annotations

from django.conf import settings

from config.celery import app


def _project_tasks() -> dict:
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if name.split(".")[0] in {"trial", "ai", "reading",
                                                                                     "scoring", "stats"}}


def test_every_project_task_is_late_acknowledged_and_redelivered_when_its_worker_dies():
    tasks = _project_tasks()
    assert {"ai.tasks.generate_draft", "reading.tasks.route_trial", "scoring.tasks.build_items",
            "scoring.tasks.build_open_trials", "stats.tasks.run_analysis", "trial.tasks.verify_audit_chain",
            "trial.tasks.prepare_viewer_image"} <= set(tasks)
    for task in tasks.values():
        assert task.acks_late and task.reject_on_worker_lost, task.name


def test_the_model_runs_on_the_ai_queue_and_everything_else_on_default():
    router = app.amqp.router
    for name in _project_tasks():
        queue = router.route({}, name, (), {})["queue"].name
        assert queue == ("ai" if name == "ai.tasks.generate_draft" else "default"), name


def test_transient_model_errors_are_retried_with_backoff():
    from ai.backends import TransientModelError

    task = app.tasks["ai.tasks.generate_draft"]
    assert TransientModelError in task.autoretry_for and task.retry_backoff and task.max_retries == 5


def test_the_beat_schedule_names_tasks_that_exist():
    tasks = _project_tasks()
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert {entry["task"] for entry in schedule.values()} == {"trial.tasks.verify_audit_chain",
                                                               "scoring.tasks.build_open_trials"}
    for entry in schedule.values():
        assert entry["task"] in tasks
