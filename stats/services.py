"""Every write of the stats app: analysis plans (versions, freezing), analysis runs, export downloads; audited."""
from __future__ import annotations

import hashlib
import logging
import secrets
import time
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from core import clock
from trial import audit, lifecycle, signatures
from trial.access import access_to
from trial.models import Arm, Role, Signature, Status, Trial

from . import analysis, dataset, estimands, exports, rscript, selectors
from . import plan as plan_schema
from .errors import Conflict, InvalidPlan, NoFrozenPlan, PlanFrozen, ServiceError, WrongStatus
from .models import AnalysisPlan, AnalysisRun, RunStatus
from .provenance import code_version
from .tasks import run_analysis as run_analysis_task

logger = logging.getLogger(__name__)

ANALYSTS = (Role.INVESTIGATOR, Role.STATISTICIAN)
RUNNABLE = (Status.LOCKED, Status.UNBLINDED)
# A run marked running longer than this without finishing belongs to a worker that died; another may take it.
STALE_RUN_SECONDS = 30 * 60
# The export's layout; a cached zip of an older layout is rebuilt (its name carries the version).
# 3: surrogate read and report ids, rows sorted as the view reads, formulas escaped, withheld columns listed.
# 4: run.json names the audit trail's anchored head.
EXPORT_LAYOUT = 4


def _lock_trial(trial: Trial) -> Trial:
    return Trial.objects.select_for_update(no_key=True).get(pk=trial.pk)


def _clean_plan(content: Any) -> dict:
    try:
        return plan_schema.validate(content)
    except plan_schema.PlanError as exc:
        raise InvalidPlan(str(exc), field=exc.field or "content") from exc


def _content_sha(content: dict) -> str:
    return hashlib.sha256(plan_schema.canonical_json(content)).hexdigest()


# ------------------------------------------------------------------------------------------- plans


@transaction.atomic
def create_plan_version(*, trial: Trial, by, content: dict) -> AnalysisPlan:
    """A new version of the trial's analysis plan (the first one, or an amendment after a freeze)."""
    selectors.require_analyst(trial=trial, user=by)
    trial = _lock_trial(trial)
    if trial.status == Status.UNBLINDED:
        raise WrongStatus("The trial is unblinded: its analysis plan can no longer change.")
    clean = _clean_plan(content)
    latest = trial.analysis_plans.order_by("-version").first()
    now = clock.now()
    plan = AnalysisPlan.objects.create(trial=trial, version=(latest.version + 1) if latest else 1, content=clean,
                                       created_by=by, created_at=now, updated_by=by, updated_at=now)
    audit.record(actor=by, action="analysis_plan.created", obj=plan, trial=trial,
                 payload={"version": plan.version, "content_sha256": _content_sha(clean)})
    return plan


@transaction.atomic
def edit_plan(*, plan: AnalysisPlan, by, content: dict) -> AnalysisPlan:
    """Change the text of the latest, unfrozen version; a frozen version never changes."""
    selectors.require_analyst(trial=plan.trial, user=by)
    trial = _lock_trial(plan.trial)
    plan = AnalysisPlan.objects.select_for_update(of=("self",)).select_related("frozen_by").get(pk=plan.pk)
    if plan.is_frozen:
        raise PlanFrozen(f"Version {plan.version} of the analysis plan was frozen on "
                         f"{plan.frozen_at:%Y-%m-%d %H:%M} UTC by {plan.frozen_by.get_username()}; it cannot change. "
                         "Save a new version instead.")
    if trial.status == Status.UNBLINDED:
        raise WrongStatus("The trial is unblinded: its analysis plan can no longer change.")
    if trial.analysis_plans.filter(version__gt=plan.version).exists():
        raise Conflict(f"Version {plan.version} is not the latest version of the plan; edit the latest one.")
    clean = _clean_plan(content)
    plan.content, plan.updated_by, plan.updated_at = clean, by, clock.now()
    plan.save(update_fields=["content", "updated_by", "updated_at"])
    audit.record(actor=by, action="analysis_plan.edited", obj=plan, trial=trial,
                 payload={"version": plan.version, "content_sha256": _content_sha(clean)})
    return plan


@transaction.atomic
def save_plan(*, trial: Trial, by, content: dict) -> AnalysisPlan:
    """The plan form's save: edits the open draft if there is one, else starts a new version."""
    latest = trial.analysis_plans.order_by("-version").first()
    if latest is not None and not latest.is_frozen:
        return edit_plan(plan=latest, by=by, content=content)
    return create_plan_version(trial=trial, by=by, content=content)


