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
from core.clock import iso as clock_iso
from reading import selectors as reading_selectors
from scoring import selectors as scoring_selectors
from trial import selectors as trial_selectors
from trial.access import Access
from trial.models import Arm, AuditEvent, Role, Status, Trial
from trial.selectors import require_role

from . import analysis, dataset, provenance
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


def fitted_power_inputs(run: AnalysisRun) -> tuple[dict[str, Any], str, list[str]]:
    """(power-form values, source, notes): the SDs of the run's quality LMM (reader, report = case:arm, residual)
    and reading-time log-LMM (reader, report, residual). Pooled over the arms, they reveal no arm. Call run_for
    first: it checks the role."""
    results = visible_results(run) or {}
    analyses = results.get("analyses", {})
    values: dict[str, Any] = {}
    notes = []
    for key, prefix in (("quality.lmm", "quality"), ("reading_time.lmm", "time")):
        a = analyses.get(key)
        if not a or a.get("status") != "ok":
            notes.append(f"run {run.number} has no fitted {key}: its inputs were left as they were")
            continue
        vc, residual = a["result"]["variance_components"], a["result"]["residual_variance"]
        values[f"{prefix}_reader_sd"] = round(float(vc.get("reader", 0.0)) ** 0.5, 4)
        values[f"{prefix}_report_sd"] = round(float(vc.get("case:arm", 0.0)) ** 0.5, 4)
        values[f"{prefix}_residual_sd"] = round(float(residual) ** 0.5, 4)
    source = (f"run {run.number} (plan v{run.plan_version}, dataset {run.dataset_sha256[:12]}): fitted variance "
              "components")
    return values, source, notes


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
    facts = dict(snapshot.get("trial", {}))
    if not is_unblinded(run.trial):
        view = dataset.masked(snapshot, run.arm_mapping)
        return {"view": view, "masked": True, "identities": None, "facts": facts}
    view = dataset.unmasked(snapshot)
    identities = None
    if access.has(Role.INVESTIGATOR):
        identities = trial_selectors.identity_rows(access=access)
    return {"view": view, "masked": False, "identities": identities, "facts": facts}


def plan_history(*, run: AnalysisRun) -> dict[str, Any]:
    """Every version of the trial's analysis plan with its freeze time, flagged when frozen after the database lock
    or after a masked run (stats.provenance.plan_history); events are ordered by the audit chain. Call run_for
    first: it checks the role."""
    trial = run.trial
    events = list(AuditEvent.objects.filter(trial=trial, action__in=(
        "trial.status_changed", "analysis_plan.frozen", "analysis_run.finished")).order_by("id")
        .values("id", "action", "payload", "created_at"))
    lock = unblinding = None
    freeze_seq: dict[int, int] = {}
    finished_seq: dict[int, int] = {}
    for e in events:
        payload = e["payload"] or {}
        if e["action"] == "trial.status_changed" and payload.get("to") == Status.LOCKED and lock is None:
            lock = {"seq": e["id"], "at": clock_iso(e["created_at"])}
        elif e["action"] == "trial.status_changed" and payload.get("to") == Status.UNBLINDED:
            unblinding = {"seq": e["id"], "at": clock_iso(e["created_at"])}
        elif e["action"] == "analysis_plan.frozen":
            freeze_seq[payload.get("version")] = e["id"]
        elif e["action"] == "analysis_run.finished":
            finished_seq[payload.get("number")] = e["id"]
    versions = [{"version": p.version, "created_at": clock_iso(p.created_at), "frozen_at": clock_iso(p.frozen_at),
                 "sha256": p.sha256, "frozen_by": p.frozen_by.get_username() if p.frozen_by else None,
                 "freeze_seq": freeze_seq.get(p.version)}
                for p in trial.analysis_plans.select_related("frozen_by").order_by("version")]
    runs = [{"number": r.number, "plan_version": r.plan_version, "finished_at": clock_iso(r.finished_at),
             "finished_seq": finished_seq[r.number], "masked": r.trial_status != Status.UNBLINDED}
            for r in trial.analysis_runs.filter(status=RunStatus.DONE).defer("results")
            if r.number in finished_seq]
    return provenance.plan_history(versions=versions, lock=lock, runs=runs, unblinding=unblinding,
                                   used_version=run.plan_version)


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
