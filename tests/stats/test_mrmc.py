"""Obuchowski–Rockette/Hillis MRMC on the Van Dyke (1993) data against published outputs.

Sources of the expected numbers (all analyses of the same 5 readers × 114 cases × 2 modalities,
jackknife covariances; modality "0"/"1" of our file = treatment 1/2 of MRMCaov):

[RJ] RJafroc 1.2.0 reference report, dataset02 (Van Dyke), FOM Wilcoxon, method ORH:
     github.com/dpc10ster/RJafroc, tests/testthat/goodValues361/OutputReport/dataset02WilcoxonORH.txt
     (commit 0260cb74e23c6f0f42afd447137ac951156c1cb4). Printed to 8 decimals (FOMs, OR
     covariances, per-modality intervals) or to 2–5 (F, ddf, p, difference intervals).
[MA] Smith & Hillis, "MRMCaov: Multi-Reader Multi-Case ANOVA Software for R" (JSS manuscript):
     github.com/brian-j-smith/MRMCaov, docs/jss/MRMCaov.tex (commit f1c63dc4383e23ed8f1e64adee4476e768cd9287),
     sections "Fixed Factors" (empirical_auc, jackknife, fixed readers / fixed cases) and
     "Binary Metrics" (binary_sens with rating >= 3, jackknife), printed to 7 significant digits.

The figures printed with 4 or more significant digits are asserted to 4 significant digits
(rel 5e-4 of the printed value, i.e. they agree when both are rounded to 4 digits); those printed
with fewer are asserted to the printed precision.
"""
import csv
from pathlib import Path

import numpy as np
import pytest

from stats.methods.mrmc import obuchowski_rockette

VANDYKE = Path(__file__).resolve().parent / "data" / "vandyke1993.csv"


def four_digits(expected: float):
    return pytest.approx(expected, rel=5e-4)


@pytest.fixture(scope="module")
def vandyke() -> dict:
    if not VANDYKE.exists():
        pytest.fail(f"the Van Dyke data are missing: {VANDYKE}", pytrace=False)
    with open(VANDYKE, newline="") as fh:
        rows = list(csv.DictReader(fh))
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    return {"reader": cols["reader"], "case": cols["case"], "modality": cols["modality"],
            "truth": [float(v) for v in cols["truth"]], "rating": [float(v) for v in cols["rating"]]}


@pytest.fixture(scope="module")
def auc(vandyke):
    return obuchowski_rockette(**vandyke)


def test_vandyke_reader_aucs_and_means_match_rjafroc(auc):
    # [RJ] Estimates: FOM per reader and treatment, treatment means, mean difference
    expected = [[0.91964573, 0.85877617, 0.90386473, 0.97310789, 0.82979066],
                [0.94782609, 0.90531401, 0.92173913, 0.99935588, 0.92995169]]
    np.testing.assert_allclose(auc.foms, expected, rtol=5e-4)
    np.testing.assert_allclose(auc.foms, expected, atol=5e-9)       # in fact to all 8 printed decimals
    assert auc.modality_foms == (four_digits(0.89703704), four_digits(0.94083736))
    assert auc.difference == four_digits(-0.04380032)


def test_vandyke_or_covariances_match_rjafroc_and_mrmcaov(auc):
    # [RJ] Var(Error) 0.00080229, COV1 0.00034661, COV2 0.00034407, COV3 0.00023903
    # [MA] fixed readers: Error 0.0008022883, Cov1 0.0003466137, Cov2 0.0003440748, Cov3 0.0002390284
    assert auc.var == four_digits(0.0008022883)
    assert auc.cov1 == four_digits(0.0003466137)
    assert auc.cov2 == four_digits(0.0003440748)
    assert auc.cov3 == four_digits(0.0002390284)
    # [MA] MS(T) 0.004796171, MS(T:R) 0.0005510306
    assert auc.ms_t == four_digits(0.004796171)
    assert auc.ms_tr == four_digits(0.0005510306)