@transaction.atomic
def freeze_plan(*, plan: AnalysisPlan, by, proof: signatures.Reauthenticated) -> AnalysisPlan:
    """Freeze a version: who, when and the SHA-256 of its canonical JSON, with the freezer's electronic signature
    on that hash (`proof`: trial.signatures.reauthenticate, just before). Refused once the trial is unblinded."""
    selectors.require_analyst(trial=plan.trial, user=by)
    trial = _lock_trial(plan.trial)
    plan = AnalysisPlan.objects.select_for_update(of=("self",)).select_related("frozen_by").get(pk=plan.pk)
    if plan.is_frozen:
        raise PlanFrozen(f"Version {plan.version} of the analysis plan is already frozen (on "
                         f"{plan.frozen_at:%Y-%m-%d %H:%M} UTC by {plan.frozen_by.get_username()}, "
                         f"SHA-256 {plan.sha256[:12]}…).")
    if trial.status == Status.UNBLINDED:
        raise WrongStatus("The trial is unblinded: a plan frozen now would not be pre-specified. "
                          "Runs use the last plan frozen before unblinding.")
    if trial.analysis_plans.filter(version__gt=plan.version).exists():
        raise Conflict(f"Version {plan.version} is not the latest version of the plan; freeze the latest one.")
    # the power section's result is computed now, from its inputs, and frozen with the plan
    clean = plan_schema.with_power_result(_clean_plan(plan.content), design=trial.design)
    plan.content = clean
    plan.sha256 = plan_schema.plan_sha256(trial_code=trial.code, version=plan.version, content=clean)
    plan.frozen_by, plan.frozen_at = by, clock.now()
    plan.save(update_fields=["content", "sha256", "frozen_by", "frozen_at"])
    audit.record(actor=by, action="analysis_plan.frozen", obj=plan, trial=trial,
                 payload={"version": plan.version, "sha256": plan.sha256})
    signatures.sign(trial=trial, by=by, proof=proof, meaning=Signature.Meaning.FREEZE_PLAN, obj=plan,
                    content_hash=plan.sha256)
    return plan


def plan_document(plan: AnalysisPlan) -> bytes:
    """The canonical JSON a freeze hashed: sha256 of these bytes is the plan's recorded hash."""
    return plan_schema.canonical_json(plan_schema.frozen_document(trial_code=plan.trial.code, version=plan.version,
                                                                  content=plan.content))


# -------------------------------------------------------------------------------------------- runs


def _new_mapping(trial: Trial) -> dict[str, str]:
    # Before unblinding, which arm is X is a coin toss per run; after it, X is the assisted arm.
    if trial.status == Status.UNBLINDED or secrets.randbelow(2):
        return {"X": Arm.ASSISTED.value, "Y": Arm.STANDARD.value}
    return {"X": Arm.STANDARD.value, "Y": Arm.ASSISTED.value}


@transaction.atomic
def start_run(*, trial: Trial, by) -> AnalysisRun:
    """Queue an analysis run of the last frozen plan; only on a locked (or unblinded) trial. Before unblinding (a
    masked run), only a statistician who cannot see the allocations may ask for one (stats.selectors)."""
    selectors.require_analyst(trial=trial, user=by)
    trial = _lock_trial(trial)
    if trial.status not in RUNNABLE:
        raise WrongStatus(f"An analysis runs only on a locked trial, so that its data cannot change; "
                          f"this trial is {trial.get_status_display().lower()}. Lock it first.")
    if trial.status != Status.UNBLINDED:
        selectors.require_masked_analyst(trial=trial, user=by)
    plan = selectors.latest_frozen_plan(trial)
    if plan is None:
        raise NoFrozenPlan("Freeze the analysis plan before running the analysis.")
    last = trial.analysis_runs.order_by("-number").values_list("number", flat=True).first() or 0
    run = AnalysisRun.objects.create(
        trial=trial, number=last + 1, plan=plan, plan_version=plan.version, plan_sha256=plan.sha256,
        trial_status=trial.status, arm_mapping=_new_mapping(trial), id_key=secrets.token_hex(32),
        requested_by=by, requested_at=clock.now(),
        stage="Waiting for a worker")
    audit.record(actor=by, action="analysis_run.requested", obj=run, trial=trial, payload={
        "number": run.number, "plan_version": plan.version, "plan_sha256": plan.sha256,
        "trial_status": trial.status})
    run_id = run.pk
    transaction.on_commit(lambda: run_analysis_task.delay(run_id))
    return run


