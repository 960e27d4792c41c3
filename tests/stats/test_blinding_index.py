"""Bang's blinding index (stats.methods.blinding) against hand computations of published tables."""
from __future__ import annotations

import math

import pytest

from stats.methods.blinding import bang_index, bang_index_by_arm

# Bang, Ni & Davis 2004, Table 7 (the CRISP trial), as the R package BI reproduces it in its example: rows are
# the guesses (treatment, placebo, don't know), columns the true arms (treatment, placebo).
CRISP = [[82, 27], [25, 29], [170, 83]]


def test_crisp_by_hand():
    """Treatment arm: c = 82, w = 25, d = 170, n = 277.
        BI = (82 − 25)/277 = 57/277 = 0.205776
        Var = [p_c + p_w − (p_c − p_w)²]/n = (107·277 − 57²)/277³ = 26390/21253933 = 0.00124166, SE = 0.035237
    Placebo arm: c = 29 (guessed placebo), w = 27 (guessed treatment), d = 83, n = 139.
        BI = 2/139 = 0.014388;  Var = (56·139 − 2²)/139³ = 7780/2685619 = 0.00289691, SE = 0.053823
    One-sided 95 % lower limits (z = 1.644854), as Bang reads them: 0.205776 − 0.057960 = 0.147816 (unblinded in the
    treatment arm: above 0) and 0.014388 − 0.088531 = −0.074142 (consistent with blinding in the placebo arm)."""
    result = bang_index_by_arm(CRISP)
    treatment, placebo = result.treatment, result.reference
    assert (treatment.correct, treatment.incorrect, treatment.dont_know) == (82, 25, 170)
    assert treatment.estimate == pytest.approx(57 / 277, abs=1e-12)
    assert treatment.standard_error == pytest.approx(math.sqrt(26390 / 277**3), abs=1e-12)
    assert treatment.standard_error == pytest.approx(0.035237, abs=5e-7)
    assert placebo.estimate == pytest.approx(2 / 139, abs=1e-12)
    assert placebo.standard_error == pytest.approx(math.sqrt(7780 / 139**3), abs=1e-12)
    low, high = treatment.confidence_interval(alternative="greater")
    assert low == pytest.approx(0.147816, abs=5e-7) and high == 1.0
    low, high = placebo.confidence_interval(alternative="greater")
    assert low == pytest.approx(-0.074142, abs=5e-7) and high == 1.0
    low, high = placebo.confidence_interval(alternative="less")
    assert low == -1.0 and high == pytest.approx(2 / 139 + 1.6448536 * math.sqrt(7780 / 139**3), abs=1e-6)


def test_the_same_table_by_arm_as_a_mapping():
    by_rows = bang_index_by_arm(CRISP)
    by_arm = bang_index_by_arm({"treatment": (82, 25, 170), "reference": (27, 29, 83)})
    assert by_rows == by_arm


def test_houweling_investigators_as_the_r_package_prints_them():
    """Houweling et al. 2014, Table 2 (investigators): [[48, 22], [4, 30], [330, 319]]. The BI package (and its
    Julia port's README) print Treatment 0.115 (SE 0.018) [0.08, 0.15], Placebo 0.022 (SE 0.019) [−0.016, 0.06],
    two-sided 95 %. By hand: 44/382 = 0.115183, SE = √(17928/382³) = 0.017934; 8/371 = 0.021563, SE = 0.019405."""
    result = bang_index_by_arm([[48, 22], [4, 30], [330, 319]])
    t, p = result.treatment, result.reference
    assert (round(t.estimate, 3), round(t.standard_error, 3)) == (0.115, 0.018)
    assert tuple(round(v, 2) for v in t.confidence_interval()) == (0.08, 0.15)
    assert (round(p.estimate, 3), round(p.standard_error, 3)) == (0.022, 0.019)
    assert tuple(round(v, 3) for v in p.confidence_interval()) == (-0.016, 0.060)
    assert t.estimate == pytest.approx(44 / 382, abs=1e-12)
    assert t.standard_error == pytest.approx(math.sqrt(17928 / 382**3), abs=1e-12)


@pytest.mark.parametrize("counts, estimate", [((10, 0, 0), 1.0), ((0, 10, 0), -1.0), ((5, 5, 0), 0.0),
                                              ((0, 0, 7), 0.0), ((3, 1, 4), 0.25)])
def test_the_scale_from_opposite_guessing_to_no_blinding(counts, estimate):
    result = bang_index(*counts)
    assert result.estimate == pytest.approx(estimate)
    if counts in ((10, 0, 0), (0, 10, 0), (0, 0, 7)):  # no spread of answers: no variance
        assert result.standard_error == 0.0


def test_dont_know_answers_pull_the_index_towards_zero_and_count_in_n():
    """Bang's product form equals (c − w)/n: 8 right and 2 wrong of 10 give 0.6; with 10 more "don't know", 0.3."""
    assert bang_index(8, 2, 0).estimate == pytest.approx(0.6)
    assert bang_index(8, 2, 10).estimate == pytest.approx(0.3)
    c, w, n = 8, 2, 20
    assert bang_index(c, w, 10).estimate == pytest.approx((2 * c / (c + w) - 1) * (c + w) / n)


@pytest.mark.parametrize("args, message", [((0, 0, 0), "at least one answer"), ((-1, 2, 3), "a count"),
                                           ((1.5, 2, 3), "a count"), ((True, 2, 3), "a count")])
def test_bad_counts_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        bang_index(*args)


def test_bad_tables_and_options_are_refused():
    with pytest.raises(ValueError, match="three rows"):
        bang_index_by_arm([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="'treatment' and a 'reference'"):
        bang_index_by_arm({"assisted": (1, 2, 3), "reference": (1, 2, 3)})
    with pytest.raises(ValueError, match="alternative"):
        bang_index(3, 1, 1).confidence_interval(alternative="both")
    with pytest.raises(ValueError, match="confidence_level"):
        bang_index(3, 1, 1).confidence_interval(confidence_level=95)
