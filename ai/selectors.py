"""Reads of the ai app, scoped by role. Drafts reach readers only through reading's selectors, which check the arm."""
from __future__ import annotations

from django.db.models import Count, QuerySet

from trial.access import Access
from trial.models import Case, Role, Trial

from .models import AIDraft, DraftStatus, ModelVersion, TrialModel


def trial_model(*, trial: Trial) -> ModelVersion | None:
    """The model version that drafts the trial's cases. NO PERMISSION CHECK: for callers that made their own (the
    drafts page and API: investigators; the evaluation: analysts after unblinding) and for services."""
    assignment = TrialModel.objects.filter(trial=trial).select_related("model_version").first()
    return assignment.model_version if assignment else None


def models_for_investigator(*, access: Access) -> QuerySet[ModelVersion]:
    access.require(Role.INVESTIGATOR)
    return ModelVersion.objects.all()


def drafts_for_trial(*, access: Access) -> QuerySet[AIDraft]:
    """Investigators follow the pipeline: every draft's state and failure reason (not shown to readers)."""
    access.require(Role.INVESTIGATOR)
    return (AIDraft.objects.filter(case__trial=access.trial).select_related("case", "model_version")
            .order_by("case__code", "id"))


def draft_for_trial(*, access: Access, draft_id: int) -> AIDraft | None:
    """One draft of the trial by its id (None if the trial has no such draft), for retrying it."""
    return drafts_for_trial(access=access).filter(pk=draft_id).first()


def cases_without_draft(*, access: Access) -> QuerySet[Case]:
    access.require(Role.INVESTIGATOR)
    model = trial_model(trial=access.trial)
    cases = access.trial.cases.all()
    return cases.exclude(ai_drafts__model_version=model) if model else cases


def draft_progress(*, access: Access) -> dict[str, int]:
    """How many of the trial's cases have a draft of the trial's model in each state, and how many have none."""
    access.require(Role.INVESTIGATOR)
    trial = access.trial
    counts = {s.value: 0 for s in DraftStatus}
    model = trial_model(trial=trial)
    if model is not None:
        rows = AIDraft.objects.filter(case__trial=trial, model_version=model).values("status").annotate(n=Count("id"))
        counts.update({row["status"]: row["n"] for row in rows})
    total = trial.cases.count()
    counts["missing"] = total - sum(counts[s.value] for s in DraftStatus)
    counts["total"] = total
    return counts


# ------------------------------------------------------------------------------ rows for analyses (no user)


def analysis_rows(trial: Trial) -> dict[str, list[dict]]:
    """The ai app's part of the analysis dataset: the finding scores of the trial model's ready drafts (one row per
    case and finding). NO PERMISSION CHECK: for stats.selectors.dataset_rows, after its own checks."""
    model = trial_model(trial=trial)
    rows = []
    if model is not None:
        for code, scores in (AIDraft.objects.filter(case__trial=trial, model_version=model, status=DraftStatus.READY)
                             .values_list("case__code", "finding_scores")):
            for finding, score in sorted((scores or {}).items()):
                if finding in trial.findings and score is not None:
                    rows.append({"case": code, "finding": finding, "score": float(score), "model": model.name})
    return {"ai_scores": rows}


def models_with_drafts(*, trial: Trial) -> list[ModelVersion]:
    """Model versions with at least one ready draft of this trial's cases, by name. No permission check."""
    return list(ModelVersion.objects.filter(drafts__case__trial=trial, drafts__status=DraftStatus.READY)
                .distinct().order_by("name"))


def ready_drafts(*, trial: Trial, model: ModelVersion) -> list[dict]:
    """case, findings, impression, text and finding scores of the model's ready drafts of the trial's cases.
    NO PERMISSION CHECK: for the retrospective evaluation, after its own checks (unblinded, analysts)."""
    return [{"case": code, "findings": findings, "impression": impression, "text": text, "scores": scores or {}}
            for code, findings, impression, text, scores in (
                AIDraft.objects.filter(case__trial=trial, model_version=model, status=DraftStatus.READY)
                .values_list("case__code", "findings", "impression", "text", "finding_scores"))]