def test_vandyke_random_readers_and_cases_match_rjafroc(auc):
    rr = auc.random
    # [RJ] Analysis 1 (a): F(1, 15.26) = 4.46, p = 0.0517; error term 0.00055103 + 5·(Cov2 − Cov3)
    assert rr.statistic_name == "F" and rr.df1 == 1
    assert rr.statistic == pytest.approx(4.46, abs=0.005)
    assert rr.df2 == pytest.approx(15.26, abs=0.005)
    assert rr.pvalue == pytest.approx(0.0517, abs=0.00005)
    # ... and to 4 digits, F and ddf as the [MA] covariances and mean squares give them:
    # F = 0.004796171 / (0.0005510306 + 5·(0.0003440748 − 0.0002390284)), ddf = den² / (MS(T:R)² / 4)
    den = 0.0005510306 + 5 * (0.0003440748 - 0.0002390284)
    assert rr.denominator == four_digits(den)
    assert rr.statistic == four_digits(0.004796171 / den)
    assert rr.df2 == four_digits(den ** 2 / (0.0005510306 ** 2 / 4))
    # [RJ] (b): estimate −0.04380, SE 0.02075, t −2.11, 95% CI (−0.08796, 0.00036)
    diff = rr.comparisons[0]
    assert (diff.first, diff.second) == ("0", "1")
    assert diff.estimate == four_digits(-0.04380032)
    assert diff.se == four_digits(0.02075)
    assert diff.statistic == pytest.approx(-2.11, abs=0.005)
    assert diff.low == four_digits(-0.08796)
    assert diff.high == pytest.approx(0.00036, abs=5e-6)
    # [RJ] (c): per-modality SE 0.03317360 / 0.02156637, df 12.74 / 12.71,
    #          CIs (0.82522360, 0.96885048) / (0.89413783, 0.98753689)
    m0, m1 = rr.modalities
    assert (m0.se, m1.se) == (four_digits(0.03317360), four_digits(0.02156637))
    assert (m0.df, m1.df) == (pytest.approx(12.74, abs=0.005), pytest.approx(12.71, abs=0.005))
    assert (m0.low, m0.high) == (four_digits(0.82522360), four_digits(0.96885048))
    assert (m1.low, m1.high) == (four_digits(0.89413783), four_digits(0.98753689))


def test_vandyke_fixed_readers_match_mrmcaov(auc):
    fr = auc.fixed_readers
    # [MA] Fixed Readers and Random Cases: Denominator 0.0008758604, X2 5.475953, df 1, p 0.01927984
    assert fr.statistic_name == "chi2" and fr.df1 == 1 and fr.df2 is None
    assert fr.denominator == four_digits(0.0008758604)
    assert fr.statistic == four_digits(5.475953)
    assert fr.pvalue == four_digits(0.01927984)
    # [MA] 1 − 2: StdErr 0.01871748, CI (−0.08048591, −0.00711473), z −2.340075
    diff = fr.comparisons[0]
    assert diff.se == four_digits(0.01871748)
    assert (diff.low, diff.high) == (four_digits(-0.08048591), four_digits(-0.00711473))
    assert diff.statistic == four_digits(-2.340075)
    assert diff.df is None
    # [MA] per treatment: StdErr 0.02428971 / 0.01677632, CI (0.8494301, 0.9446440) / (0.9079564, 0.9737183)
    m0, m1 = fr.modalities
    assert (m0.se, m1.se) == (four_digits(0.02428971), four_digits(0.01677632))
    assert (m0.low, m0.high, m1.low, m1.high) == (four_digits(0.8494301), four_digits(0.9446440),
                                                  four_digits(0.9079564), four_digits(0.9737183))


def test_vandyke_fixed_cases_match_mrmcaov(auc):
    fc = auc.fixed_cases
    # [MA] Random Readers and Fixed Cases: F 8.704, df 1 and 4, p 0.04195875; StdErr 0.01484629,
    # CI (−0.08502022, −0.00258042); per treatment StdErr 0.02482994 / 0.01615303
    assert fc.statistic == four_digits(8.704) and (fc.df1, fc.df2) == (1, 4)
    assert fc.pvalue == four_digits(0.04195875)
    diff = fc.comparisons[0]
    assert diff.se == four_digits(0.01484629)
    assert (diff.low, diff.high) == (four_digits(-0.08502022), four_digits(-0.00258042))
    assert [m.se for m in fc.modalities] == [four_digits(0.02482994), four_digits(0.01615303)]


