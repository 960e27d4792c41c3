"""The project's Celery app pointed at a test database, with one probe task (used by test_worker)."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402
from django.conf import settings  # noqa: E402

if os.environ.get("CXR_TEST_DATABASE_NAME"):
    settings.DATABASES["default"]["NAME"] = os.environ["CXR_TEST_DATABASE_NAME"]
django.setup()

from celery import shared_task  # noqa: E402

from config.celery import app  # noqa: E402,F401


@shared_task(name="tests.trial.worker_app.record_probe")
def record_probe(trial_id: int, marker: str) -> None:
    from trial import audit
    from trial.models import Trial

    audit.record(actor=None, action="probe.ran", obj=Trial.objects.get(pk=trial_id))
    with open(marker, "w") as fh:
        fh.write("ok")
