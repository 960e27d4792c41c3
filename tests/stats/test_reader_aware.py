"""The reader-aware defaults of a run (issue 14): old plans as meant, subgroups, time in seconds, crossover."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

from stats import analysis, dataset, report, simulate
from stats import plan as plan_schema
from stats.methods.glmm import fit_preference_glmm
from stats.methods.lmm import fit_lmm, fit_lmm_interaction, fstat_ddf

DATA = Path(__file__).parent / "data"
MAPPING = {"X": "assisted", "Y": "standard"}


@pytest.fixture(scope="module")
def snapshot():
    facts, rows = simulate.simulate_rows(n_readers=12, n_cases=60, n_experts=3, seed=21)
    return facts, rows, dataset.build_snapshot(trial=facts, rows=rows)


def _run(snapshot, plan, design="paired_parallel"):
    facts, _, snap = snapshot
    return analysis.run_analysis(dataset.coded(snap, MAPPING), plan=plan, design=design, findings=facts["findings"])


def test_a_frozen_schema_1_plan_runs_as_it_was_meant_with_honest_labels(snapshot):
    old = json.loads((DATA / "plans_schema1.json").read_text(encoding="utf-8"))["plans"]["paired_parallel"]
    before = json.dumps(old, sort_keys=True)
    res = _run(snapshot, old)
    assert json.dumps(old, sort_keys=True) == before
    assert res["plan_schema"] == 1 and res["plan_read_as"]["gatekeeping"] is False
    primary = res["analyses"]["quality.paired"]
    assert primary["role"] == "primary" and primary["fixed_readers"]
    assert "fixed readers — not a test of the AI effect" in primary["test_label"]
    assert res["analyses"]["quality.lmm"]["covariates"] == []           # schema 1 had no covariates
    assert res["multiplicity"]["secondary"]["tested"] is True          # nor a gate
    assert list(res["multiplicity"]["secondary"]["names"]) == ["reading_time.lmm", "preference.binomial",
                                                               "radpeer.paired"]


def test_the_default_run_labels_fixed_reader_analyses_and_keeps_them_out_of_every_family(snapshot):
    res = _run(snapshot, plan_schema.validate(plan_schema.default_plan()))
    fixed = [a for a in res["analyses"].values() if a.get("fixed_readers")]
    assert {a["key"] for a in fixed} >= {"quality.paired", "reading_time.paired", "preference.binomial",
                                         "detection.mcnemar"}
    assert all(a["role"] == "sensitivity" for a in fixed)
    for family in ("secondary", "exploratory", "subgroup"):
        names = res["multiplicity"][family]["names"]
        assert not any(n.split(":")[0] in {a["key"] for a in fixed} for n in names)
    doc = report.build_report(res, labels={"X": "arm X", "Y": "arm Y"}, meta={})
    text = json.dumps(doc, ensure_ascii=False)
    assert text.count("fixed readers") >= len(fixed)


def test_reading_time_reports_the_difference_in_seconds_from_the_lmm_on_seconds(snapshot):
    plan = plan_schema.default_plan()
    plan.update(secondary=[], sensitivity=[{"endpoint": "reading_time", "test": "wall_lmm"}], exploratory=[],
                subgroups=[], primary={"endpoint": "reading_time", "test": "lmm"})
    res = _run(snapshot, plan_schema.validate(plan))
    _, rows, _ = snapshot
    site = {c["case"]: c["site"] for c in rows["cases"]}
    for key, field in (("reading_time.lmm", "active_seconds"), ("reading_time.wall_lmm", "wall_seconds")):
        a = res["analyses"][key]
        data = {"y": np.array([r[field] for r in rows["reads"]]), "arm": np.array([r["arm"] for r in rows["reads"]]),
                "case": np.array([r["case"] for r in rows["reads"]]),
                "reader": np.array([r["reader"] for r in rows["reads"]]),
                "site": np.array([site[r["case"]] for r in rows["reads"]])}
        seconds = fit_lmm(data, outcome="y", random=a["random_terms"], covariates=a["covariates"],
                          treatment="assisted", reference="standard")
        s = a["summary"]
        assert s["difference_seconds"] == pytest.approx(seconds.estimate, rel=1e-9)
        assert s["difference_seconds_ci"] == pytest.approx(list(seconds.confidence_interval(0.95)), rel=1e-9)
        assert s["difference_seconds_df"] == pytest.approx(seconds.df, rel=1e-9)
        logged = fit_lmm(data, outcome="y", random=a["random_terms"], covariates=a["covariates"], log=True,
                         treatment="assisted", reference="standard")
        assert s["estimate"] == pytest.approx(logged.ratio, rel=1e-9)


def test_every_subgroup_level_is_analysed_with_an_interaction_test_and_a_forest_row(snapshot):
    res = _run(snapshot, plan_schema.validate(plan_schema.default_plan()))
    subs = {s["name"]: s for s in res["subgroups"]}
    assert [lv["label"] for lv in subs["site"]["levels"]] == ["site site-a", "site site-b", "site site-c"]
    assert [lv["key"] for lv in subs["complex_reference"]["levels"]] == ["ge3", "lt3"]
    assert sum(lv["cases"] for lv in subs["complex_reference"]["levels"]) == 60
    for name, sub in subs.items():
        for endpoint in sub["endpoints"]:
            for lv in sub["levels"]:
                a = res["analyses"][f"subgroup.{name}.{lv['key']}.{endpoint}.lmm"]
                assert a["status"] == "ok" and a["subgroup_level"] == lv["label"], a.get("reason")
            inter = res["analyses"][f"subgroup.{name}.{endpoint}.interaction"]
            assert inter["status"] == "ok" and inter["role"] == "subgroup_interaction"
            assert inter["result"]["df_numerator"] == len(sub["levels"]) - 1
    forest = report.forest_rows(res)
    labels = [name for rows in forest.values() for name, *_ in rows]
    assert any("site: site site-b" in n for n in labels) and any("complex_ai: < 3" in n for n in labels)


def test_a_one_df_interaction_f_is_the_square_of_its_t():
    from stats.methods.simulation import SimulationParameters, simulate_trial

    tr = simulate_trial(SimulationParameters(n_cases=80, n_readers=12), seed=4)
    s = dict(tr.scores)
    s["half"] = np.where(np.array([int(c[1:]) % 2 for c in s["case"]]) == 0, "even", "odd")
    res = fit_lmm_interaction(s, outcome="score", random=["case", "reader", "expert", "case:arm"], by="half",
                              covariates=["site"], treatment="treatment", reference="reference")
    (name, coef), = res.coefficients.items()
    assert name == "armtreatment:halfodd" and res.df_numerator == 1
    assert res.statistic == pytest.approx((coef / res.coefficients_se[name]) ** 2, rel=1e-10)


def test_the_denominator_df_of_an_f_combines_its_t_statistics_as_lmertest_does():
    assert fstat_ddf([7.3]) == 7.3
    assert fstat_ddf([5.0, 5.0]) == 5.0
    assert fstat_ddf([1.5, 9.0]) == 2.0                    # some ν ≤ 2: lmerTest returns 2
    nu = np.array([4.0, 10.0, 30.0])
    e = float(np.sum(nu / (nu - 2)))
    assert fstat_ddf(nu) == pytest.approx(2 * e / (e - 3))


def test_the_preference_glmm_takes_each_pairs_readers_and_falls_back_to_the_reads(snapshot):
    facts, rows, snap = snapshot
    plan = plan_schema.default_plan()
    plan.update(primary={"endpoint": "preference", "test": "glmm"}, secondary=[], sensitivity=[], exploratory=[],
                subgroups=[])
    plan = plan_schema.validate(plan)
    with_readers = _run(snapshot, plan)["analyses"]["preference.glmm"]
    bare = {**rows, "preferences": [{**p, "left_reader": None, "right_reader": None} for p in rows["preferences"]]}
    fallback = analysis.run_analysis(dataset.coded(dataset.build_snapshot(trial=facts, rows=bare), MAPPING),
                                     plan=plan, design="paired_parallel", findings=facts["findings"])
    assert fallback["analyses"]["preference.glmm"]["result"] == with_readers["result"]
    reader = {(r["case"], r["arm"]): r["reader"] for r in rows["reads"]}
    direct = fit_preference_glmm({"case": [p["case"] for p in rows["preferences"]],
                                  "expert": [p["expert"] for p in rows["preferences"]],
                                  "treatment_reader": [reader[(p["case"], "assisted")] for p in rows["preferences"]],
                                  "reference_reader": [reader[(p["case"], "standard")] for p in rows["preferences"]],
                                  "preferred": [{"assisted": "X", "standard": "Y"}.get(p["preferred"], "none")
                                                for p in rows["preferences"]]}, treatment="X", reference="Y")
    assert with_readers["result"]["estimate"] == pytest.approx(direct.estimate, rel=1e-9)
    assert with_readers["summary"]["denominator"].startswith(f"{direct.n_votes} decisive votes of ")


def test_the_scoring_rows_readers_become_arm_neutral_left_and_right_readers():
    out = dataset.from_scoring({"preference": [
        {"case": "C1", "expert": "E1", "preferred_arm": "assisted", "left_arm": "standard",
         "reader_assisted": "R01", "reader_standard": "R02"}]})
    p = out["preferences"][0]
    assert (p["left_reader"], p["right_reader"]) == ("R02", "R01")
    assert "left_reader" in dataset.ENTITY["preferences"].names and dataset.FORMAT >= 2


# --------------------------------------------------------------------------------------------
# A crossover: every reader reads every case in both arms, in two periods


def _crossover_rows(seed: int = 3, n_readers: int = 6, n_cases: int = 24, n_experts: int = 3):
    rng = np.random.default_rng(seed)
    t0 = datetime(2026, 2, 1, tzinfo=UTC)
    readers = [f"R{j + 1:02d}" for j in range(n_readers)]
    first = {r: ("assisted" if j % 2 else "standard") for j, r in enumerate(readers)}
    cases = [f"C{c + 1:03d}" for c in range(n_cases)]
    site = {c: ("site-a" if i % 2 else "site-b") for i, c in enumerate(cases)}
    rows = {k: [] for k in ("cases", "allocations", "reads", "reading_events", "reports", "reader_calls",
                            "quality_scores", "preferences", "reference_standard", "ai_scores")}
    for i, c in enumerate(cases):
        rows["cases"].append({"case": c, "site": site[c], "enrolled_at": t0.isoformat(), "view_position": "PA"})
        rows["reference_standard"].append({"case": c, "finding": "effusion", "truth": int(i % 3 == 0),
                                           "source": "majority"})
        rows["ai_scores"].append({"case": c, "finding": "effusion", "score": float(expit(2 * (i % 3 == 0) - 1)),
                                  "model": "m"})
    reader_q = dict(zip(readers, rng.normal(0, 0.3, n_readers)))
    case_q = dict(zip(cases, rng.normal(0, 0.5, n_cases)))
    read_id = 0
    quality = {}
    for j, r in enumerate(readers):
        rows["allocations"].append({"unit_type": "reader", "unit": r, "stratum": "site-a", "position": j,
                                    "block": j // 2, "block_size": 2, "arm": first[r], "allocated_at": t0.isoformat()})
        for c in cases:
            for arm in ("assisted", "standard"):
                read_id += 1
                period = 1 if arm == first[r] else 2
                seconds = float(np.exp(4.5 - 0.2 * (arm == "assisted") + reader_q[r] + rng.normal(0, 0.3)))
                rows["reads"].append({"read": read_id, "case": c, "reader": r, "reader_site": "site-a", "arm": arm,
                                      "period": period, "status": "submitted", "opened_at": t0.isoformat(),
                                      "submitted_at": t0.isoformat(), "wall_seconds": seconds * 1.1,
                                      "active_seconds": seconds})
                rows["reports"].append({"report": read_id, "read": read_id, "case": c, "reader": r, "arm": arm,
                                        "version": 1, "final": 1, "created_at": t0.isoformat(), "signed": 0,
                                        "signed_at": None, "findings": "", "impression": "", "reason": "",
                                        "draft_kept_share": None, "draft_edit_distance": None})
                rows["reader_calls"].append({"read": read_id, "case": c, "reader": r, "arm": arm,
                                             "finding": "effusion", "call": int(rng.random() < 0.5)})
                q = 3.6 + 0.2 * (arm == "assisted") + reader_q[r] + case_q[c] + rng.normal(0, 0.3)
                quality[(c, r, arm)] = q
                for e in range(n_experts):
                    score = int(np.clip(np.rint(q + rng.normal(0, 0.6)), 1, 5))
                    rows["quality_scores"].append({"case": c, "arm": arm, "reader": r, "read": read_id,
                                                   "report_version": 1, "expert": f"E{e + 1}", "score": score,
                                                   "radpeer": "1", "radpeer_score": 5, "seconds": 30.0})
            for e in range(n_experts):
                u = quality[(c, r, "assisted")] - quality[(c, r, "standard")] + rng.normal(0, 0.5)
                left = "assisted" if rng.random() < 0.5 else "standard"
                rows["preferences"].append({"case": c, "expert": f"E{e + 1}", "left_arm": left, "left_reader": r,
                                            "right_reader": r, "seconds": 20.0, "guess": None,
                                            "preferred": "assisted" if u > 0.2 else "standard" if u < -0.2 else "none"})
    facts = {"code": "xo", "design": "crossover", "findings": ["effusion"], "experts_per_item": n_experts}
    return facts, rows


def test_a_crossover_runs_its_default_plan_with_reader_by_arm_and_period():
    facts, rows = _crossover_rows()
    snap = dataset.build_snapshot(trial=facts, rows=rows)
    res = analysis.run_analysis(dataset.coded(snap, MAPPING), plan=plan_schema.validate(
        plan_schema.default_plan("crossover")), design="crossover", findings=facts["findings"])
    q = res["analyses"]["quality.lmm"]
    assert q["status"] == "ok", q.get("reason")
    assert "reader:arm" in q["random_terms"] and "case:arm:reader" in q["random_terms"]
    assert q["covariates"] == ["site", "period"]
    t = res["analyses"]["reading_time.lmm"]
    assert t["status"] == "ok" and "reader:arm" in t["random_terms"] and "period" in t["covariates"]
    g = res["analyses"]["preference.glmm"]
    assert g["status"] == "ok", g.get("reason")
    assert set(g["result"]["variance_components"]) == {"case", "expert", "reader"}     # one reader per pair
    b = res["analyses"]["preference.binomial"]
    assert b["status"] == "ok" and b["n"]["cases"] == 24 * 6 and "pairs (case, reader)" in b["summary"]["denominator"]


def test_a_preference_fit_whose_votes_the_case_all_but_decides_says_so(snapshot):
    """Where the experts of a case (nearly) always agree, the case SD runs off and the GLMM's probability for a typical
    case sits near 0 or 1 whatever the share of the votes: the run keeps glmer's fit and says so in a note."""
    facts, rows, _ = snapshot
    plan = plan_schema.validate(plan_schema.default_plan())
    regular = _run(snapshot, plan)["analyses"]["preference.glmm"]
    assert regular["status"] == "ok" and regular["result"]["deciding_terms"] == []
    assert not any("all but decided" in n for n in regular["notes"])
    # every decisive vote of a case as its first expert's (ties stay ties): unanimous cases
    first = {}
    for p in rows["preferences"]:
        if p["preferred"] != "none":
            first.setdefault(p["case"], p["preferred"])
    unanimous = dict(rows, preferences=[dict(p, preferred=first[p["case"]]) if p["preferred"] != "none" else p
                                        for p in rows["preferences"]])
    res = _run((facts, unanimous, dataset.build_snapshot(trial=facts, rows=unanimous)), plan)
    g = res["analyses"]["preference.glmm"]
    assert g["status"] == "ok" and g["result"]["deciding_terms"] == ["case"]
    assert g["result"]["variance_components"]["case"] > 100
    share = g["result"]["n_treatment"] / g["result"]["n_votes"]
    assert 0.2 < share < 0.8 and abs(g["result"]["estimate"] - 0.5) > 0.45      # far from the share of votes
    (note,) = [n for n in g["notes"] if "all but decided by the case" in n]
    assert f"({g['result']['n_treatment']} of {g['result']['n_votes']})" in note and "preference.binomial" in note
    doc = report.build_report(res, labels={"X": "arm X", "Y": "arm Y"}, meta={})   # the report shows it
    assert "all but decided by the case" in json.dumps(doc, ensure_ascii=False)
    assert "all but decided" not in json.dumps(report.build_report(_run(snapshot, plan), labels={"X": "arm X",
                                                                                                  "Y": "arm Y"},
                                                                   meta={}), ensure_ascii=False)