def _claim(run_id: int, task_id: str) -> AnalysisRun | None:
    with transaction.atomic():
        run = AnalysisRun.objects.select_for_update(of=("self",)).select_related("trial", "plan").get(pk=run_id)
        if run.status in (RunStatus.DONE, RunStatus.FAILED):
            return None
        if run.status == RunStatus.RUNNING and run.task_id != task_id and run.started_at and \
                (clock.now() - run.started_at).total_seconds() < STALE_RUN_SECONDS:
            return None  # another worker is on it
        run.status, run.task_id, run.started_at = RunStatus.RUNNING, task_id[:64], clock.now()
        run.progress, run.stage = 1, "Taking the dataset snapshot"
        run.save(update_fields=["status", "task_id", "started_at", "progress", "stage"])
        return run


def _set_progress(run: AnalysisRun, percent: float, stage: str) -> None:
    # Its own short write, outside any long transaction, so the polling page sees it at once.
    AnalysisRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        progress=max(1, min(99, int(percent))), stage=stage[:200])


def execute_run(*, run_id: int, task_id: str = "inline") -> AnalysisRun:
    """Snapshot the data (file + SHA-256), run every analysis of the plan, store the results. Safe to run twice."""
    run = _claim(run_id, task_id)
    if run is None:
        return AnalysisRun.objects.get(pk=run_id)
    started = time.perf_counter()
    trial = run.trial
    try:
        facts, rows = selectors.dataset_rows(trial)
        snapshot = dataset.build_snapshot(trial=facts, rows=rows)
        data = dataset.snapshot_bytes(snapshot)
        digest = dataset.sha256(data)
        name = default_storage.save(f"trials/{trial.pk}/analysis/run-{run.number:03d}/dataset-{digest[:16]}.json",
                                    ContentFile(data))
        counts = {entity: len(table) for entity, table in snapshot["tables"].items()}
        AnalysisRun.objects.filter(pk=run.pk).update(dataset=name, dataset_sha256=digest, dataset_rows=counts)
        _set_progress(run, 15, "Snapshot stored; analysing")
        # the view every export of the run shows (surrogate ids, rows in its order): a re-run of an export then
        # computes on exactly these rows
        view = dataset.coded(snapshot, run.arm_mapping, key=run.id_key or None)
        results = analysis.run_analysis(
            view, plan=run.plan.content, design=facts["design"], findings=facts["findings"],
            progress=lambda pct, stage: _set_progress(run, 15 + 0.83 * pct, stage))
        versions = code_version()
    except Exception as exc:  # a run that cannot finish says why, in words, and is recorded as failed
        logger.exception("analysis run %s failed", run_id)
        with transaction.atomic():
            AnalysisRun.objects.filter(pk=run.pk).update(status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}",
                                                         finished_at=clock.now(), stage="Failed")
            audit.record(actor=run.requested_by, action="analysis_run.failed", obj=run, trial=trial,
                         payload={"number": run.number, "error": f"{type(exc).__name__}: {exc}"[:500]})
        return AnalysisRun.objects.get(pk=run.pk)
    with transaction.atomic():
        run = AnalysisRun.objects.select_for_update().get(pk=run.pk)
        run.status, run.results, run.code_version = RunStatus.DONE, results, versions
        run.progress, run.stage, run.finished_at = 100, "Done", clock.now()
        run.seconds = round(time.perf_counter() - started, 3)
        run.audit_anchor = audit.anchor_head().as_dict()  # the head the run's data were read beside
        run.save(update_fields=["status", "results", "code_version", "progress", "stage", "finished_at", "seconds",
                                "audit_anchor"])
        audit.record(actor=run.requested_by, action="analysis_run.finished", obj=run, trial=trial, payload={
            "number": run.number, "plan_version": run.plan_version, "plan_sha256": run.plan_sha256,
            "dataset_sha256": run.dataset_sha256, "code_version": versions, "seconds": run.seconds,
            "audit_anchor": run.audit_anchor})
    return run


# ----------------------------------------------------------------------------------------- exports


