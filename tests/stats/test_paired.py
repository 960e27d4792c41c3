"""Paired per-case comparisons: R's t.test / wilcox.test as oracle, and the size and coverage of the t analysis."""
import numpy as np
import pytest
from scipy import stats

from stats.methods.paired import compare_paired, paired_t, wilcoxon_signed_rank
from tests.stats.rscript import run_r


def r_vec(values) -> str:
    return "c(" + ", ".join(repr(float(v)) for v in values) + ")"


def r_numbers(script: str) -> list[float]:
    return [float(v) for v in run_r(script).split()]


def likert_pairs(seed: int, n: int):
    """Case-mean Likert scores with many ties and zero differences, as quality scores have."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 6, size=n).astype(float)
    y = np.clip(x + rng.integers(-1, 2, size=n), 1, 5).astype(float)
    return x, y


@pytest.mark.r_oracle
@pytest.mark.parametrize("seed,n", [(1, 12), (2, 40), (3, 80)])
def test_wilcoxon_with_ties_and_zeros_matches_r(seed, n):
    x, y = likert_pairs(seed, n)
    assert np.any(x == y)
    ours = wilcoxon_signed_rank(x, y)
    r = r_numbers(f"""
        r <- suppressWarnings(wilcox.test({r_vec(x)}, {r_vec(y)}, paired = TRUE))
        cat(sprintf("%.17g", c(r$statistic, r$p.value)), "\\n")""")
    assert ours.method == "normal"
    assert ours.statistic == pytest.approx(r[0], rel=1e-12)
    assert ours.pvalue == pytest.approx(r[1], rel=1e-10)


@pytest.mark.r_oracle
@pytest.mark.parametrize("seed,n,method", [(4, 15, "exact"), (5, 49, "exact"), (6, 50, "normal"), (7, 120, "normal")])
def test_wilcoxon_without_ties_matches_r_exact_below_50(seed, n, method):
    rng = np.random.default_rng(seed)
    x = rng.normal(60, 20, n)
    y = x * np.exp(rng.normal(-0.1, 0.3, n))
    ours = wilcoxon_signed_rank(x, y)
    r = r_numbers(f"""
        r <- wilcox.test({r_vec(x)}, {r_vec(y)}, paired = TRUE)
        cat(sprintf("%.17g", c(r$statistic, r$p.value)), "\\n")""")
    assert ours.method == method
    assert ours.statistic == pytest.approx(r[0], rel=1e-12)
    assert ours.pvalue == pytest.approx(r[1], rel=1e-10)


@pytest.mark.r_oracle
@pytest.mark.parametrize("log", [False, True])
def test_paired_t_and_interval_match_r(log):
    rng = np.random.default_rng(8)
    x = rng.lognormal(4.0, 0.5, 35)
    y = x * rng.lognormal(0.15, 0.4, 35)
    ours = paired_t(x, y, log=log)
    f = "log" if log else ""
    r = r_numbers(f"""
        r <- t.test({f}({r_vec(x)}), {f}({r_vec(y)}), paired = TRUE)
        cat(sprintf("%.17g", c(r$estimate, r$statistic, r$parameter, r$p.value, r$conf.int)), "\\n")""")
    assert ours.mean_difference == pytest.approx(r[0], rel=1e-10)
    assert ours.statistic == pytest.approx(r[1], rel=1e-10)
    assert ours.df == r[2]
    assert ours.pvalue == pytest.approx(r[3], rel=1e-8)
    assert ours.confidence_interval() == pytest.approx((r[4], r[5]), rel=1e-8)
    if log:
        assert ours.ratio == pytest.approx(np.exp(r[0]), rel=1e-10)
        assert (ours.ratio_low, ours.ratio_high) == pytest.approx(np.exp(r[4:6]), rel=1e-8)


def test_wilcoxon_reports_v_the_positive_rank_sum_not_scipys_minimum():
    x = np.array([5.0, 7, 9, 12, 3, 8, 10, 11])
    y = np.array([4.0, 5, 6, 8, 4, 5, 5, 4])   # mostly positive differences: W+ is large
    ours = wilcoxon_signed_rank(x, y)
    d = x - y
    assert ours.statistic == stats.rankdata(np.abs(d))[d > 0].sum()
    assert ours.statistic > stats.wilcoxon(x, y).statistic


def test_wilcoxon_drops_zero_differences_and_counts_them():
    x = np.array([3.0, 4, 5, 2, 4, 5, 3, 1])
    y = np.array([3.0, 3, 4, 2, 2, 4, 3, 2])
    ours = wilcoxon_signed_rank(x, y)
    assert ours.n_zero == 3 and ours.n == 5
    assert ours.method == "normal"     # R falls back to the normal approximation when there are zeros


def test_log_scale_refuses_non_positive_times():
    with pytest.raises(ValueError, match="positive"):
        paired_t([10.0, 0.0, 5.0], [3.0, 4.0, 5.0], log=True)


def test_compare_paired_bundles_t_and_wilcoxon():
    x, y = likert_pairs(9, 30)
    res = compare_paired(x, y)
    assert res.estimate == pytest.approx(np.mean(x - y))
    assert res.confidence_interval() == res.t.confidence_interval()
    d = res.to_dict()
    assert d["t"]["df"] == 29 and d["wilcoxon"]["method"] == "normal"


def test_paired_t_holds_its_size_and_covers_at_the_nominal_rate():
    # 2000 simulated trials of 30 cases with no arm effect and case-level correlation between arms
    rng = np.random.default_rng(20240601)
    reps, n = 2000, 30
    rejections = covered = 0
    for _ in range(reps):
        case = rng.normal(0, 1, n)
        x = case + rng.normal(0, 0.7, n)
        y = case + rng.normal(0, 0.7, n)
        res = paired_t(x, y)
        rejections += res.pvalue < 0.05
        low, high = res.confidence_interval()
        covered += low <= 0 <= high
    # ±3 binomial SEs around the nominal rates
    assert 0.035 <= rejections / reps <= 0.065
    assert 0.935 <= covered / reps <= 0.965


def test_wilcoxon_holds_its_size_on_tied_likert_means():
    rng = np.random.default_rng(7)
    reps, n = 1000, 40
    rejections = 0
    for _ in range(reps):
        x = rng.integers(1, 6, n).astype(float)
        y = rng.integers(1, 6, n).astype(float)
        rejections += wilcoxon_signed_rank(x, y).pvalue < 0.05
    assert rejections / reps <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / reps)
