"""Every read of the stats app, scoped: investigators and statisticians only; arms masked until unblinding.

Blinding lives here, once: a run's results, report and exports leave this module with the arms as
"arm X" / "arm Y" and the one-arm columns withheld while the trial is not unblinded; the mapping
and the real names only afterwards. Views, the API and the downloads all come through here.
"""
from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet

from ai import selectors as ai_selectors
from reading import selectors as reading_selectors
from scoring import selectors as scoring_selectors
from trial import selectors as trial_selectors
from trial.access import Access
from trial.models import Arm, Role, Status, Trial
from trial.selectors import require_role

from . import analysis, dataset
from .models import AnalysisPlan, AnalysisRun, RunStatus

ANALYSTS = (Role.INVESTIGATOR, Role.STATISTICIAN)
ARM_NAMES = {Arm.ASSISTED.value: "AI-assisted", Arm.STANDARD.value: "standard care"}
NO_RUN = "No such analysis run in this trial."


def require_analyst(*, trial: Trial, user) -> set[str]:
    """For services: the user's roles, or PermissionDenied unless they are an investigator or statistician."""
    return require_role(trial=trial, user=user, roles=ANALYSTS)


def is_unblinded(trial: Trial) -> bool:
    return trial.status == Status.UNBLINDED


# ------------------------------------------------------------------------------------------- plans


def plans_for(*, access: Access) -> QuerySet[AnalysisPlan]:
    access.require(*ANALYSTS)
    return access.trial.analysis_plans.select_related("created_by", "frozen_by").order_by("-version")


def plan_for(*, access: Access, version: int) -> AnalysisPlan:
    plan = plans_for(access=access).filter(version=version).first()
    if plan is None:
        raise PermissionDenied("No such version of the analysis plan.")
    return plan


def latest_plan(*, access: Access) -> AnalysisPlan | None:
    return plans_for(access=access).first()


def latest_frozen_plan(trial: Trial) -> AnalysisPlan | None:
    return trial.analysis_plans.filter(frozen_at__isnull=False).order_by("-version").first()


# -------------------------------------------------------------------------------------------- runs


def runs_for(*, access: Access) -> QuerySet[AnalysisRun]:
    access.require(*ANALYSTS)
    return access.trial.analysis_runs.select_related("plan", "requested_by").defer("results").order_by("-number")


def run_for(*, access: Access, number: int) -> AnalysisRun:
    access.require(*ANALYSTS)
    run = access.trial.analysis_runs.select_related("plan").filter(number=number).first()
    if run is None:
        raise PermissionDenied(NO_RUN)
    return run


def arm_labels(run: AnalysisRun) -> dict[str, str]:
    """How the arms are named to people: "arm X" before unblinding, "AI-assisted (arm X)" after."""
    if not is_unblinded(run.trial):
        return {"X": "arm X", "Y": "arm Y"}
    return {code: f"{ARM_NAMES[real]} (arm {code})" for code, real in run.arm_mapping.items()}


def revealed_mapping(run: AnalysisRun) -> dict[str, str] | None:
    """Which arm is X and which is Y: None until the trial is unblinded."""
    return dict(run.arm_mapping) if is_unblinded(run.trial) else None


def visible_results(run: AnalysisRun) -> dict[str, Any] | None:
    """The run's results as the asking analyst may see them (call run_for first: it checks the role)."""
    if run.results is None:
        return None
    return run.results if is_unblinded(run.trial) else analysis.without_withheld(run.results)


def run_progress(*, run: AnalysisRun) -> dict[str, Any]:
    return {"number": run.number, "status": run.status, "progress": run.progress, "stage": run.stage,
            "error": run.error if run.status == RunStatus.FAILED else "",
            "done": run.status in (RunStatus.DONE, RunStatus.FAILED)}


def run_summary(*, run: AnalysisRun) -> dict[str, Any]:
    """What a run is, for people and for the API: hashes, versions, mapping (after unblinding) and results."""
    return {
        "number": run.number, "status": run.status, "progress": run.progress, "stage": run.stage,
        "error": run.error, "trial": run.trial.code, "trial_status_at_request": run.trial_status,
        "plan_version": run.plan_version, "plan_sha256": run.plan_sha256,
        "dataset_sha256": run.dataset_sha256, "dataset_rows": run.dataset_rows, "code_version": run.code_version,
        "requested_at": run.requested_at, "started_at": run.started_at, "finished_at": run.finished_at,
        "seconds": run.seconds, "masked": not is_unblinded(run.trial), "arm_labels": arm_labels(run),
        "arm_mapping": revealed_mapping(run), "results": visible_results(run),
    }


def run_snapshot(run: AnalysisRun) -> dict[str, Any]:
    """The run's stored snapshot, checked against its recorded hash (a changed file is refused)."""
    with run.dataset.open("rb") as fh:
        data = fh.read()
    if dataset.sha256(data) != run.dataset_sha256:
        raise PermissionDenied("The stored dataset of this run does not match its recorded hash.")
    return json.loads(data)


def export_view(*, run: AnalysisRun, access: Access) -> dict[str, Any]:
    """The run's tables as the asking analyst may take them away: masked before unblinding; after it, real
    arm names, and for investigators only, the link from case codes to accession numbers."""
    access.require(*ANALYSTS)
    snapshot = run_snapshot(run)
    if not is_unblinded(run.trial):
        view = dataset.masked(snapshot, run.arm_mapping)
        return {"view": view, "masked": True, "identities": None}
    view = dataset.unmasked(snapshot)
    identities = None
    if access.has(Role.INVESTIGATOR):
        identities = trial_selectors.identity_rows(access=access)
    return {"view": view, "masked": False, "identities": identities}


# ------------------------------------------------------------------------------ the dataset (no user)


def dataset_rows(trial: Trial) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """(trial facts, rows by entity) for a snapshot, each app giving its own part. No permission check: the service
    calling it has done it. Pseudonyms only, real arm names (the snapshot is never shown unmasked before unblinding)."""
    rows: dict[str, list[dict[str, Any]]] = {}
    rows.update(trial_selectors.analysis_rows(trial))
    rows.update(reading_selectors.analysis_rows(trial))
    rows.update(ai_selectors.analysis_rows(trial))
    rows.update(dataset.from_scoring(scoring_selectors.analysis_rows(trial)))
    facts = {"code": trial.code, "design": trial.design, "findings": list(trial.findings),
             "experts_per_item": trial.experts_per_item}
    return facts, rows
