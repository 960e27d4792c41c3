"""Estimands (issue 14, item 6): intercurrent events flagged and counted, strategies applied, the tipping point of the
primary for its missing outcomes, the analysis-ready table; and a plan without estimands analysed as before."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from stats import analysis, dataset, estimands, simulate
from stats import plan as plan_schema
from stats.methods.lmm import design_columns, fit_lmm, grouping_codes
from stats.methods.simulation import simulate_trial
from stats.methods.tipping import delta_weights, tipping_point

DATA = Path(__file__).parent / "data"
MAPPING = {"X": "assisted", "Y": "standard"}


def _with_events(seed: int = 11):
    """A simulated trial with every event the data can show: 3 reads not submitted, an expert's missing score,
    2 corrected reports, 2 cases without an AI draft, 1 read in the wrong arm."""
    facts, rows = simulate.simulate_rows(n_readers=8, n_cases=40, n_experts=4, seed=seed)
    rows = copy.deepcopy(rows)
    reads = rows["reads"]
    gone = {reads[i]["read"] for i in (1, 6, 11)}
    for r in reads:
        if r["read"] in gone:
            r.update(status="assigned", submitted_at=None, wall_seconds=None, active_seconds=None)
    for entity in ("quality_scores", "reports", "reader_calls"):
        rows[entity] = [x for x in rows[entity] if x["read"] not in gone]
    gone_cases = {r["case"] for r in reads if r["read"] in gone}
    rows["preferences"] = [p for p in rows["preferences"] if p["case"] not in gone_cases]
    rows["quality_scores"] = rows["quality_scores"][1:]
    corrected = [reads[3]["read"], reads[20]["read"]]
    for rid in corrected:
        first = next(x for x in rows["reports"] if x["read"] == rid)
        first["final"] = 0
        rows["reports"].append({**first, "report": 10_000 + rid, "version": 2, "final": 1, "reason": "typo"})
        for q in rows["quality_scores"]:
            if q["read"] == rid:
                q["report_version"] = 2
    no_draft = sorted(c["case"] for c in rows["cases"])[:2]
    rows["ai_scores"] = [a for a in rows["ai_scores"] if a["case"] not in no_draft]
    # a reader who read one case in the other arm (the routing never does this; a data repair might)
    wrong = reads[30]
    other = "standard" if wrong["arm"] == "assisted" else "assisted"
    wrong["arm"] = other
    for entity in ("quality_scores", "reports", "reader_calls"):
        for x in rows[entity]:
            if x["read"] == wrong["read"]:
                x["arm"] = other
    view = dataset.coded(dataset.build_snapshot(trial=facts, rows=rows), MAPPING)
    return facts, view, {"gone": gone, "corrected": set(corrected), "no_draft": set(no_draft),
                         "wrong": wrong["read"]}


@pytest.fixture(scope="module")
def events():
    return _with_events()


def test_every_event_the_data_can_show_is_flagged_and_counted(events):
    facts, view, truth = events
    flags = estimands.flag_events(view, design="paired_parallel")
    assert flags.not_submitted == truth["gone"] and flags.corrected == truth["corrected"]
    assert flags.cases_without_draft == truth["no_draft"] and flags.wrong_arm == {truth["wrong"]}
    counts = estimands.count_events(flags, arms=("X", "Y"))["events"]
    assert counts["read_not_submitted"]["n"] == 3 and sum(counts["read_not_submitted"]["reads"].values()) == 3
    assert counts["report_corrected"]["n"] == 2 and counts["wrong_arm"]["n"] == 1
    assert counts["draft_unavailable"]["cases"] == 2
    # a case-level event: the same number of reads in both arms, so it cannot tell the arms apart
    assert counts["draft_unavailable"]["reads"]["X"] == counts["draft_unavailable"]["reads"]["Y"] == 2


def test_without_ai_scores_a_missing_draft_is_not_determinable(events):
    _, view, _ = events
    view = {**view, "tables": {**view["tables"], "ai_scores": []}}
    flags = estimands.flag_events(view, design="paired_parallel")
    assert flags.cases_without_draft is None
    entry = estimands.count_events(flags, arms=("X", "Y"))["events"]["draft_unavailable"]
    assert entry["determinable"] is False and "cannot be told" in entry["note"]


def test_treatment_policy_analyses_a_wrong_arm_read_in_its_randomized_arm(events):
    facts, view, truth = events
    flags = estimands.flag_events(view, design="paired_parallel")
    spec = plan_schema.validate(plan_schema.default_plan())["estimands"]["quality"]
    used, summary = estimands.apply(view, endpoint="quality", estimand=spec, flags=flags, arms=("X", "Y"))
    moved = [q for q in dataset.view_records(used, "quality_scores") if q["read"] == truth["wrong"]]
    assert moved and all(q["arm"] == flags.randomized_arm[truth["wrong"]] for q in moved)
    step = next(s for s in summary["applied"] if s["event"] == "wrong_arm")
    assert step["strategy"] == "treatment_policy" and step["rows_relabelled"]["quality_scores"] == len(moved)
    # the original view is untouched
    assert all(q["arm"] != flags.randomized_arm[truth["wrong"]]
               for q in dataset.view_records(view, "quality_scores") if q["read"] == truth["wrong"])


def test_hypothetical_strategies_leave_the_affected_outcomes_out_in_both_arms(events):
    facts, view, truth = events
    flags = estimands.flag_events(view, design="paired_parallel")
    spec = plan_schema.validate(plan_schema.default_plan())["estimands"]["quality"]
    spec["intercurrent_events"].update(draft_unavailable="hypothetical", report_corrected="hypothetical",
                                       wrong_arm="hypothetical")
    used, summary = estimands.apply(view, endpoint="quality", estimand=spec, flags=flags, arms=("X", "Y"))
    scores = dataset.view_records(used, "quality_scores")
    assert not any(q["case"] in truth["no_draft"] for q in scores)
    assert not any(q["read"] in truth["corrected"] | {truth["wrong"]} for q in scores)
    votes = dataset.view_records(used, "preferences")
    assert not any(v["case"] in truth["no_draft"] for v in votes)
    assert [s["event"] for s in summary["applied"]] == ["draft_unavailable", "report_corrected", "wrong_arm"]
    assert summary["rows_after"] == len(scores) < summary["rows_before"]


def test_the_population_and_the_variable_choose_the_rows(events):
    _, view, truth = events
    flags = estimands.flag_events(view, design="paired_parallel")
    spec = {**plan_schema.default_estimands()["quality"], "population": "complete_cases",
            "summary_measure": ""}
    used, _ = estimands.apply(view, endpoint="quality", estimand=spec, flags=flags, arms=("X", "Y"))
    arms_of = {}
    for q in dataset.view_records(used, "quality_scores"):
        arms_of.setdefault(q["case"], set()).add(q["arm"])
    assert arms_of and all(len(a) == 2 for a in arms_of.values())
    signed = {**spec, "population": "all_randomized", "variable": "signed_report"}
    used, summary = estimands.apply(view, endpoint="quality", estimand=signed, flags=flags, arms=("X", "Y"))
    assert dataset.view_records(used, "quality_scores") == []          # the simulation signs no report
    time = {**plan_schema.default_estimands()["reading_time"], "variable": "wall_seconds"}
    facts = simulate.simulate_rows(n_readers=4, n_cases=12, n_experts=3, seed=2)
    v2 = dataset.coded(dataset.build_snapshot(trial=facts[0], rows=facts[1]), MAPPING)
    res = analysis.run_analysis(v2, plan={**plan_schema.default_plan(), "estimands": {"reading_time": time}},
                                design="paired_parallel", findings=facts[0]["findings"])
    wall = res["analyses"]["reading_time.lmm"]
    same = res["analyses"]["reading_time.wall_lmm"]
    assert wall["status"] == same["status"] == "ok"
    assert wall["result"]["estimate"] == same["result"]["estimate"]     # the variable is wall time now


def _approx_tree(value):
    if isinstance(value, dict):
        return {k: _approx_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_approx_tree(v) for v in value]
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-3, abs=1e-9, nan_ok=True)
    return value


def _higher_maxima(new: dict, old: dict) -> list[str]:
    """The per-finding fits of `new` (a detection.glmm analysis) at a higher log-likelihood than `old`'s (by more
    than 1e-6), put in place of the old ones for the comparison that follows; their names."""
    moved = []
    for finding, measures in new["result"]["findings"].items():
        for measure, fit in measures.items():
            before = old["result"]["findings"][finding][measure]
            if fit.get("status") == "ok" and before.get("status") == "ok" and \
                    fit["result"]["log_likelihood"] > before["result"]["log_likelihood"] + 1e-6:
                old["result"]["findings"][finding][measure] = fit
                moved.append(f"{finding}/{measure}")
    return sorted(moved)


def test_a_plan_without_estimands_analyses_every_row_as_recorded_and_matches_the_schema_2_results():
    stored = json.loads((DATA / "plans_schema2.json").read_text())
    old = json.loads((DATA / "results_schema2.json").read_text())
    facts, rows = simulate.simulate_rows(n_readers=4, n_cases=40, n_experts=5, seed=11)
    view = dataset.coded(dataset.build_snapshot(trial=facts, rows=rows), MAPPING)
    new = analysis.without_withheld(analysis.run_analysis(view, plan=stored["plans"]["paired_parallel"],
                                                          design="paired_parallel", findings=facts["findings"]))
    new = json.loads(plan_schema.canonical_json(new))
    # Numbers to optimizer precision, not to the last bit: the stored results were fitted with another BLAS and numpy,
    # and the small subgroup fits (flat likelihoods) move in the 4th digit between them; everything else is equal.
    # Since stop 22 the binomial GLMMs start twice and keep the higher of two likelihood maxima: a per-finding
    # detection fit whose likelihood had a higher maximum far out in the case SD is that one now (higher, by the
    # log-likelihood), and the preference result lists its deciding terms (none here).
    assert new["analyses"]["preference.glmm"]["result"].pop("deciding_terms") == []
    moved = _higher_maxima(new["analyses"]["detection.glmm"], old["analyses"]["detection.glmm"])
    assert moved == ["atelectasis/specificity", "cardiomegaly/specificity", "consolidation/specificity"]
    for key in ("analyses", "multiplicity", "subgroups", "descriptives", "agreement"):
        assert _approx_tree(new[key]) == old[key], key
    # the flow has gained the CONSORT-AI rows since (model versions, experts per report, the screening log,
    # withdrawals and deviations, signed cases, cases without a draft, and per arm the re-routed reads): the old ones
    # are unchanged
    def old_keys(flow: dict) -> dict:
        out = {k: v for k, v in flow.items() if k in old["flow"]}
        out["arms"] = {arm: {k: v for k, v in counts.items() if k in old["flow"]["arms"][arm]}
                       for arm, counts in flow["arms"].items()}
        return out

    assert old_keys(new["flow"]) == old["flow"]
    assert set(new["flow"]) - set(old["flow"]) == {
        "model_versions", "experts_per_report", "screened", "images_added", "not_enrolled", "deviations",
        "intercurrent_events", "cases_withdrawn", "readers_withdrawn", "cases_signed_complete",
        "cases_without_ai_draft"}
    assert all(not e["specified"] for e in new["estimands"]["endpoints"].values())
    assert new["tipping_point"] == {"status": "not_planned"}


def test_a_run_applies_each_endpoints_estimand_and_reports_it(events):
    facts, view, truth = events
    plan = plan_schema.default_plan()
    plan["estimands"] = {"quality": {"intercurrent_events": {"draft_unavailable": "hypothetical"}}}
    res = analysis.run_analysis(view, plan=plan, design="paired_parallel", findings=facts["findings"])
    base = analysis.run_analysis(view, plan=plan_schema.default_plan(), design="paired_parallel",
                                 findings=facts["findings"])
    q, q0 = res["analyses"]["quality.lmm"], base["analyses"]["quality.lmm"]
    assert q["n"]["levels_case"] == q0["n"]["levels_case"] - 2
    assert res["analyses"]["radpeer.lmm"] == base["analyses"]["radpeer.lmm"]     # its estimand is unchanged
    ep = res["estimands"]["endpoints"]["quality"]
    assert ep["strategies"]["draft_unavailable"]["strategy"] == "hypothetical"
    assert ep["summary_measure"].startswith("difference in mean quality score X − Y")


# ------------------------------------------------------------------------------------------- tipping point


def test_the_delta_weights_equal_a_brute_force_imputation_and_refit():
    # complete the data with the MAR conditional means, shift the imputed outcomes and refit by GLS at the fit's V:
    # the estimate moves by δ_X w_X + δ_Y w_Y exactly, and is the observed-data estimate at δ = 0
    tr = simulate_trial(seed=3, n_cases=30, n_readers=6, n_experts=3, n_sites=2, quality_effect=0.3)
    s = {k: np.asarray(v) for k, v in tr.scores.items()}
    n = s["score"].size
    rng = np.random.default_rng(1)
    miss = (rng.random(n) < 0.15) | np.isin(s["read"], rng.choice(np.unique(s["read"]), 4, replace=False))
    terms = ["case", "reader", "expert", "case:arm"]
    fit = fit_lmm({k: v[~miss] for k, v in s.items()}, outcome="score", random=terms, covariates=["site"],
                  treatment="treatment", reference="reference")
    w = delta_weights(s, missing=miss, random=terms, variance_components=fit.variance_components,
                      residual_variance=fit.residual_variance, covariates=["site"], treatment="treatment",
                      reference="reference")
    X, _ = design_columns(s, arm="arm", covariates=["site"], treatment="treatment", reference="reference", n=n)
    V = fit.residual_variance * np.eye(n)
    for t in terms:
        codes, m = grouping_codes(s, t, n)
        Z = np.zeros((n, m))
        Z[np.arange(n), codes] = 1
        V += fit.variance_components[t] * Z @ Z.T
    y, o = s["score"].astype(float), ~miss
    Vi = np.linalg.inv(V[np.ix_(o, o)])
    beta = np.linalg.solve(X[o].T @ Vi @ X[o], X[o].T @ Vi @ y[o])
    assert beta[1] == pytest.approx(fit.estimate, rel=1e-9)
    completed = y.copy()
    completed[miss] = X[miss] @ beta + V[np.ix_(miss, o)] @ Vi @ (y[o] - X[o] @ beta)
    Vinv = np.linalg.inv(V)
    arm = s["arm"]
    for dx, dy in ((0.0, 0.0), (0.5, 0.0), (0.0, -0.7), (0.3, 0.2)):
        shifted = completed.copy()
        shifted[miss & (arm == "treatment")] += dx
        shifted[miss & (arm == "reference")] += dy
        refit = np.linalg.solve(X.T @ Vinv @ X, X.T @ Vinv @ shifted)[1]
        assert refit == pytest.approx(fit.estimate + dx * w.treatment + dy * w.reference, abs=1e-10)
    assert w.missing_treatment + w.missing_reference == int(miss.sum())


def test_the_tipping_point_is_where_the_conclusion_changes():
    from stats.methods.tipping import DeltaWeights

    w = DeltaWeights(treatment=0.1, reference=-0.08, missing_treatment=10, missing_reference=8,
                     expected_treatment=100, expected_reference=100)
    sig = tipping_point(estimate=0.5, se=0.15, df=14.0, alpha=0.05, weights=w)
    assert sig.significant and sig.favoured == "treatment" and sig.shift < 0
    at = sig.grid[4]                                 # the grid runs to twice the shift; its middle is the shift
    assert at["shift"] == pytest.approx(sig.shift) and at["pvalue"] == pytest.approx(0.05)
    assert sig.grid[3]["significant"] and not sig.grid[5]["significant"]
    both = 0.5 + sig.shift_both * (0.1 + 0.08)
    assert both == pytest.approx(sig.critical * 0.15)
    nonsig = tipping_point(estimate=-0.1, se=0.15, df=14.0, alpha=0.05, weights=w)
    assert not nonsig.significant and nonsig.favoured == "reference"
    assert -0.1 + nonsig.shift * -0.08 == pytest.approx(-nonsig.critical * 0.15)
    none = tipping_point(estimate=0.5, se=0.15, df=14.0, alpha=0.05,
                         weights=DeltaWeights(0.0, -0.1, 0, 5, 100, 100))
    assert none.shift is None and none.grid == []


def test_a_run_reports_the_tipping_point_of_its_primary(events):
    facts, view, _ = events
    res = analysis.run_analysis(view, plan=plan_schema.default_plan(), design="paired_parallel",
                                findings=facts["findings"])
    tp = res["tipping_point"]
    assert tp["status"] == "ok" and tp["analysis"] == "quality.lmm" and tp["scale"] == "points"
    # 3 reads not submitted × 4 experts, and the one expert's missing score
    assert sum(tp["missing"].values()) == 13 and tp["reads_without_outcome"] == 3
    primary = res["analyses"]["quality.lmm"]["result"]
    assert tp["estimate"] == primary["estimate"] and tp["se"] == primary["se"]
    fav = tp["favoured"]
    assert tp["estimate"] + tp["shift"] * tp["weights"][fav] == pytest.approx(
        np.sign(tp["estimate"]) * tp["critical_t"] * tp["se"])
    plan = {**plan_schema.default_plan(), "primary": {"endpoint": "quality", "test": "ordinal_glmm"},
            "sensitivity": []}
    other = analysis.run_analysis(view, plan=plan, design="paired_parallel", findings=facts["findings"])
    assert other["tipping_point"]["status"] == "not_computed" and "linear mixed model" in \
        other["tipping_point"]["reason"]


# -------------------------------------------------------------------------------------- the analysis table


def by_case_of(table: list[dict], read: int) -> str:
    return next(r["case"] for r in table if r["read"] == read)


def test_the_analysis_table_has_one_row_per_report_with_its_flags_and_populations(events):
    facts, view, truth = events
    plan = plan_schema.validate(plan_schema.default_plan())
    plan["estimands"]["quality"]["intercurrent_events"]["report_corrected"] = "hypothetical"
    names, rows = estimands.analysis_table(view, plan=plan, design="paired_parallel")
    table = [dict(zip(names, r)) for r in rows]
    # 80 reads; the wrong-arm read left its case without a read in one arm, which gets a row of its own
    assert len(table) == 81 and len([r for r in table if r["read"] is not None]) == 80
    (empty,) = [r for r in table if r["read_status"] == "not_routed"]
    assert empty["case"] == by_case_of(table, truth["wrong"]) and empty["in_quality"] == 0
    by_read = {r["read"]: r for r in table if r["read"] is not None}
    assert all(by_read[i]["ie_read_not_submitted"] == 1 and by_read[i]["quality_n"] == 0 for i in truth["gone"])
    assert all(by_read[i]["ie_report_corrected"] == 1 and by_read[i]["in_quality"] == 0
               and by_read[i]["in_radpeer"] == 1 for i in truth["corrected"])
    assert by_read[truth["wrong"]]["ie_wrong_arm"] == 1
    assert {r["case"] for r in table if r["ie_draft_unavailable"] == 1} == truth["no_draft"]
    scores = [q for q in dataset.view_records(view, "quality_scores") if q["read"] == table[0]["read"]]
    assert table[0]["quality_mean"] == pytest.approx(np.mean([q["score"] for q in scores]))
    assert [c["column"] for c in estimands.analysis_table_dictionary()] == names
