"""Bang's blinding index from the experts' guesses, in the dataset, the run and the report (issue 14 item 9)."""
from __future__ import annotations

import numpy as np
import pytest

from stats import analysis, dataset, report, simulate
from stats import plan as plan_schema
from stats.methods.blinding import bang_index_by_arm


def _with_guesses(rows, *, right: float, unsure: float, seed: int = 5):
    """Experts name the AI-assisted report with probability `right`, are unsure with `unsure`, else name the other."""
    rng = np.random.default_rng(seed)
    truth = {"treatment": [0, 0, 0], "reference": [0, 0, 0]}   # (named left, named right, unsure) by left arm
    for p in rows["preferences"]:
        u = rng.random()
        if u < unsure:
            p["guess"] = "unsure"
            truth["treatment" if p["left_arm"] == "assisted" else "reference"][2] += 1
            continue
        named = "assisted" if u < unsure + right else "standard"   # the arm named as AI-assisted
        p["guess"] = named
        group = "treatment" if p["left_arm"] == "assisted" else "reference"
        truth[group][0 if named == p["left_arm"] else 1] += 1
    return truth


def _run(rows, facts, mapping):
    view = dataset.coded(dataset.build_snapshot(trial=facts, rows=rows), mapping)
    plan = plan_schema.default_plan()
    return analysis.run_analysis(view, plan=plan, design="paired_parallel", findings=facts["findings"])


@pytest.mark.parametrize("mapping", [{"X": "assisted", "Y": "standard"}, {"X": "standard", "Y": "assisted"}])
def test_the_report_shows_bangs_index_of_the_real_arms_whichever_code_they_had(mapping):
    facts, rows = simulate.simulate_rows(n_readers=4, n_cases=40, n_experts=5, seed=3)
    truth = _with_guesses(rows, right=0.7, unsure=0.2)
    results = _run(rows, facts, mapping)
    expected = bang_index_by_arm(truth)
    assisted = next(code for code, real in mapping.items() if real == "assisted")
    standard = next(code for code, real in mapping.items() if real == "standard")
    labels = {code: f"{real} (arm {code})" for code, real in mapping.items()}
    doc = report.build_report(results, labels=labels, meta={}, assisted=assisted)
    table = next(s for s in doc["sections"] if s["id"] == "blinding")["tables"][0]
    cells = {row[0]: row for row in table["rows"]}
    shown_assisted = cells[f"{labels[assisted]} report on the left"][3]
    shown_standard = cells[f"{labels[standard]} report on the left"][3]
    assert shown_assisted.startswith(report.num(expected.treatment.estimate))
    assert shown_standard.startswith(report.num(expected.reference.estimate))
    assert expected.treatment.estimate > 0.3 and expected.reference.estimate > 0.3  # these experts can tell


def test_the_index_and_the_guesses_are_withheld_before_unblinding():
    facts, rows = simulate.simulate_rows(n_readers=4, n_cases=30, n_experts=5, seed=4)
    _with_guesses(rows, right=0.9, unsure=0.0)
    mapping = {"X": "standard", "Y": "assisted"}
    results = _run(rows, facts, mapping)
    assert results["blinding"]["status"] == "ok"
    masked_results = analysis.without_withheld(results)
    assert masked_results["blinding"]["status"] == "withheld"
    doc = report.build_report(masked_results, labels={"X": "arm X", "Y": "arm Y"}, meta={})
    table = next(s for s in doc["sections"] if s["id"] == "blinding")["tables"][0]
    assert table["rows"][0][0] == "Withheld"
    masked_view = dataset.masked(dataset.build_snapshot(trial=facts, rows=rows), mapping)
    assert "guess" not in masked_view["columns"]["preferences"]
    assert any(c["column"] == "guess" and c["withheld"] for c in dataset.dictionary_rows(masked_view=True)
               if c["file"] == "preferences")


def test_a_trial_that_did_not_ask_says_so_and_an_older_snapshot_reads_without_guesses():
    facts, rows = simulate.simulate_rows(n_readers=4, n_cases=20, n_experts=3, seed=6)
    results = _run(rows, facts, {"X": "assisted", "Y": "standard"})
    assert results["blinding"] == {"status": "not_asked"}
    snapshot = dataset.build_snapshot(trial=facts, rows=rows)
    old = {**snapshot, "tables": {**snapshot["tables"],
                                  "preferences": [row[:-1] for row in snapshot["tables"]["preferences"]]}}
    view = dataset.coded(old, {"X": "assisted", "Y": "standard"})
    assert all(r["guess"] is None for r in dataset.view_records(view, "preferences"))


def test_the_flow_names_the_model_versions_the_experts_per_report_and_the_unavailable_drafts():
    facts, rows = simulate.simulate_rows(n_readers=4, n_cases=24, n_experts=5, seed=8)
    drop = {rows["quality_scores"][0]["case"]}
    rows["quality_scores"] = [q for q in rows["quality_scores"]
                              if not (q["case"] in drop and q["arm"] == "assisted" and q["expert"] == "E5")]
    results = _run(rows, facts, {"X": "assisted", "Y": "standard"})
    flow = results["flow"]
    assert flow["model_versions"] == sorted({a["model"] for a in rows["ai_scores"]})
    assert flow["experts_per_report"]["min"] == 4 and flow["experts_per_report"]["max"] == 5
    doc = report.build_report(results, labels={"X": "arm X", "Y": "arm Y"}, meta={})
    assert "cases whose AI draft was unavailable" in doc["ai_unavailable"]
