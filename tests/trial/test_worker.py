"""A real Celery worker process on the configured broker (Redis in CI, the filesystem transport by default)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_task_sent_by_the_web_process_runs_in_a_real_worker(trial, tmp_path):
    from config.celery import app
    from trial.models import AuditEvent

    db_name = connection.settings_dict["NAME"]
    env = dict(os.environ)
    env["CXR_TEST_DATABASE_NAME"] = str(db_name)  # the worker must see this test's database
    env["CXR_VAR_DIR"] = str(settings.VAR_DIR)
    marker = tmp_path / "ran"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.trial.worker_app", "worker", "-Q", "default",
         "--concurrency", "1", "--pool", "solo", "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        app.send_task("tests.trial.worker_app.record_probe", args=[trial.pk, str(marker)], queue="default")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not marker.exists():
            assert worker.poll() is None, worker.stdout.read().decode()
            time.sleep(0.2)
        assert marker.exists(), "the worker did not run the task within 60 s"
        assert AuditEvent.objects.filter(trial=trial, action="probe.ran").count() == 1
    finally:
        worker.terminate()
        worker.wait(timeout=30)
