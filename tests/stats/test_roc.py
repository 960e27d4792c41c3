"""AUC with DeLong intervals and the paired DeLong test, against pROC (roc, ci.auc, var, roc.test)."""
import numpy as np
import pytest

from stats.methods.roc import delong_components, delong_test, roc_auc
from tests.stats.rscript import require_r_packages, run_r


def r_vec(values) -> str:
    return "c(" + ", ".join(repr(float(v)) for v in values) + ")"


def scores(seed: int, n_pos: int, n_neg: int, shift_a: float, shift_b: float, rounding: int | None):
    """Two correlated AI scores on the same cases; rounding makes ties, as calibrated model outputs have."""
    rng = np.random.default_rng(seed)
    truth = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    rng.shuffle(truth)
    common = rng.normal(0, 1, truth.size)
    a = common + rng.normal(0, 0.6, truth.size) + shift_a * truth
    b = 0.6 * common + rng.normal(0, 0.9, truth.size) + shift_b * truth
    if rounding is not None:
        a, b = np.round(a, rounding), np.round(b, rounding)
    return truth, a, b


CASES = [(21, 40, 60, 1.2, 0.8, 1), (22, 25, 90, 1.0, 1.0, None), (23, 70, 30, 2.5, 1.5, 0), (24, 15, 15, 4.0, 3.5, 1)]


@pytest.mark.r_oracle
@pytest.mark.parametrize("seed,n_pos,n_neg,shift_a,shift_b,rounding", CASES)
def test_auc_interval_and_paired_test_match_proc(seed, n_pos, n_neg, shift_a, shift_b, rounding):
    require_r_packages("pROC")
    truth, a, b = scores(seed, n_pos, n_neg, shift_a, shift_b, rounding)
    ours = delong_test(truth, a, b)
    out = run_r(f"""
        suppressMessages(library(pROC))
        t <- {r_vec(truth)}
        r1 <- roc(t, {r_vec(a)}, levels = c(0, 1), direction = "<", quiet = TRUE)
        r2 <- roc(t, {r_vec(b)}, levels = c(0, 1), direction = "<", quiet = TRUE)
        tt <- roc.test(r1, r2, method = "delong", paired = TRUE)
        cat(sprintf("%.17g", c(ci.auc(r1, method = "delong"), var(r1, method = "delong"),
                               ci.auc(r2, method = "delong"), var(r2, method = "delong"),
                               tt$statistic, tt$p.value, tt$conf.int)), "\\n")""")
    r = [float(v) for v in out.split()]
    for res, (low, auc, high, var) in ((ours.a, r[0:4]), (ours.b, r[4:8])):
        assert res.auc == pytest.approx(auc, rel=1e-12)
        assert res.se ** 2 == pytest.approx(var, rel=1e-9)
        assert res.confidence_interval() == pytest.approx((low, high), rel=1e-9)
    assert ours.statistic == pytest.approx(r[8], rel=1e-9)
    assert ours.pvalue == pytest.approx(r[9], rel=1e-8)
    assert ours.confidence_interval() == pytest.approx(r[10:12], rel=1e-9)


def test_auc_is_the_mann_whitney_probability_with_ties_counted_half():
    truth = np.array([1, 1, 1, 0, 0, 0, 0])
    score = np.array([3.0, 2.0, 2.0, 2.0, 1.0, 1.0, 0.0])
    pairs = [(p, n) for p in score[truth == 1] for n in score[truth == 0]]
    expected = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs])
    assert roc_auc(truth, score).auc == pytest.approx(expected)


def test_structural_components_equal_the_pairwise_definition():
    truth, a, _ = scores(3, 12, 17, 1.0, 0.0, 0)
    auc, v10, v01 = delong_components(truth, a)
    pos, neg = a[truth == 1], a[truth == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    np.testing.assert_allclose(v10[0], psi.mean(axis=1))
    np.testing.assert_allclose(v01[0], psi.mean(axis=0))
    assert auc[0] == pytest.approx(psi.mean())


def test_refuses_too_few_cases_of_a_class():
    with pytest.raises(ValueError, match="at least two diseased and two healthy"):
        roc_auc([1, 0, 0, 0], [0.9, 0.1, 0.2, 0.3])
