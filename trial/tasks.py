"""Celery tasks of the trial app: thin wrappers around services, safe to run twice."""
from __future__ import annotations

import logging

from core.celery import task

logger = logging.getLogger(__name__)


@task()
def verify_audit_chain() -> dict:
    """Verify the audit trail (celery beat runs it nightly: config.settings.CELERY_BEAT_SCHEDULE): the chain, its
    anchor and every registered record. A failure is logged as an error and e-mailed to the investigators of the
    trials it touches (of every trial when that cannot be told); an intact trail's head is anchored."""
    from . import audit

    report = audit.verify_and_alert(alert=True)
    return {"intact": report.intact, "events": report.events, "first_broken_id": report.first_broken_id,
            "rows": len(report.rows), "anchor_problems": len(report.anchor_problems)}


@task()
def prepare_missing_viewer_images() -> int:
    """For celery beat: the viewer images of cases whose task was lost (the broker was down at enrolment)."""
    from .models import Case, CaseImage

    count = 0
    for case_id in Case.objects.filter(values_image="").values_list("pk", flat=True)[:500]:
        prepare_viewer_image.delay(case_id)
        count += 1
    for image_id in CaseImage.objects.filter(values_image="", case__isnull=False).values_list("pk", flat=True)[:500]:
        prepare_image_values.delay(image_id)
        count += 1
    return count


@task(retry_on=(OSError,))
def prepare_viewer_image(case_id: int) -> None:
    from .models import Case
    from .services import prepare_viewer_image

    case = Case.objects.filter(pk=case_id).first()
    if case is not None:
        prepare_viewer_image(case=case)


@task(retry_on=(OSError,))
def prepare_image_values(image_id: int) -> None:
    """The viewer's values image of one more image of a case (a lateral, a repeat)."""
    from .models import CaseImage
    from .services import prepare_image_values

    image = CaseImage.objects.filter(pk=image_id, case__isnull=False).first()
    if image is not None:
        prepare_image_values(image=image)


@task()
def settle_study(trial_id: int, study_key: str) -> int:
    """A staged image's study settles: screened out if no frontal image came (trial.services.settle_studies)."""
    from .services import settle_studies

    return settle_studies(trial_id=trial_id, study_key=study_key)


@task()
def settle_staged_studies() -> int:
    """For celery beat: staged images whose settle task was lost (the broker was down)."""
    from .services import settle_studies

    return settle_studies()


@task()
def apply_rosters() -> int:
    """For celery beat: readers with a roster go on and off duty by it (trial.services.apply_rosters)."""
    from .services import apply_rosters

    return apply_rosters()


@task()
def deliver_report(delivery_id: int) -> str | None:
    """One attempt to deliver a released report to its destination (trial.outbox.deliver: under the delivery's row
    lock). A task lost with its worker needs no redelivery: the delivery stays pending, and the beat sweep
    (deliver_due_reports) sends it again."""
    from .outbox import deliver

    delivery = deliver(delivery_id=delivery_id)
    return None if delivery is None else delivery.state


@task()
def deliver_due_reports() -> int:
    """For celery beat: deliveries whose next attempt is due and whose task was lost."""
    from .outbox import deliver_due

    return deliver_due()


@task()
def remove_orphan_files() -> int:
    """For celery beat: files no case names (an enrolment interrupted between its files and its commit)."""
    from .services import remove_orphan_files

    return remove_orphan_files()