def _readme(run: AnalysisRun, *, masked: bool, identities: bool) -> str:
    mapping = run.arm_mapping
    lines = [
        f"# CXR-Trial {run.trial.code}: dataset of analysis run {run.number}",
        "",
        "Long-format tables, one file per entity, each whole (never split into pages): `csv/` (UTF-8, the",
        "reference form), `xlsx/` (one workbook, one sheet per entity), `spss/` (.sav) and `stata/` (.dta).",
        "Columns are described in `data_dictionary.csv` / `data_dictionary.md`.",
        "",
        f"- dataset SHA-256 (the run's snapshot): `{run.dataset_sha256}`",
        f"- analysis plan: version {run.plan_version}, SHA-256 `{run.plan_sha256}` (`plan.json` holds the hashed text)",
        (f"- code: {run.code_version.get('package', '')}, "
         f"stats/methods SHA-256 `{run.code_version.get('methods_sha256', '')}`"),
        "- `results.json`: the run's stored results; `MANIFEST.sha256`: the SHA-256 of every file here.",
        "- `trial.json`: the trial's design and findings; `run.json`: the run's hashes and code version;",
        "  `plan_history.json`: every version of the analysis plan with its freeze time and flags.",
        "- `analysis/analysis_table.csv`: one row per report (case × arm) with the expert means, the reader, the",
        "  site, the intercurrent-event flags and the estimand populations (`analysis/analysis_table_dictionary.csv`).",
        "- `analysis/reference_analysis.R`: the primary and key secondary analyses refitted in R (lme4, lmerTest,",
        "  ordinal) from these tables: `Rscript analysis/reference_analysis.R`.",
        "",
        "Re-run the frozen plan on this export with the platform's code (a checkout of CXR-Trial at the version in",
        "`run.json`, with its Python environment; no server or database), from the checkout's folder:",
        "",
        "    python -m stats.analysis EXPORT/plan.json EXPORT --check",
        "",
        "where EXPORT is this folder (or the zip). It prints the results as canonical JSON and, with --check,",
        "compares them with results.json byte for byte (docs/statistics.md, section 12).",
        "",
    ]
    lines += ["Read and report ids are surrogates drawn at random for this run (the same in every file), never the",
              "platform's database ids. Text cells of the CSV and XLSX files that begin with = + - @, a tab or a",
              "carriage return have a single quote in front, so that no spreadsheet runs them as formulas (the",
              "re-run takes it off).",
              ""]
    if masked:
        lines += ["The trial is not unblinded: the arms are the codes X and Y (effects are X − Y), people are",
                  "pseudonyms, and the columns that would reveal the arms are withheld (`data_dictionary.md` names",
                  "them and says why). Which arm is X is revealed when the trial is unblinded."]
    else:
        lines += [f"The trial is unblinded: the arm columns hold the real arms; in `results.json` arm X is "
                  f"{mapping['X']} and arm Y is {mapping['Y']} (see `arms.csv`). `ids.csv` links the surrogate "
                  "read and report ids to the platform's."]
        if identities:
            lines += ["`identities.csv` links case codes to the hospital's accession numbers: investigators only;",
                      "keep it apart from the analysis files."]
    return "\n".join(lines)


def export_run(*, run: AnalysisRun, by) -> tuple[str, bytes]:
    """The run's dataset as one zip for the asking analyst (masked before unblinding); the download is audited."""
    if run.status != RunStatus.DONE:
        raise Conflict("This run has not finished; its dataset can be downloaded once it is done.")
    export = selectors.export_view(run=run, access=access_to(user=by, trial=run.trial))
    masked = export["masked"]
    identities = export["identities"]
    root = f"cxr-trial-{run.trial.code}-run{run.number:03d}" + ("" if masked else "-unblinded")
    results = selectors.visible_results(run)
    history = selectors.plan_history(run=run)
    files = {
        "plan.json": plan_document(run.plan),
        "results.json": plan_schema.canonical_json(results),
        "trial.json": plan_schema.canonical_json(export["facts"]),
        "run.json": plan_schema.canonical_json({
            "trial": run.trial.code, "number": run.number, "plan_version": run.plan_version,
            "plan_sha256": run.plan_sha256, "dataset_sha256": run.dataset_sha256, "code_version": run.code_version,
            "audit_anchor": run.audit_anchor, "masked": masked}),
        "plan_history.json": plan_schema.canonical_json(history),
        **analysis_files(export["view"], results=results, design=export["facts"]["design"], trial=run.trial.code,
                         run=run.number, plan_version=run.plan_version, plan_sha256=run.plan_sha256),
    }
    if not masked:
        files["arms.csv"] = exports.csv_bytes(["code", "arm"], sorted(run.arm_mapping.items()))
    if export["id_links"] is not None:
        files["ids.csv"] = exports.csv_bytes(["kind", "id", "database_id"], export["id_links"])
    if identities is not None:
        names = ["case", "accession_number", "patient_id", "study_instance_uid"]
        files["identities.csv"] = exports.csv_bytes(names, [[i[n] for n in names] for i in identities])
    # Built once per run and variant (masked / unblinded / with identities), then served from storage:
    # a large trial's zip takes seconds to build, and its content depends on nothing else.
    variant = "masked" if masked else ("unblinded-identities" if identities is not None else "unblinded")
    cached = f"trials/{run.trial_id}/analysis/run-{run.number:03d}/export-{variant}-v{EXPORT_LAYOUT}.zip"
    if default_storage.exists(cached):
        with default_storage.open(cached, "rb") as fh:
            data = fh.read()
    else:
        data = exports.build_zip(export["view"], root=root, masked=masked, files=files,
                                 readme=_readme(run, masked=masked, identities=identities is not None))
        default_storage.save(cached, ContentFile(data))
    with transaction.atomic():
        audit.record(actor=by, action="analysis_run.exported", obj=run, trial=run.trial, payload={
            "number": run.number, "masked": masked, "identities": identities is not None,
            "sha256": hashlib.sha256(data).hexdigest()})
    return f"{root}.zip", data


