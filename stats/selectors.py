"""Every read of the stats app, scoped: investigators and statisticians only; arms masked until unblinding.

Blinding lives here, once: a run's results, report and exports leave this module with the arms as
"arm X" / "arm Y", surrogate read and report ids and the one-arm columns withheld while the trial is
not unblinded; the mapping and the real names only afterwards. Views, the API and the downloads all
come through here.

Who sees a masked run: before unblinding, a run, its results, its report, its plots and its dataset
are for the trial's statisticians only, and never for anyone who can see the allocations (an
investigator of the trial, also one who is a statistician there too; staff without the statistician
role hold no trial role and are refused all the same). Otherwise the masking is no masking: whoever
knows which reader is in which arm unmasks X and Y at a glance. Investigators write and freeze the
plan and see the list of runs; they see results after unblinding.
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
from trial.access import Access, access_to
from trial.models import Arm, AuditEvent, Role, Status, Trial
from trial.selectors import require_role

from . import analysis, dataset, interim, provenance
from . import plan as plan_schema
from .methods.group_sequential import boundaries
from .models import BY_ARM_KINDS, AnalysisPlan, AnalysisRun, LookKind, RunStatus

ANALYSTS = (Role.INVESTIGATOR, Role.STATISTICIAN)
MASKED_REFUSED = ("Before unblinding, analysis runs, their results and their datasets are for the trial's "
                  "statisticians only, and not for anyone who can see the allocations (investigators): they are "
                  "shown to investigators once the trial is unblinded.")
ARM_NAMES = {Arm.ASSISTED.value: "AI-assisted", Arm.STANDARD.value: "standard care"}
NO_RUN = "No such analysis run in this trial."


def require_analyst(*, trial: Trial, user) -> set[str]:
    """For services: the user's roles, or PermissionDenied unless they are an investigator or statistician."""
    return require_role(trial=trial, user=user, roles=ANALYSTS)


def is_unblinded(trial: Trial) -> bool:
    return trial.status == Status.UNBLINDED


def sees_allocations(access: Access) -> bool:
    """Whether the asking user can see the allocations of the trial: its investigators, and staff or superusers
    who are not its statisticians (the admin)."""
    user = access.user
    staff = bool(getattr(user, "is_staff", False) or getattr(user, "is_superuser", False))
    return access.has(Role.INVESTIGATOR) or (staff and not access.has(Role.STATISTICIAN))


def may_see_masked(access: Access) -> bool:
    """Whether the user may run masked analyses and see masked runs: a statistician who cannot see allocations."""
    return access.has(Role.STATISTICIAN) and not sees_allocations(access)


def may_open_runs(access: Access) -> bool:
    """Whether the user may open the trial's runs (results, report, dataset) now."""
    return may_see_masked(access) or (is_unblinded(access.trial) and access.has(*ANALYSTS))


def require_masked_analyst(*, trial: Trial, user) -> None:
    """For services: PermissionDenied unless the user may run a masked analysis of the trial (module docstring)."""
    if not may_see_masked(access_to(user=user, trial=trial, roles=ANALYSTS)):
        raise PermissionDenied(MASKED_REFUSED)


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
    """One run of the trial; before unblinding, for statisticians who cannot see allocations only (module
    docstring). Everything that shows a run's results, report or data starts here."""
    access.require(*ANALYSTS)
    if not may_open_runs(access):
        raise PermissionDenied(MASKED_REFUSED)
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
    if not may_open_runs(access):
        raise PermissionDenied(MASKED_REFUSED)
    key = run.id_key or None
    if not is_unblinded(run.trial) and key is None:
        raise PermissionDenied(f"Run {run.number} was made before masked datasets carried surrogate ids: its masked "
                               "export would show the platform's read and report ids. Start a new run.")
    snapshot = run_snapshot(run)
    facts = dict(snapshot.get("trial", {}))
    if not is_unblinded(run.trial):
        view = dataset.masked(snapshot, run.arm_mapping, key=key)
        return {"view": view, "masked": True, "identities": None, "facts": facts, "id_links": None}
    view = dataset.unmasked(snapshot, key=key)
    identities = None
    if access.has(Role.INVESTIGATOR):
        identities = trial_selectors.identity_rows(access=access)
    return {"view": view, "masked": False, "identities": identities, "facts": facts,
            "id_links": dataset.id_links(snapshot, key) if key else None}


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


# ----------------------------------------------------------------------------------------- interim looks
#
# Who sees what. That a look happened (its kind, number, date and information fraction) is shown to everyone with
# analysis access and to the data-monitoring committee. The results of a blinded sample-size re-estimation (pooled
# variance components and power, nothing by arm) are shown to statisticians and investigators (and the committee).
# The results of safety and efficacy looks are by arm: before unblinding they are shown to the committee alone: not
# to investigators, statisticians or staff, whatever else they hold. A committee member holds no other role of the
# trial (trial.services refuses it); one who somehow does is treated as not independent and sees nothing by arm.

LOOK_VIEWERS = (Role.INVESTIGATOR, Role.STATISTICIAN, Role.MONITOR)
COMMITTEE_ONLY = ("Before unblinding, the results of safety and efficacy looks are for the trial's data-monitoring "
                  "committee only (they are by arm); everyone with analysis access sees that the look happened.")
NO_LOOK = "No such interim look in this trial."