def test_vandyke_sensitivity_at_rating_3_matches_mrmcaov(vandyke):
    res = obuchowski_rockette(**vandyke, fom="sensitivity", threshold=3)
    # [MA] binary_sens(truth, rating >= 3): per reader 0.889 0.778 0.822 0.933 0.689 / 0.978 0.822 0.911 1 0.889
    np.testing.assert_allclose(res.foms, [[40 / 45, 35 / 45, 37 / 45, 42 / 45, 31 / 45],
                                          [44 / 45, 37 / 45, 41 / 45, 45 / 45, 40 / 45]])
    assert res.n_jackknife == 45          # diseased cases only
    # [MA] Error 0.0023681257, Cov1 0.0009943883, Cov2 0.0010145903, Cov3 0.0006604938
    assert (res.var, res.cov1, res.cov2, res.cov3) == (four_digits(0.0023681257), four_digits(0.0009943883),
                                                       four_digits(0.0010145903), four_digits(0.0006604938))
    # [MA] MS(T) 0.02390123, MS(T:R) 0.001802469, Denominator 0.003572952, F 6.689493, df2 15.71732, p 0.02008822
    rr = res.random
    assert (res.ms_t, res.ms_tr) == (four_digits(0.02390123), four_digits(0.001802469))
    assert rr.denominator == four_digits(0.003572952)
    assert (rr.statistic, rr.df2, rr.pvalue) == (four_digits(6.689493), four_digits(15.71732), four_digits(0.02008822))
    # [MA] 1 − 2: −0.09777778, StdErr 0.03780451, CI (−0.1780371, −0.0175185)
    diff = rr.comparisons[0]
    assert (diff.estimate, diff.se) == (four_digits(-0.09777778), four_digits(0.03780451))
    assert (diff.low, diff.high) == (four_digits(-0.1780371), four_digits(-0.0175185))
    # [MA] per treatment: 0.8222222 (SE 0.05893747, df 14.456811, CI 0.6961876–0.9482568),
    #      0.92 (SE 0.03741657, df 7.575855, CI 0.8328691–1.0000000, clipped to 1)
    m0, m1 = rr.modalities
    assert (m0.se, m0.df, m0.low, m0.high) == (four_digits(0.05893747), four_digits(14.456811),
                                               four_digits(0.6961876), four_digits(0.9482568))
    assert (m1.se, m1.df, m1.low, m1.high) == (four_digits(0.03741657), four_digits(7.575855),
                                               four_digits(0.8328691), 1.0)


def test_jackknifing_sensitivity_over_all_cases_would_not_reproduce_mrmcaov(vandyke):
    # the trap the notes warn of: leaving out a healthy case does not change a sensitivity, so a
    # jackknife over all 114 cases adds 69 pseudo-values at θ and rescales the error variance
    res = obuchowski_rockette(**vandyke, fom="sensitivity", threshold=3)
    truth = np.array(vandyke["truth"])
    per_case = {}
    for r, c, m, t, y in zip(vandyke["reader"], vandyke["case"], vandyke["modality"], truth, vandyke["rating"]):
        per_case.setdefault((m, r), {})[c] = (t, y >= 3)
    variances = []
    for cells in per_case.values():
        hits = np.array([h for t, h in cells.values() if t == 1], float)
        m, k = hits.size, len(cells)
        theta = hits.mean()
        jack = np.r_[(m * theta - hits) / (m - 1), np.full(k - m, theta)]
        variances.append((k - 1) / k * np.sum((jack - jack.mean()) ** 2))
    assert res.var == four_digits(0.0023681257)                       # [MA]
    assert np.mean(variances) != four_digits(0.0023681257)             # 1.4 % off: not MRMCaov's number


def test_specificity_is_sensitivity_of_the_mirrored_problem(vandyke):
    spec = obuchowski_rockette(**vandyke, fom="specificity", threshold=3)
    mirrored = dict(vandyke, truth=[1 - t for t in vandyke["truth"]], rating=[-r for r in vandyke["rating"]])
    # rating < 3 on a healthy case  <=>  −rating >= −2 (ratings are integers)
    sens = obuchowski_rockette(**mirrored, fom="sensitivity", threshold=-2)
    assert spec.n_jackknife == 69
    np.testing.assert_allclose(spec.foms, sens.foms)
    assert spec.random.statistic == pytest.approx(sens.random.statistic)
    assert spec.random.df2 == pytest.approx(sens.random.df2)


def test_three_modalities_give_pairwise_comparisons(vandyke):
    # a third modality: a copy of modality "1" with some ratings raised by one
    third = [m == "1" for m in vandyke["modality"]]
    extra = {k: v + [x for x, keep in zip(v, third) if keep] for k, v in vandyke.items()}
    extra["modality"] = vandyke["modality"] + ["2"] * sum(third)
    rng = np.random.default_rng(0)
    extra["rating"] = vandyke["rating"] + [min(5.0, r + float(rng.integers(0, 2)))
                                           for r, keep in zip(vandyke["rating"], third) if keep]
    res = obuchowski_rockette(**extra)
    assert res.random.df1 == 2
    assert [(c.first, c.second) for c in res.random.comparisons] == [("0", "1"), ("0", "2"), ("1", "2")]


def test_modalities_order_sets_the_sign_of_the_difference(vandyke):
    res = obuchowski_rockette(**vandyke, modalities=["1", "0"])
    assert res.difference == four_digits(0.04380032)


def test_refuses_a_design_that_is_not_fully_crossed(vandyke):
    partial = {k: v[:-1] for k, v in vandyke.items()}
    with pytest.raises(ValueError, match="not fully crossed"):
        obuchowski_rockette(**partial)


def test_sensitivity_needs_a_threshold(vandyke):
    with pytest.raises(ValueError, match="threshold"):
        obuchowski_rockette(**vandyke, fom="sensitivity")