def analysis_files(view: dict, *, results: dict, design: str, trial: str, run: int, plan_version: int,
                   plan_sha256: str) -> dict[str, bytes]:
    """The export's analysis folder: the analysis-ready table, its dictionary and the reference R script."""
    names, rows = estimands.analysis_table(view, plan=results.get("plan_read_as") or {}, design=design)
    dictionary = estimands.analysis_table_dictionary()
    return {
        "analysis/analysis_table.csv": exports.csv_bytes(names, rows),
        "analysis/analysis_table_dictionary.csv": exports.dictionary_csv(dictionary),
        rscript.SCRIPT: rscript.reference_script(results, trial=trial, run=run, plan_version=plan_version,
                                                 plan_sha256=plan_sha256).encode("utf-8"),
    }


def report_downloaded(*, run: AnalysisRun, by) -> None:
    audit.record(actor=by, action="analysis_run.report_downloaded", obj=run, trial=run.trial,
                 payload={"number": run.number, "masked": not selectors.is_unblinded(run.trial)})


__all__ = ["create_plan_version", "edit_plan", "save_plan", "freeze_plan", "plan_document", "start_run",
           "execute_run", "export_run", "analysis_files", "report_downloaded", "code_version", "ServiceError"]


# ------------------------------------------------------------------------------------------ interim looks
#
# Synchronous, not a Celery task: a look is one snapshot and one model fit (the pooled quality LMM, or the primary
# analysis) and, for efficacy, one boundary computation: about a second for 296 cases and 20 readers. The look is
# then written once, complete, in the transaction that checked it may be taken (no queued or half-done record).

# A look is taken while the trial runs; once it is locked, its analysis is the final one (an analysis run).
INTERIM_STATUSES = lifecycle.statuses_allowing(lifecycle.INTERIM)


def _look_results(*, kind: str, snapshot: dict, plan: dict, facts: dict, info: dict, earlier: list) -> dict:
    """The look's results (stats.interim) on the view its kind may use: pooled (no arm at all) for the blinded
    re-estimation, the real arms for the committee's looks."""
    from . import interim
    from .models import LookKind

    key = secrets.token_hex(32)
    if kind == LookKind.BLINDED_SSR:
        pooled = dataset.relabel(snapshot, label=lambda v: None if v is None else "pooled", drop_withheld=True,
                                 key=key)
        return interim.blinded_ssr(pooled, plan=plan, design=facts["design"])
    view = dataset.unmasked(snapshot, key=key)
    if kind == LookKind.SAFETY:
        spec = plan["interim"]["safety"]
        return interim.safety(view, critical=spec["critical_findings"] or facts["findings"], margin=spec["margin"],
                              confidence_level=plan["confidence_level"], findings=facts["findings"])
    return interim.efficacy(view, plan=plan, design=facts["design"], findings=facts["findings"],
                            earlier=[(e.information_fraction, e.results["tested_pvalue"]) for e in earlier],
                            fraction=info["fraction"])


