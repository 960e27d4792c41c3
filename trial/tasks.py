"""Celery tasks of the trial app: thin wrappers around services, safe to run twice."""
from __future__ import annotations

import logging

from core.celery import task

logger = logging.getLogger(__name__)


@task()
def verify_audit_chain() -> dict:
    """Walk the audit chain (celery beat runs it nightly: config.settings.CELERY_BEAT_SCHEDULE); a broken chain is
    logged as an error."""
    from . import audit

    report = audit.verify()
    if not report.intact:
        logger.error("%s", report)
    return {"intact": report.intact, "events": report.events, "first_broken_id": report.first_broken_id}


@task()
def prepare_missing_viewer_images() -> int:
    """For celery beat: the viewer images of cases whose task was lost (the broker was down at enrolment)."""
    from .models import Case

    count = 0
    for case_id in Case.objects.filter(values_image="").values_list("pk", flat=True)[:500]:
        prepare_viewer_image.delay(case_id)
        count += 1
    return count


@task(retry_on=(OSError,))
def prepare_viewer_image(case_id: int) -> None:
    from .models import Case
    from .services import prepare_viewer_image

    case = Case.objects.filter(pk=case_id).first()
    if case is not None:
        prepare_viewer_image(case=case)
