"""Celery tasks of the trial app: thin wrappers around services, safe to run twice."""
from celery import shared_task

from . import audit


@shared_task(acks_late=True)
def verify_audit_chain() -> dict:
    """Walk the audit chain (schedule it nightly with celery beat); the report is also logged."""
    report = audit.verify()
    if not report.intact:
        import logging

        logging.getLogger(__name__).error("%s", report)
    return {"intact": report.intact, "events": report.events, "first_broken_id": report.first_broken_id}
