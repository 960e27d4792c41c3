"""Holm and Benjamini–Hochberg adjustment against R's p.adjust."""
import numpy as np
import pytest

from stats.analysis import multiplicity
from stats.methods.multiplicity import adjust_family, adjust_pvalues
from tests.stats.rscript import run_r


def r_vec(values) -> str:
    return "c(" + ", ".join(repr(float(v)) for v in values) + ")"


@pytest.mark.r_oracle
@pytest.mark.parametrize("seed", [61, 62, 63])
@pytest.mark.parametrize("method,r_method", [("holm", "holm"), ("bh", "BH")])
def test_adjusted_pvalues_match_p_adjust(seed, method, r_method):
    rng = np.random.default_rng(seed)
    p = np.r_[rng.uniform(0, 0.01, 3), rng.uniform(0, 1, 9)]
    p[4] = p[5]                                        # a tie, as rounded p-values have
    rng.shuffle(p)
    ours = adjust_pvalues(p, method=method)
    out = run_r(f'cat(sprintf("%.17g", p.adjust({r_vec(p)}, "{r_method}")), "\\n")')
    np.testing.assert_allclose(ours.adjusted, [float(v) for v in out.split()], rtol=1e-12)
    assert ours.rejected == tuple(a <= 0.05 for a in ours.adjusted)


def test_holm_on_a_textbook_example():
    # Holm (1979): p sorted 0.01, 0.02, 0.03, 0.04 with m = 4 -> 0.04, 0.06, 0.06, 0.06
    res = adjust_pvalues([0.03, 0.01, 0.04, 0.02], method="holm", names=["c", "a", "d", "b"])
    assert res.adjusted == pytest.approx((0.06, 0.04, 0.06, 0.06))
    assert res.names == ("c", "a", "d", "b")
    assert res.rejected == (False, True, False, False)


def test_refuses_values_outside_zero_one():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        adjust_pvalues([0.2, 1.3])
    with pytest.raises(ValueError, match="method"):
        adjust_pvalues([0.2], method="bonferroni-ish")


# --------------------------------------------------------------------------------------------
# Confirmatory order (issue 14): primary, then the gated key secondaries; planned size kept


def _analysis(key: str, role: str, pvalues: list) -> dict:
    return {"key": key, "role": role, "status": "ok" if any(p is not None for p in pvalues) else "not_estimable",
            "pvalues": [{"name": "", "pvalue": p} for p in pvalues]}


PLAN = {"alpha": 0.05, "gatekeeping": True, "secondary_adjustment": "holm", "exploratory_adjustment": "bh",
        "subgroup_adjustment": "bh"}


def test_a_primary_with_p_0_137_leaves_every_secondary_unrejected():
    analyses = [_analysis("quality.lmm", "primary", [0.137]),
                _analysis("reading_time.lmm", "secondary", [0.0001]),
                _analysis("preference.glmm", "secondary", [0.002]),
                _analysis("radpeer.lmm", "secondary", [0.01])]
    out = multiplicity(analyses, PLAN)
    assert out["primary"] == {"name": "quality.lmm", "pvalue": 0.137, "estimable": True, "alpha": 0.05,
                              "rejected": False}
    family = out["secondary"]
    assert family["tested"] is False and list(family["rejected"]) == [False, False, False]
    # the adjusted p-values are still shown (Holm: 0.0003, 0.004, 0.01), they just reject nothing
    assert family["adjusted"] == pytest.approx((0.0003, 0.004, 0.01))
    assert [p["rejected"] for a in analyses[1:] for p in a["pvalues"]] == [False, False, False]


def test_the_gate_opens_when_the_primary_is_rejected():
    analyses = [_analysis("quality.lmm", "primary", [0.01]), _analysis("reading_time.lmm", "secondary", [0.001]),
                _analysis("radpeer.lmm", "secondary", [0.04])]
    out = multiplicity(analyses, PLAN)
    assert out["primary"]["rejected"] and out["secondary"]["tested"]
    assert list(out["secondary"]["rejected"]) == [True, True]
    # without gatekeeping (a schema-1 plan) the secondaries are tested whatever the primary
    analyses[0]["pvalues"][0]["pvalue"] = 0.5
    assert multiplicity(analyses, {**PLAN, "gatekeeping": False})["secondary"]["tested"] is True


def test_a_family_keeps_its_planned_size_when_a_test_fails():
    analyses = [_analysis("quality.lmm", "primary", [0.001]),
                _analysis("reading_time.lmm", "secondary", [0.02]),
                _analysis("preference.glmm", "secondary", [None]),        # planned, not estimable
                _analysis("radpeer.lmm", "secondary", [0.03])]
    family = multiplicity(analyses, PLAN)["secondary"]
    assert list(family["names"]) == ["reading_time.lmm", "preference.glmm", "radpeer.lmm"]
    assert list(family["pvalues"]) == [0.02, 1.0, 0.03] and list(family["estimable"]) == [True, False, True]
    # Holm over three tests, not two: 0.02 × 3 = 0.06 > 0.05, so nothing is rejected
    holm = adjust_pvalues([0.02, 1.0, 0.03], method="holm")
    assert list(family["adjusted"]) == pytest.approx(list(holm.adjusted)) and not any(family["rejected"])
    # dropping the failed test would have rejected both: the reason it stays
    assert all(adjust_pvalues([0.02, 0.03], method="holm").rejected)


def test_a_primary_that_cannot_be_estimated_counts_as_p_1_and_closes_the_gate():
    analyses = [_analysis("quality.lmm", "primary", [None]), _analysis("reading_time.lmm", "secondary", [1e-6])]
    out = multiplicity(analyses, PLAN)
    assert out["primary"]["pvalue"] == 1.0 and not out["primary"]["estimable"] and not out["primary"]["rejected"]
    assert out["secondary"]["tested"] is False and not any(out["secondary"]["rejected"])


def test_subgroup_interactions_form_their_own_family():
    analyses = [_analysis("quality.lmm", "primary", [0.01]), _analysis("ai_auc.delong", "exploratory", []),
                _analysis("detection.glmm", "exploratory", [0.2, 0.3]),
                _analysis("subgroup.site.quality.interaction", "subgroup_interaction", [0.04]),
                _analysis("subgroup.site.s1.quality.lmm", "subgroup", [0.001])]
    out = multiplicity(analyses, PLAN)
    assert list(out["subgroup"]["names"]) == ["subgroup.site.quality.interaction"]
    assert list(out["exploratory"]["names"]) == ["detection.glmm", "detection.glmm"]
    # a level's own p-value is descriptive: in no family
    assert analyses[-1]["pvalues"][0]["family"] == "none" and analyses[-1]["pvalues"][0]["rejected"] is None


def test_adjust_family_enters_a_missing_p_as_one():
    res = adjust_family("x", [0.01, None, float("nan")], names=["a", "b", "c"], method="bh")
    assert res.pvalues == (0.01, 1.0, 1.0) and res.estimable == (True, False, False)
    closed = adjust_family("x", [0.001], names=["a"], gate_open=False, gate="the primary rejected")
    assert closed.rejected == (False,) and closed.tested is False and closed.adjusted == (0.001,)
