"""Reads for the retrospective evaluation of AI drafts: investigators and statisticians, after unblinding only.

Comparing the drafts with each arm's final reports shows which reports were written with the AI,
so nothing here answers before the trial is unblinded, whoever asks.
"""
from __future__ import annotations

from django.core.exceptions import PermissionDenied

from ai import selectors as ai_selectors
from ai.models import ModelVersion
from reading import selectors as reading_selectors
from scoring import selectors as scoring_selectors
from stats.selectors import ANALYSTS, is_unblinded
from trial.access import Access
from trial.models import Trial

from . import table as evaluation

NOT_UNBLINDED = ("The evaluation of the AI drafts opens once the trial is unblinded: comparing the drafts with "
                 "each arm's reports would show which reports were written with the AI.")
NO_MODEL = "No such model version has drafts in this trial."


class NotUnblinded(PermissionDenied):
    """Refused because of the trial's status, not the user's role: the page says so."""


def require_evaluation_access(*, access: Access) -> None:
    access.require(*ANALYSTS)
    if not is_unblinded(access.trial):
        raise NotUnblinded(NOT_UNBLINDED)


def evaluable_models(*, access: Access) -> list[ModelVersion]:
    """Model versions with at least one ready draft of this trial's cases; the trial's own model first."""
    require_evaluation_access(access=access)
    own = ai_selectors.trial_model(trial=access.trial)
    models = ai_selectors.models_with_drafts(trial=access.trial)
    return sorted(models, key=lambda m: (own is None or m.pk != own.pk, m.name))


def model_for(*, access: Access, name: str | None) -> ModelVersion | None:
    """The asked model version (by name), else the trial's model, else the first with drafts; None if none has any."""
    models = evaluable_models(access=access)
    if name:
        chosen = next((m for m in models if m.name == name), None)
        if chosen is None:
            raise PermissionDenied(NO_MODEL)
        return chosen
    return models[0] if models else None


def evaluation_rows(*, trial: Trial, model: ModelVersion) -> dict:
    """Plain rows for evaluation.table.build_table, from each app's own selector. No permission check: callers come
    through evaluation_for."""
    drafts, scores = {}, {}
    for draft in ai_selectors.ready_drafts(trial=trial, model=model):
        drafts[draft["case"]] = evaluation.report_text(draft["findings"], draft["impression"]) or draft["text"]
        scores[draft["case"]] = draft["scores"]
    pairs = [evaluation.ReportPair(case=r["case"], arm=r["arm"], draft=drafts[r["case"]],
                                   report=evaluation.report_text(r["findings"], r["impression"]))
             for r in reading_selectors.final_reports(trial=trial) if r["case"] in drafts]
    # The rows the analysis itself uses, so the AUC and the analysis read one reference standard.
    reference = scoring_selectors.analysis_rows(trial).get("reference_standard", [])
    return {"pairs": pairs, "scores": scores, "reference": reference, "n_drafts": len(drafts)}


def evaluation_for(*, access: Access, model: ModelVersion) -> evaluation.EvaluationTable:
    require_evaluation_access(access=access)
    rows = evaluation_rows(trial=access.trial, model=model)
    return evaluation.build_table(model=model.name, findings=list(access.trial.findings), **rows)