def is_committee(access: Access) -> bool:
    """A member of the trial's data-monitoring committee who holds no other role in it."""
    return access.has(Role.MONITOR) and access.roles <= {Role.MONITOR}


def may_take_look(access: Access, kind: str) -> bool:
    """Blinded sample-size re-estimation: a statistician. Safety and efficacy: the committee."""
    if kind == LookKind.BLINDED_SSR:
        return access.has(Role.STATISTICIAN) and not access.has(Role.MONITOR)
    return is_committee(access)


def require_look_taker(*, trial: Trial, user, kind: str) -> Access:
    """For services: the user's access, or PermissionDenied unless they may take this kind of look."""
    access = access_to(user=user, trial=trial, roles=LOOK_VIEWERS)
    if not may_take_look(access, kind):
        who = ("the trial's statisticians" if kind == LookKind.BLINDED_SSR
               else "the trial's data-monitoring committee")
        raise PermissionDenied(f"This kind of interim look is taken by {who}.")
    return access


def may_see_look_results(access: Access, look) -> bool:
    if look.kind not in BY_ARM_KINDS:
        return access.has(*LOOK_VIEWERS)
    return is_committee(access) or (is_unblinded(access.trial) and access.has(*ANALYSTS))


def _look_row(look, access: Access) -> dict[str, Any]:
    return {"number": look.number, "kind": look.kind, "kind_label": interim.KIND_LABELS[look.kind],
            "sequence": look.sequence, "performed_at": look.performed_at,
            "information_fraction": look.information_fraction, "planned_fraction": look.planned_fraction,
            "cases_complete": look.cases_complete, "planned_cases": look.planned_cases,
            "plan_version": look.plan_version, "trial_status": look.trial_status,
            "results_visible": may_see_look_results(access, look)}


def looks_for(*, access: Access) -> list[dict[str, Any]]:
    """Every interim look of the trial, without results: that it happened, when, at which fraction."""
    access.require(*LOOK_VIEWERS)
    looks = access.trial.interim_looks.defer("results").order_by("number")
    return [_look_row(look, access) for look in looks]


def look_for(*, access: Access, number: int):
    """One look with its results, for whoever may see them (module section above); PermissionDenied otherwise."""
    access.require(*LOOK_VIEWERS)
    look = access.trial.interim_looks.select_related("performed_by").filter(number=number).first()
    if look is None:
        raise PermissionDenied(NO_LOOK)
    if not may_see_look_results(access, look):
        raise PermissionDenied(COMMITTEE_ONLY)
    return look


def look_detail(*, access: Access, look) -> dict[str, Any]:
    """A look as the page and the API show it (call look_for first: it checks who may see the results)."""
    return {**_look_row(look, access), "plan_sha256": look.plan_sha256, "dataset_sha256": look.dataset_sha256,
            "code_version": look.code_version, "seconds": look.seconds,
            "performed_by": look.performed_by.get_username(), "results": look.results}


def planned_looks(*, access: Access) -> dict[str, Any] | None:
    """The interim section of the last frozen plan, with the planned efficacy boundaries (None: no look planned)."""
    access.require(*LOOK_VIEWERS)
    plan = latest_frozen_plan(access.trial)
    if plan is None:
        return None
    content = plan_schema.read_plan(plan.content)
    section = content.get("interim")
    if not section:
        return None
    out = {"version": plan.version, "sha256": plan.sha256, "interim": section,
           "lines": plan_schema.interim_lines(plan.content), "boundaries": None}
    if "efficacy" in section:
        e = section["efficacy"]
        b = boundaries([*e["fractions"], 1.0], alpha=content["alpha"], spending=e["spending"]).as_dict()
        out["boundaries"] = {**b, "rows": list(zip(b["fractions"], b["z"], b["nominal_p"], b["cumulative_alpha"]))}
    return out


def interim_for_report(run: AnalysisRun) -> dict[str, Any]:
    """Every interim look of the run's trial (that it happened: kind, number, date, fraction) and, when the run's
    plan has efficacy looks, the final look's nominal level after the efficacy looks taken (stats.interim). Call
    run_for first: it checks the role. An efficacy look's own decision is listed after unblinding only."""
    looks = list(run.trial.interim_looks.order_by("number"))
    unblinded = is_unblinded(run.trial)
    rows = []
    for look in looks:
        outcome = ""
        if look.kind == LookKind.EFFICACY and unblinded:
            outcome = (look.results or {}).get("decision", "")
        elif look.kind in BY_ARM_KINDS and not unblinded:
            outcome = "seen by the data-monitoring committee only until unblinding"
        elif look.kind == LookKind.BLINDED_SSR:
            outcome = (look.results or {}).get("advice", "")
        rows.append({"number": look.number, "kind": look.kind, "kind_label": interim.KIND_LABELS[look.kind],
                     "sequence": look.sequence, "performed_at": clock_iso(look.performed_at),
                     "information_fraction": look.information_fraction, "planned_fraction": look.planned_fraction,
                     "plan_version": look.plan_version, "dataset_sha256": look.dataset_sha256, "outcome": outcome})
    plan = plan_schema.read_plan(run.plan.content)
    section = plan.get("interim") or {}
    final = None
    if "efficacy" in section:
        taken = [look.information_fraction for look in looks if look.kind == LookKind.EFFICACY]
        final = interim.final_level(taken, alpha=plan["alpha"], spending=section["efficacy"]["spending"])
        final["looks_taken"] = len(taken)
    return {"looks": rows, "planned": section or None, "final": final}
