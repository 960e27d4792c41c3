"""core.celery: one task decorator (late acknowledgement, redelivery, a named queue) and the beat schedule."""
from __future__ import annotations

from django.conf import settings

from config.celery import app


def _project_tasks() -> dict:
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if name.split(".")[0] in {"trial", "ai", "reading",
                                                                                     "scoring", "stats"}}


def test_every_project_task_is_late_acknowledged_and_the_long_ones_redelivered_when_their_worker_dies():
    tasks = _project_tasks()
    assert {"ai.tasks.generate_draft", "ai.tasks.requeue_pending", "reading.tasks.route_trial",
            "scoring.tasks.build_items", "scoring.tasks.build_open_trials", "stats.tasks.run_analysis",
            "trial.tasks.verify_audit_chain", "trial.tasks.prepare_viewer_image"} <= set(tasks)
    for task in tasks.values():
        assert task.acks_late, task.name
        assert task.reject_on_worker_lost == (task.name in ("ai.tasks.generate_draft", "ai.tasks.redraft",
                                                            "stats.tasks.run_analysis"))


def test_a_fresh_process_routes_the_model_task_to_the_ai_queue_by_name():
    """Every process that sends tasks sets Django up (the apps' ready() import their tasks), or imports the task's
    module on the first routing of its name: a task sent by name never lands on the CPU queue by accident."""
    import subprocess
    import sys

    code = ("import django; django.setup(); from core.celery import route_task; "
            "print(route_task('ai.tasks.generate_draft', (), {}, {})['queue'], "
            "route_task('stats.tasks.run_analysis', (), {}, {})['queue'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "config.settings"})
    assert out.stdout.split() == ["ai", "default"], out.stderr[-2000:]


def test_transient_model_errors_are_retried_with_backoff():
    from ai.backends import TransientModelError

    task = app.tasks["ai.tasks.generate_draft"]
    assert TransientModelError in task.autoretry_for and task.retry_backoff and task.max_retries == 5


def test_the_beat_schedule_names_tasks_that_exist():
    tasks = _project_tasks()
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert {entry["task"] for entry in schedule.values()} == {"trial.tasks.verify_audit_chain",
                                                               "scoring.tasks.build_open_trials",
                                                               "ai.tasks.requeue_pending",
                                                               "trial.tasks.prepare_missing_viewer_images",
                                                               "reading.tasks.route_open_trials",
                                                               "trial.tasks.apply_rosters",
                                                               "trial.tasks.deliver_due_reports",
                                                               "trial.tasks.settle_staged_studies",
                                                               "trial.tasks.remove_orphan_files"}
    for entry in schedule.values():
        assert entry["task"] in tasks
