"""Reads for the retrospective evaluation of AI drafts: investigators and statisticians, after unblinding only.

Comparing the drafts with each arm's final reports shows which reports were written with the AI,
so nothing here answers before the trial is unblinded, whoever asks.
"""
from __future__ import annotations

from django.core.exceptions import PermissionDenied

from ai import selectors as ai_selectors
from ai.models import AIDraft, DraftStatus, ModelVersion
from reading.models import Report
from trial.models import Trial

from . import evaluation, selectors
from .selectors import is_unblinded, require_analyst

NOT_UNBLINDED = ("The evaluation of the AI drafts opens once the trial is unblinded: comparing the drafts with "
                 "each arm's reports would show which reports were written with the AI.")
NO_MODEL = "No such model version has drafts in this trial."


class NotUnblinded(PermissionDenied):
    """Refused because of the trial's status, not the user's role: the page says so."""


def require_evaluation_access(*, trial: Trial, user) -> None:
    require_analyst(trial=trial, user=user)
    if not is_unblinded(trial):
        raise NotUnblinded(NOT_UNBLINDED)


def evaluable_models(*, trial: Trial, user) -> list[ModelVersion]:
    """Model versions with at least one ready draft of this trial's cases; the trial's own model first."""
    require_evaluation_access(trial=trial, user=user)
    own = ai_selectors.trial_model(trial=trial)
    models = list(ModelVersion.objects.filter(drafts__case__trial=trial, drafts__status=DraftStatus.READY)
                  .distinct().order_by("name"))
    return sorted(models, key=lambda m: (own is None or m.pk != own.pk, m.name))


def model_for(*, trial: Trial, user, name: str | None) -> ModelVersion | None:
    """The asked model version (by name), else the trial's model, else the first with drafts; None if none has any."""
    models = evaluable_models(trial=trial, user=user)
    if name:
        chosen = next((m for m in models if m.name == name), None)
        if chosen is None:
            raise PermissionDenied(NO_MODEL)
        return chosen
    return models[0] if models else None


def evaluation_rows(*, trial: Trial, model: ModelVersion) -> dict:
    """Plain rows for stats.evaluation.build_table. No permission check: callers come through evaluation_for."""
    drafts, scores = {}, {}
    for code, findings, impression, text, finding_scores in (
            AIDraft.objects.filter(case__trial=trial, model_version=model, status=DraftStatus.READY)
            .values_list("case__code", "findings", "impression", "text", "finding_scores")):
        drafts[code] = evaluation.report_text(findings, impression) or text
        scores[code] = finding_scores or {}
    # The final report is the latest version of a submitted read.
    final: dict[int, tuple] = {}
    for row in (Report.objects.filter(read__trial=trial, read__submitted_at__isnull=False)
                .values_list("read_id", "version", "read__case__code", "read__arm", "findings", "impression")):
        if row[0] not in final or row[1] > final[row[0]][1]:
            final[row[0]] = row
    pairs = [evaluation.ReportPair(case=code, arm=arm, draft=drafts[code],
                                   report=evaluation.report_text(findings, impression))
             for _, _, code, arm, findings, impression in sorted(final.values(), key=lambda r: (r[2], r[3], r[0]))
             if code in drafts]
    # Through the seam the analysis itself uses, so the AUC and the analysis read one reference standard.
    reference = selectors.scoring_source(trial).get("reference_standard", [])
    return {"pairs": pairs, "scores": scores, "reference": reference, "n_drafts": len(drafts)}


def evaluation_for(*, trial: Trial, user, model: ModelVersion) -> evaluation.EvaluationTable:
    require_evaluation_access(trial=trial, user=user)
    rows = evaluation_rows(trial=trial, model=model)
    return evaluation.build_table(model=model.name, findings=list(trial.findings), **rows)
