"""The plan's interim section (validation, older plans), the pure looks (stats.interim), the pooled fit, the report."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from stats import dataset, interim, report
from stats import plan as P
from stats.methods.group_sequential import boundaries
from stats.methods.lmm import fit_lmm, fit_pooled_lmm
from stats.simulate import simulate_rows


def _plan(**interim_section):
    plan = P.default_plan()
    plan["power"] = copy.deepcopy(P.POWER_DEFAULTS)
    plan["interim"] = interim_section
    return plan


@pytest.mark.parametrize("section, message", [
    ({}, "plan at least one look"),
    ({"safety": {"fractions": [0.5, 0.4]}}, "must increase"),
    ({"safety": {"fractions": []}}, "give the information fractions"),
    ({"safety": {"fractions": [0.5], "margin": 2}}, "margin"),
    ({"safety": {"fractions": [0.5], "critical_findings": ["pneumothorax", "pneumothorax"]}}, "named twice"),
    ({"efficacy": {"fractions": [1.0]}}, "the final analysis is the look at 1"),
    ({"efficacy": {"fractions": [0.5], "spending": "haybittle"}}, "obrien_fleming, pocock"),
    ({"blinded_ssr": {"fraction": 0}}, "lies in (0, 1)"),
    ({"efficacy": {"fractions": [0.5]}, "looks": 3}, "unknown settings looks"),
    ({"safety": {"fractions": [0.5]}, "planned_cases": 1}, "planned_cases"),
])
def test_an_interim_section_that_cannot_be_used_is_refused_with_its_reason(section, message):
    with pytest.raises(P.PlanError, match=message.replace("(", r"\(").replace(")", r"\)")) as exc:
        P.validate(_plan(**section))
    assert exc.value.field == "interim"


def test_a_blinded_reestimation_needs_the_power_section_and_cases_need_a_source():
    plan = _plan(blinded_ssr={"fraction": 0.5})
    plan["power"] = None
    with pytest.raises(P.PlanError, match="planned_cases or a power section"):
        P.validate(plan)
    plan["interim"]["planned_cases"] = 100
    with pytest.raises(P.PlanError, match="planned effect"):
        P.validate(plan)


def test_a_valid_section_is_kept_with_its_defaults_and_the_power_sections_cases():
    clean = P.validate(_plan(blinded_ssr={"fraction": 0.5}, safety={"fractions": [0.25, 0.5]},
                             efficacy={"fractions": [0.5]}))
    assert clean["interim"] == {
        "planned_cases": P.POWER_DEFAULTS["n_cases"], "blinded_ssr": {"fraction": 0.5},
        "safety": {"fractions": [0.25, 0.5], "critical_findings": None, "margin": 0.0},
        "efficacy": {"fractions": [0.5], "spending": "obrien_fleming"}}
    assert P.validate(clean) == clean     # a frozen copy reads back as itself
    assert any("O’Brien–Fleming" in line for line in P.interim_lines(clean))


def test_a_plan_without_the_section_plans_no_look_and_keeps_its_hash():
    default = P.default_plan()
    assert "interim" not in default and "interim" not in P.validate(default)
    assert P.interim_lines(default) == []
    before = P.plan_sha256(trial_code="t", version=1, content=P.validate(default))
    assert P.plan_sha256(trial_code="t", version=1, content=P.validate(P.validate(default))) == before
    with_none = {**default, "interim": None}
    assert "interim" not in P.validate(with_none)


def test_the_pooled_fit_is_the_lmm_without_its_arm_term():
    facts, rows = simulate_rows(n_readers=8, n_cases=40, n_experts=3, seed=11, quality_effect=1.0)
    q = rows["quality_scores"]
    data = {"y": np.array([float(r["score"]) for r in q]), "arm": np.array([r["arm"] for r in q]),
            "case": np.array([r["case"] for r in q]), "reader": np.array([r["reader"] for r in q]),
            "expert": np.array([r["expert"] for r in q])}
    terms = ["case", "reader", "expert"]
    with_arm = fit_lmm(data, outcome="y", random=terms, treatment="assisted", reference="standard")
    as_covariate = fit_pooled_lmm(data, outcome="y", random=terms, covariates=["arm"])
    for term in terms:
        assert as_covariate.variance_components[term] == pytest.approx(with_arm.variance_components[term], rel=1e-6)
    pooled = fit_pooled_lmm(data, outcome="y", random=terms)
    assert "arm" not in str(pooled.fixed_effects)
    # with the arm left out, the readers (nested in arms) absorb the arm effect
    assert pooled.variance_components["reader"] > with_arm.variance_components["reader"]


def _views(quality_effect=0.25, seed=3, n_cases=120):
    facts, rows = simulate_rows(n_readers=12, n_cases=n_cases, n_experts=3, seed=seed, quality_effect=quality_effect)
    snapshot = dataset.build_snapshot(trial=facts, rows=rows)
    return facts, snapshot


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return a == pytest.approx(b, rel=1e-7, abs=1e-9)
    return a == b


def test_the_blinded_reestimation_does_not_depend_on_which_arm_is_which():
    facts, snapshot = _views()
    plan = P.validate(_plan(blinded_ssr={"fraction": 0.5}))
    swap = {"assisted": "standard", "standard": "assisted"}
    results = []
    for label in (lambda v: v, lambda v: swap.get(v, v), lambda v: "pooled"):
        view = dataset.relabel(snapshot, label=label, drop_withheld=True, key="k")
        results.append(interim.blinded_ssr(view, plan=plan, design="paired_parallel"))
    # the same numbers whatever the labels (to the last digits that the rows' order can move)
    assert _close(results[0], results[1]) and _close(results[0], results[2])
    r = results[0]
    assert r["status"] == "ok" and r["adjusted_sd"]["reader"] < r["pooled_sd"]["reader"]
    text = str(r).lower()
    assert "assisted" not in text and "standard" not in text


def test_information_counts_cases_whose_every_read_is_scored_by_enough_experts():
    facts, snapshot = _views(n_cases=40)
    view = dataset.unmasked(snapshot)
    assert interim.information(view, experts_per_item=3, planned_cases=80)["fraction"] == 0.5
    assert interim.information(view, experts_per_item=4, planned_cases=80)["cases_complete"] == 0
    # one score less for one read: its case is no longer complete
    tables = dict(view["tables"])
    tables["quality_scores"] = tables["quality_scores"][1:]
    assert interim.information({**view, "tables": tables}, experts_per_item=3, planned_cases=80)["cases_complete"] == 39


def test_efficacy_looks_are_judged_at_their_observed_fractions():
    plan = P.validate(_plan(efficacy={"fractions": [0.3, 0.6], "spending": "obrien_fleming"}))
    facts, null = _views(quality_effect=0.0, seed=5)
    view = dataset.unmasked(null)
    first = interim.efficacy(view, plan=plan, design="paired_parallel", findings=facts["findings"], earlier=[],
                             fraction=0.32)
    assert not first["crossed"] and first["decision"].startswith("continue")
    expected = boundaries([0.32], alpha=0.05, spending="obrien_fleming", final=False)
    assert first["look"]["nominal_p"] == pytest.approx(expected.nominal_p[0], rel=1e-5)
    assert first["arms"] == {"X": "assisted", "Y": "standard"}
    # a second look at 0.61 is judged with the first at 0.32: its boundary is the two-look one
    second = interim.efficacy(view, plan=plan, design="paired_parallel", findings=facts["findings"],
                              earlier=[(0.32, first["tested_pvalue"])], fraction=0.61)
    two = boundaries([0.32, 0.61], alpha=0.05, spending="obrien_fleming", final=False)
    assert [d["nominal_p"] for d in second["looks"]] == pytest.approx(list(two.nominal_p), rel=1e-5)
    facts, strong = _views(quality_effect=1.5, seed=5)
    crossed = interim.efficacy(dataset.unmasked(strong), plan=plan, design="paired_parallel",
                               findings=facts["findings"], earlier=[], fraction=0.32)
    assert crossed["crossed"] and crossed["decision"].startswith("boundary crossed")
    assert crossed["tested_pvalue"] < crossed["look"]["nominal_p"]


def test_the_safety_look_counts_misses_of_critical_findings_per_arm():
    facts, snapshot = _views(n_cases=60)
    view = dataset.unmasked(snapshot)
    critical = facts["findings"][:2]
    res = interim.safety(view, critical=[*critical, "not a finding"], margin=0.0, confidence_level=0.95,
                         findings=facts["findings"])
    truth = {(r["case"], r["finding"]): r["truth"] for r in dataset.view_records(view, "reference_standard")}
    present = [c for c in dataset.view_records(view, "reader_calls")
               if c["finding"] in critical and truth.get((c["case"], c["finding"])) == 1]
    for arm in ("assisted", "standard"):
        rows = [c for c in present if c["arm"] == arm]
        assert res["by_arm"][arm]["present"] == len(rows)
        assert res["by_arm"][arm]["missed"] == sum(1 for c in rows if not c["call"])
    assert res["critical_findings"] == critical and res["notes"]
    with pytest.raises(interim.LookNotPossible, match="critical findings"):
        interim.safety(view, critical=["not a finding"], margin=0.0, confidence_level=0.95, findings=facts["findings"])


def _results(p):
    return {"confidence_level": 0.95, "alpha": 0.05, "order": ["quality.lmm"],
            "analyses": {"quality.lmm": {"role": "primary", "status": "ok", "pvalues": [{"name": "", "pvalue": p}]}}}


def test_the_report_lists_every_look_and_judges_the_primary_at_the_final_level():
    final = interim.final_level([0.5], alpha=0.05, spending="obrien_fleming")
    looks = {"looks": [
        {"number": 1, "kind": "blinded_ssr", "kind_label": "Blinded sample-size re-estimation", "sequence": 1,
         "performed_at": "2026-03-01T10:00:00+00:00", "information_fraction": 0.5, "planned_fraction": 0.5,
         "plan_version": 1, "dataset_sha256": "a" * 64, "outcome": "The planned 20 readers keep 80 % power."},
        {"number": 2, "kind": "efficacy", "kind_label": "Efficacy", "sequence": 1,
         "performed_at": "2026-03-02T10:00:00+00:00", "information_fraction": 0.52, "planned_fraction": 0.5,
         "plan_version": 1, "dataset_sha256": "b" * 64, "outcome": ""}],
        "planned": {"efficacy": {}}, "final": {**final, "looks_taken": 1}}
    # p = 0.049 is below α = 0.05 but not below the final look's nominal level (≈ 0.049 after one O'Brien–Fleming look)
    p = final["nominal_p"] + 1e-4
    doc = report._interim_section(looks, _results(p)["analyses"]["quality.lmm"])
    assert [row[0] for row in doc["tables"][0]["rows"]] == [1, 2]
    assert "not rejected at the final look" in doc["notes"][0]
    doc = report._interim_section(looks, _results(final["nominal_p"] - 1e-4)["analyses"]["quality.lmm"])
    assert "is rejected at the final look" in doc["notes"][0]
    assert final["nominal_p"] == pytest.approx(
        boundaries([0.5, 1.0], alpha=0.05, spending="obrien_fleming").nominal_p[-1])
    assert report._interim_section(None, None) is None
