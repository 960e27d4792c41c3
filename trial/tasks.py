"""Celery tasks of the trial app: thin wrappers around services, safe to run twice."""
from celery import shared_task

from . import audit, services


@shared_task(acks_late=True)
def verify_audit_chain() -> dict:
    """Walk the audit chain (schedule it nightly with celery beat); the report is also logged."""
    report = audit.verify()
    if not report.intact:
        import logging

        logging.getLogger(__name__).error("%s", report)
    return {"intact": report.intact, "events": report.events, "first_broken_id": report.first_broken_id}


@shared_task(name="trial.tasks.prepare_viewer_image", acks_late=True, autoretry_for=(OSError,), retry_backoff=True,
             max_retries=3)
def prepare_viewer_image(case_id: int) -> None:
    from .models import Case

    case = Case.objects.filter(pk=case_id).first()
    if case is not None:
        services.prepare_viewer_image(case=case)
