"""What the ai app does when the trial app announces an event (connected in AiConfig.ready)."""
from __future__ import annotations


def draft_on_enrolment(sender, *, case_id: int, **kwargs) -> None:
    """Every enrolled case gets a draft row for its trial's model and a task that fills it (idempotent)."""
    from trial.models import Case

    from .services import request_draft

    case = Case.objects.filter(pk=case_id).first()
    if case is not None:
        request_draft(case=case)


def redraft_on_added_image(sender, *, case_id: int, **kwargs) -> None:
    """A later image of the study (a lateral after the settle window) may be wanted by the trial's model: the ready
    draft is made again from it, as long as no assisted reader has been sent the case (services.request_redraft)."""
    from trial.models import Case

    from .services import request_redraft

    case = Case.objects.filter(pk=case_id).select_related("trial").first()
    if case is not None:
        request_redraft(case=case)
