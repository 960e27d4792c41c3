"""Analysis runs end to end: snapshot and hash, stored results equal stats.methods on the exported CSVs, refusals."""
from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict

import numpy as np
import pytest

from core.errors import WrongStatus
from scoring import selectors as scoring_selectors
from stats import selectors, services
from stats.methods.agreement import analyse_agreement
from stats.methods.detection import analyse_detection, detection_glmm
from stats.methods.glmm import fit_ordinal_glmm, fit_preference_glmm
from stats.methods.lmm import fit_lmm
from stats.methods.multiplicity import adjust_pvalues
from stats.methods.paired import compare_paired
from stats.methods.preference import analyse_preference
from stats.methods.roc import roc_auc
from stats.models import AnalysisRun, RunStatus
from tests.stats.test_runs_fixtures import (  # noqa: F401  (fixtures)
    build_trial,
    complete_trial,
    csv_rows,
    freeze_default_plan,
    run_now,
    zip_members,
)
from trial.models import AuditEvent

REL = 1e-9
REAL_SCORING_ROWS = scoring_selectors.analysis_rows  # before any test replaces it


def close(a, b, rel=REL) -> bool:
    if a is None or b is None:
        return a is None and b is None or (a is None and math.isnan(b)) or (b is None and math.isnan(a))
    return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=1e-12)


def _num(v: str):
    return None if v == "" else float(v)