@transaction.atomic
def take_interim_look(*, trial: Trial, by, kind: str):
    """Take one interim look the frozen plan plans, on the data as they are now, and keep it (stats.models.InterimLook;
    audited). Blinded sample-size re-estimation: a statistician; safety and efficacy: the data-monitoring committee
    (stats.selectors). Refused once the trial is locked, when the plan plans no such look, when every planned
    efficacy look or the re-estimation has been taken, after an efficacy boundary was crossed, and when no case is
    completely scored yet."""
    from . import interim
    from .models import InterimLook, LookKind

    if kind not in LookKind.values:
        raise Conflict(f"Unknown kind of interim look “{kind}”; choose one of {', '.join(LookKind.values)}.")
    selectors.require_look_taker(trial=trial, user=by, kind=kind)
    trial = _lock_trial(trial)
    if trial.status not in INTERIM_STATUSES:
        raise WrongStatus(f"Interim looks are taken while the trial runs (enrolling, reading or scoring); this trial "
                          f"is {trial.get_status_display().lower()}: its analysis is the final one.")
    plan = selectors.latest_frozen_plan(trial)
    if plan is None:
        raise NoFrozenPlan("Freeze an analysis plan that plans interim looks before taking one.")
    content = plan_schema.read_plan(plan.content)
    section = content.get("interim") or {}
    label = interim.KIND_LABELS[kind].split(":")[0].lower()
    if kind not in section:
        raise Conflict(f"Version {plan.version} of the analysis plan (the last frozen) plans no {label} look.")
    earlier = list(trial.interim_looks.filter(kind=kind).order_by("sequence"))
    planned = section[kind]["fractions"] if kind != LookKind.BLINDED_SSR else [section[kind]["fraction"]]
    if kind != LookKind.SAFETY and len(earlier) >= len(planned):
        raise Conflict(f"The plan plans {len(planned)} {label} look{'s' if len(planned) > 1 else ''}; "
                       f"{'all have' if len(planned) > 1 else 'it has'} been taken.")
    if kind == LookKind.EFFICACY and any(e.results.get("crossed") for e in earlier):
        raise Conflict("An earlier efficacy look crossed its boundary; no further efficacy look is taken.")
    started = time.perf_counter()
    facts, rows = selectors.dataset_rows(trial)
    snapshot = dataset.build_snapshot(trial=facts, rows=rows)
    data = dataset.snapshot_bytes(snapshot)
    digest = dataset.sha256(data)
    info = interim.information(dataset.unmasked(snapshot), experts_per_item=facts["experts_per_item"],
                               planned_cases=section["planned_cases"])
    if info["cases_complete"] == 0:
        raise Conflict("No case is completely scored yet (every read submitted and scored by the trial's experts "
                       "per item): there is no information to look at.")
    if kind == LookKind.EFFICACY:
        if info["fraction"] >= 1:
            raise Conflict("The planned number of cases is complete: the final analysis is the last efficacy look.")
        if earlier and info["fraction"] <= earlier[-1].information_fraction:
            raise Conflict(f"No new information since efficacy look {earlier[-1].sequence} "
                           f"(fraction {earlier[-1].information_fraction:.3f}).")
    try:
        results = _look_results(kind=kind, snapshot=snapshot, plan=content, facts=facts, info=info, earlier=earlier)
    except interim.LookNotPossible as exc:
        raise Conflict(str(exc)) from exc
    number = (trial.interim_looks.order_by("-number").values_list("number", flat=True).first() or 0) + 1
    look = InterimLook(
        trial=trial, number=number, kind=kind, sequence=len(earlier) + 1, plan=plan, plan_version=plan.version,
        plan_sha256=plan.sha256, planned_fraction=planned[len(earlier)] if len(earlier) < len(planned) else None,
        information_fraction=info["fraction"], cases_complete=info["cases_complete"],
        planned_cases=info["planned_cases"], trial_status=trial.status, dataset_sha256=digest,
        results={"information": info, **results}, code_version=code_version(), performed_by=by,
        performed_at=clock.now(), seconds=round(time.perf_counter() - started, 3))
    look.dataset.save(f"dataset-{digest[:16]}.json", ContentFile(data), save=False)
    look.save()
    # ids, fractions and hashes only: the audit page is the investigators', who must not read a look's results
    results_sha256 = hashlib.sha256(plan_schema.canonical_json(look.results)).hexdigest()
    audit.record(actor=by, action="interim_look.taken", obj=look, trial=trial, payload={
        "number": look.number, "kind": kind, "sequence": look.sequence, "plan_version": plan.version,
        "plan_sha256": plan.sha256, "information_fraction": look.information_fraction,
        "dataset_sha256": digest, "results_sha256": results_sha256})
    return look


__all__ += ["take_interim_look"]