@pytest.mark.django_db
def test_a_run_stores_results_equal_to_the_methods_on_its_exported_csvs(complete_trial,
                                                                         django_capture_on_commit_callbacks):
    sim = complete_trial()
    plan = freeze_default_plan(sim)
    run = run_now(sim, django_capture_on_commit_callbacks)
    assert run.status == RunStatus.DONE, run.error
    assert run.progress == 100 and run.plan_version == plan.version and run.plan_sha256 == plan.sha256
    assert set(run.code_version) >= {"package", "methods_sha256", "analysis_sha256"}
    # the snapshot file is the one hashed
    with run.dataset.open("rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == run.dataset_sha256
    assert run.dataset_rows["reads"] == 32 and run.dataset_rows["quality_scores"] == 96

    _, data = services.export_run(run=run, by=sim.statistician)
    files = zip_members(data)
    results = selectors.visible_results(run)
    a = results["analyses"]
    t, r = "X", "Y"

    # quality, paired case means (a fixed-readers sensitivity now): per case and arm the mean expert score
    q = csv_rows(files["csv/quality_scores.csv"])
    by = defaultdict(list)
    for row in q:
        by[(row["case"], row["arm"])].append(float(row["score"]))
    cases = sorted({c for c, _ in by if (c, t) in by and (c, r) in by})
    expected = compare_paired([np.mean(by[(c, t)]) for c in cases], [np.mean(by[(c, r)]) for c in cases])
    got = a["quality.paired"]["result"]
    assert a["quality.paired"]["role"] == "sensitivity" and a["quality.paired"]["fixed_readers"]
    assert got["n_cases"] == expected.n_cases == 16
    for key in ("mean_difference", "low", "high", "statistic", "pvalue"):
        assert close(got["t"][key], getattr(expected.t, key)), key
    assert close(got["wilcoxon"]["statistic"], expected.wilcoxon.statistic)
    assert close(got["wilcoxon"]["pvalue"], expected.wilcoxon.pvalue)

    # the case's site and the read's period, as every model sees them
    site = {x["case"]: x["site"] for x in csv_rows(files["csv/cases.csv"])}
    reads_all = csv_rows(files["csv/reads.csv"])
    period = {x["read"]: x["period"] for x in reads_all}

    def columns(rows, value):
        return {"y": np.array([float(x[value]) for x in rows]), "arm": np.array([x["arm"] for x in rows]),
                "case": np.array([x["case"] for x in rows]), "reader": np.array([x["reader"] for x in rows]),
                "expert": np.array([x.get("expert", "") for x in rows]),
                "site": np.array([site[x["case"]] for x in rows]),
                "period": np.array([period[x["read"]] for x in rows])}

    # primary: quality by the LMM with the terms and covariates the run reports it used
    primary = a["quality.lmm"]
    assert primary["role"] == "primary" and primary["random_terms"] == ["case", "reader", "expert", "case:arm"]
    data_q = columns(q, "score")
    lmm_q = fit_lmm(data_q, outcome="y", random=primary["random_terms"], covariates=primary["covariates"],
                    treatment=t, reference=r)
    for key in ("estimate", "se", "df", "pvalue"):
        assert close(primary["result"][key], getattr(lmm_q, key), rel=1e-6), key
    assert results["multiplicity"]["primary"]["pvalue"] == primary["pvalues"][0]["pvalue"]

    # reading time: LMM on log active seconds (and on seconds for the difference in seconds)
    reads = [row for row in reads_all if row["status"] == "submitted" and float(row["active_seconds"]) > 0]
    data_t = columns(reads, "active_seconds")
    a_t = a["reading_time.lmm"]
    lmm = fit_lmm(data_t, outcome="y", random=a_t["random_terms"], covariates=a_t["covariates"], log=True,
                  treatment=t, reference=r)
    got = a_t["result"]
    for key in ("estimate", "se", "df", "pvalue"):
        assert close(got[key], getattr(lmm, key), rel=1e-6), key
    assert close(got["percent_reduction"], lmm.percent_reduction, rel=1e-6)
    seconds = fit_lmm(data_t, outcome="y", random=a_t["random_terms"], covariates=a_t["covariates"],
                      treatment=t, reference=r)
    assert close(a_t["summary"]["difference_seconds"], seconds.estimate, rel=1e-6)

    # the ordinal sensitivity: the multi-intercept cumulative-logit model, small-sample corrected
    o = a["quality.ordinal_glmm"]
    data_q["y"] = data_q["y"].astype(int)
    ordinal = fit_ordinal_glmm(data_q, outcome="y", random=o["random_terms"], covariates=o["covariates"],
                               treatment=t, reference=r)
    assert close(o["result"]["estimate"], ordinal.estimate, rel=1e-6)
    assert close(o["result"]["pvalue"], ordinal.pvalue, rel=1e-5)

    # preference: the GLMM on the votes (X the treatment arm), readers from the pair's two reports
    p = csv_rows(files["csv/preferences.csv"])
    readers = [(x["left_reader"], x["right_reader"]) if x["left_arm"] == t else (x["right_reader"], x["left_reader"])
               for x in p]
    votes = {"case": [x["case"] for x in p], "expert": [x["expert"] for x in p],
             "treatment_reader": [a for a, _ in readers], "reference_reader": [b for _, b in readers],
             "preferred": [x["preferred"] for x in p]}
    glmm = fit_preference_glmm(votes, treatment=t, reference=r)
    got = a["preference.glmm"]
    assert close(got["result"]["estimate"], glmm.estimate, rel=1e-6) and close(got["result"]["pvalue"], glmm.pvalue,
                                                                                 rel=1e-5)
    assert got["summary"]["denominator"].startswith(f"{glmm.n_votes} decisive votes of {len(p)} votes")
    # ... and case majorities (fixed readers): at least 3 votes for a majority
    pref = analyse_preference(case=[x["case"] for x in p], expert=[x["expert"] for x in p],
                              choice=[x["preferred"] for x in p], treatment=t, reference=r,
                              side=["left" if x["left_arm"] == t else "right" for x in p], min_votes=3)
    got = a["preference.binomial"]["result"]
    assert (got["wins"], got["losses"], got["ties"]) == (pref.wins, pref.losses, pref.ties)
    assert close(got["pvalue"], pref.pvalue) and close(got["low"], pref.low) and close(got["high"], pref.high)
    assert close(got["votes_all"]["share"], pref.votes_all.share)  # neutral keys: nothing renamed for masking
    assert got["votes_all"]["votes_treatment"] == pref.votes_all.votes_treatment
    # one estimand per summary: the share of decisive cases with its own interval and test
    s = a["preference.binomial"]["summary"]
    assert (s["estimate"], s["low"], s["high"], s["pvalue"]) == (pref.share_decisive, pref.decisive_low,
                                                                 pref.decisive_high, pref.pvalue)

    # detection: reader calls against the reference standard
    truth = {(x["case"], x["finding"]): int(x["truth"]) for x in csv_rows(files["csv/reference_standard.csv"])}
    calls = csv_rows(files["csv/reader_calls.csv"])
    det = analyse_detection(case=[x["case"] for x in calls], arm=[x["arm"] for x in calls],
                            reader=[x["reader"] for x in calls], finding=[x["finding"] for x in calls],
                            truth=[truth[(x["case"], x["finding"])] for x in calls], call=[x["call"] for x in calls],
                            arms=(t, r))
    assert json.loads(json.dumps(a["detection.mcnemar"]["result"]["findings"][0]["arms"])) == \
        json.loads(json.dumps([{"arm": x.arm, "sensitivity": vars(x.sensitivity), "specificity": vars(x.specificity)}
                               for x in det.findings[0].arms]))
    dg = detection_glmm(case=[x["case"] for x in calls], arm=[x["arm"] for x in calls],
                        reader=[x["reader"] for x in calls], finding=[x["finding"] for x in calls],
                        truth=[truth[(x["case"], x["finding"])] for x in calls], call=[x["call"] for x in calls],
                        treatment=t, reference=r, random=tuple(a["detection.glmm"]["random_terms"]))
    for measure, entry in zip(("sensitivity", "specificity"), a["detection.glmm"]["pvalues"]):
        fit = dg.pooled[measure]
        assert entry["name"] == f"pooled {measure}"
        assert close(entry["pvalue"], fit.result.pvalue if fit.result else None, rel=1e-5)

    # AI AUC per finding
    scores = csv_rows(files["csv/ai_scores.csv"])
    for finding, stored in a["ai_auc.delong"]["result"]["findings"].items():
        rows = [x for x in scores if x["finding"] == finding]
        if stored["status"] == "ok":
            auc = roc_auc([truth[(x["case"], finding)] for x in rows], [float(x["score"]) for x in rows])
            assert close(stored["result"]["auc"], auc.auc) and close(stored["result"]["se"], auc.se)

    # agreement of the experts' quality scores (a report = case, arm, reader)
    agree = analyse_agreement(item=["|".join((x["case"], x["arm"], x["reader"])) for x in q],
                              rater=[x["expert"] for x in q], score=[float(x["score"]) for x in q])
    assert close(results["agreement"]["quality"]["result"]["icc2"]["estimate"], agree.icc2.estimate)
    assert close(results["agreement"]["quality"]["result"]["fleiss"]["kappa"], agree.fleiss.kappa)

    # the key secondary family, Holm, behind the primary (changed on purpose in issue 14: the reader-aware
    # tests, and a gate)
    family = results["multiplicity"]["secondary"]
    holm = adjust_pvalues(family["pvalues"], method="holm", names=family["names"])
    assert family["adjusted"] == pytest.approx(list(holm.adjusted), rel=1e-12)
    assert family["names"] == ["reading_time.lmm", "preference.glmm", "radpeer.lmm"]
    assert family["tested"] == results["multiplicity"]["primary"]["rejected"]
    if not family["tested"]:
        assert not any(family["rejected"])

    # the CONSORT-style flow
    flow = results["flow"]
    assert flow["enrolled"] == 16 and flow["cases_read_complete"] == 16 and flow["analysed_primary"] == 16
    assert {arm: v["reads_submitted"] for arm, v in flow["arms"].items()} == {"X": 16, "Y": 16}
    assert AuditEvent.objects.filter(action="analysis_run.finished", object_id=str(run.pk)).count() == 1


@pytest.mark.django_db
def test_the_dataset_hash_is_stable_and_a_second_run_reproduces_the_results(complete_trial,
                                                                             django_capture_on_commit_callbacks):
    sim = complete_trial()
    freeze_default_plan(sim)
    first = run_now(sim, django_capture_on_commit_callbacks)
    second = run_now(sim, django_capture_on_commit_callbacks)
    assert first.number == 1 and second.number == 2
    assert first.dataset_sha256 == second.dataset_sha256
    facts, rows = selectors.dataset_rows(sim.trial)
    from stats import dataset

    snapshot = dataset.build_snapshot(trial=facts, rows=rows)
    assert dataset.sha256(dataset.snapshot_bytes(snapshot)) == first.dataset_sha256
    # same data, same plan: same numbers (up to which arm is X, a coin toss per run before unblinding)
    a1, a2 = first.results["analyses"]["quality.lmm"], second.results["analyses"]["quality.lmm"]
    sign = 1 if first.arm_mapping == second.arm_mapping else -1
    assert a1["summary"]["estimate"] == pytest.approx(sign * a2["summary"]["estimate"], rel=1e-12)
    # with X and Y swapped the Satterthwaite df comes from numerical derivatives of a differently coded design, equal
    # to ~1e-7 (lmerTest's own optimizers differ in the 6th digit); with the same coding the numbers are identical
    assert a1["summary"]["pvalue"] == pytest.approx(a2["summary"]["pvalue"], rel=1e-9 if sign == 1 else 1e-6)


@pytest.mark.django_db
def test_a_run_is_refused_before_the_trial_is_locked_and_nothing_is_written(complete_trial):
    sim = complete_trial(lock=False)
    freeze_default_plan(sim)
    events = AuditEvent.objects.count()
    with pytest.raises(WrongStatus, match="locked trial"):
        services.start_run(trial=sim.trial, by=sim.statistician)
    assert AnalysisRun.objects.count() == 0 and AuditEvent.objects.count() == events


@pytest.mark.django_db
def test_a_run_needs_a_frozen_plan(complete_trial):
    from stats import plan as plan_schema
    from stats.errors import NoFrozenPlan

    sim = complete_trial()
    services.create_plan_version(trial=sim.trial, by=sim.statistician, content=plan_schema.default_plan())
    with pytest.raises(NoFrozenPlan, match="Freeze the analysis plan"):
        services.start_run(trial=sim.trial, by=sim.statistician)
    assert AnalysisRun.objects.count() == 0


@pytest.mark.django_db
def test_running_a_run_twice_changes_nothing(complete_trial, django_capture_on_commit_callbacks):
    sim = complete_trial()
    freeze_default_plan(sim)
    run = run_now(sim, django_capture_on_commit_callbacks)
    again = services.execute_run(run_id=run.pk, task_id="a-second-delivery")
    assert again.status == RunStatus.DONE and again.results == run.results and again.task_id == run.task_id
    assert AuditEvent.objects.filter(action="analysis_run.finished").count() == 1


@pytest.mark.django_db
def test_a_failing_analysis_is_recorded_with_its_reason(complete_trial, django_capture_on_commit_callbacks,
                                                        monkeypatch):
    sim = complete_trial()
    freeze_default_plan(sim)

    def broken(*args, **kwargs):
        raise RuntimeError("the analysis broke")

    monkeypatch.setattr("stats.analysis.run_analysis", broken)
    run = run_now(sim, django_capture_on_commit_callbacks)
    assert run.status == RunStatus.FAILED and "the analysis broke" in run.error
    assert AuditEvent.objects.filter(action="analysis_run.failed").count() == 1


@pytest.mark.django_db
def test_a_finished_run_is_immutable(complete_trial, django_capture_on_commit_callbacks):
    sim = complete_trial()
    freeze_default_plan(sim)
    run = run_now(sim, django_capture_on_commit_callbacks)
    run.results = {"tampered": True}
    with pytest.raises(PermissionError):
        run.save()
    with pytest.raises(PermissionError):
        run.delete()


def test_an_analysis_the_data_cannot_support_is_reported_not_estimable_and_the_run_goes_on(monkeypatch):
    from stats import analysis, dataset, simulate
    from stats import plan as plan_schema

    def overflow(*args, **kwargs):
        raise OverflowError("math range error")

    trial, rows = simulate.simulate_rows(n_readers=8, n_cases=16, n_experts=3, seed=5)
    view = dataset.coded(dataset.build_snapshot(trial=trial, rows=rows), {"X": "assisted", "Y": "standard"})
    monkeypatch.setattr(analysis, "fit_ordinal_glmm", overflow)
    results = analysis.run_analysis(view, plan=plan_schema.validate(plan_schema.default_plan()),
                                    design="paired_parallel", findings=trial["findings"])
    ordinal = results["analyses"]["quality.ordinal_glmm"]
    assert ordinal["status"] == "not_estimable" and "math range error" in ordinal["reason"]
    assert results["analyses"]["quality.lmm"]["status"] == "ok"


@pytest.mark.django_db
def test_the_dataset_reads_the_scoring_apps_own_rows(complete_trial):
    from stats import dataset

    sim = complete_trial(lock=False)
    rows = REAL_SCORING_ROWS(sim.trial)  # nothing scored in this trial yet
    assert {"quality", "preference", "reference_standard"} <= set(rows)
    converted = dataset.from_scoring({**rows, **sim.scoring})
    assert len(converted["quality_scores"]) == 96 and {q["radpeer_score"] for q in converted["quality_scores"]} <= \
        {1, 2, 3, 4, 5}
    assert {p["preferred"] for p in converted["preferences"]} <= {"assisted", "standard", "none"}


def test_a_run_names_the_audit_trail_it_was_computed_beside(complete_trial, django_capture_on_commit_callbacks,
                                                            settings):
    from pathlib import Path

    from django.test import Client

    from trial.models import AuditEvent

    sim = complete_trial()
    freeze_default_plan(sim)
    run = run_now(sim, django_capture_on_commit_callbacks)
    finished = AuditEvent.objects.get(action="analysis_run.finished", object_id=str(run.pk))
    # the head as the run's transaction saw it: every event before the run's own "finished" event
    assert run.audit_anchor["count"] == finished.pk - 1
    assert run.audit_anchor["hash"] == AuditEvent.objects.get(pk=finished.pk - 1).hash
    anchored = [json.loads(line) for line in Path(settings.AUDIT_ANCHOR_FILE).read_text().splitlines()]
    assert any(a["count"] == run.audit_anchor["count"] and a["hash"] == run.audit_anchor["hash"] for a in anchored)
    client = Client()
    client.force_login(sim.statistician)
    page = client.get(f"/t/{sim.trial.code}/analysis/runs/{run.number}/").content.decode()
    assert f"{run.audit_anchor['count']} events, head {run.audit_anchor['hash'][:16]}" in page
