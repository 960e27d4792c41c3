"""Paired per-case comparisons of the two arms (report quality, reading time): mean difference, paired t, Wilcoxon.

Each case is read in both arms, so the case is the unit: the analysis works on one difference per
case (treatment − reference, x − y), after averaging any repeated rows of a case within an arm (e.g. the
scores of several experts). The Wilcoxon signed-rank test reproduces R's `wilcox.test(x, y,
paired = TRUE)` with its defaults, including its handling of zero and tied differences (Wilcoxon
1945; Hollander, Wolfe & Chicken, *Nonparametric Statistical Methods*, 3rd ed., §3.1).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

__all__ = [
    "PairedTResult",
    "WilcoxonResult",
    "PairedComparison",
    "paired_t",
    "wilcoxon_signed_rank",
    "compare_paired",
]


@dataclass(frozen=True)
class PairedTResult:
    """Mean of the per-case differences (x − y) with a t interval; on the log scale when `log`."""

    n: int
    mean_difference: float       # on the log scale when `log` is true
    sd: float
    se: float
    statistic: float             # paired t
    df: int
    pvalue: float                # two-sided
    low: float
    high: float
    confidence_level: float
    log: bool
    ratio: float | None = None   # exp(mean log difference): ratio of geometric means x / y
    ratio_low: float | None = None
    ratio_high: float | None = None

    def confidence_interval(self) -> tuple[float, float]:
        return self.low, self.high

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class WilcoxonResult:
    """Wilcoxon signed-rank test as R's `wilcox.test(x, y, paired = TRUE)` reports it."""

    n: int                       # non-zero differences used (R drops zeros)
    n_zero: int                  # zero differences dropped
    statistic: float             # V = W+, the sum of the ranks of the positive differences
    pvalue: float                # two-sided
    method: str                  # "exact" or "normal" (with continuity correction and tie correction)
    ties: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedComparison:
    """What the trial reports for a paired endpoint: the mean difference with its CI, and the Wilcoxon test."""

    n_cases: int
    mean_x: float                # mean over cases of the x arm (on the log scale when `log`)
    mean_y: float
    t: PairedTResult
    wilcoxon: WilcoxonResult

    @property
    def estimate(self) -> float:
        return self.t.mean_difference

    @property
    def pvalue(self) -> float:
        return self.t.pvalue

    def confidence_interval(self) -> tuple[float, float]:
        return self.t.confidence_interval()

    def to_dict(self) -> dict:
        return asdict(self)


def _differences(x, y, *, log: bool) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("x and y must be 1-D and of the same length (one value per case and arm)")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite numbers")
    if log:
        if np.any(x <= 0) or np.any(y <= 0):
            raise ValueError("log scale needs positive values (e.g. reading times in seconds)")
        return np.log(x) - np.log(y)
    return x - y


def paired_t(x, y, *, log: bool = False, confidence_level: float = 0.95) -> PairedTResult:
    """Paired t on d = x − y (or log x − log y): R's `t.test(x, y, paired = TRUE)`."""
    d = _differences(x, y, log=log)
    n = d.size
    if n < 2:
        raise ValueError("the paired t needs at least two cases")
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    df = n - 1
    if se > 0:
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), df))
    else:  # every difference equal: R refuses ("data are essentially constant"); report it as undefined
        t, p = math.nan, math.nan
    q = float(stats.t.ppf(0.5 + confidence_level / 2, df))
    low, high = mean - q * se, mean + q * se
    extra = {}
    if log:
        extra = {"ratio": math.exp(mean), "ratio_low": math.exp(low), "ratio_high": math.exp(high)}
    return PairedTResult(n=n, mean_difference=mean, sd=sd, se=se, statistic=float(t), df=df, pvalue=p,
                         low=low, high=high, confidence_level=confidence_level, log=log, **extra)


def _signrank_cdf(v: float, n: int) -> float:
    """P(V ≤ v) under H0 for n untied non-zero differences (R's psignrank), by counting subsets of 1..n."""
    top = n * (n + 1) // 2
    if v < 0:
        return 0.0
    if v >= top:
        return 1.0
    counts = np.zeros(top + 1)
    counts[0] = 1.0
    for k in range(1, n + 1):          # add rank k to every subset sum already reachable
        counts[k:] = counts[k:] + counts[:-k].copy()
    return float(counts[: int(math.floor(v)) + 1].sum() / 2.0 ** n)


def wilcoxon_signed_rank(x, y, *, correct: bool = True, exact: bool | None = None) -> WilcoxonResult:
    """Two-sided Wilcoxon signed-rank test of d = x − y with R's defaults.

    Zero differences are dropped first. The exact null distribution is used when fewer than 50
    non-zero differences remain and there are neither ties nor zeros (`exact=None`, as R);
    otherwise the normal approximation with the tie-corrected variance and, when `correct`, the
    continuity correction. The statistic is V = W+, as R reports it (scipy's two-sided statistic
    is min(W+, W-) instead).
    """
    d = _differences(x, y, log=False)
    n_zero = int(np.sum(d == 0))
    d = d[d != 0]
    n = d.size
    ranks = stats.rankdata(np.abs(d))  # midranks for tied |d|
    v = float(ranks[d > 0].sum())
    ties = bool(np.unique(ranks).size != ranks.size)
    if exact is None:
        exact = n < 50
    if exact and not ties and n_zero == 0:
        if v > n * (n + 1) / 4:
            p = 1.0 - _signrank_cdf(v - 1, n)
        else:
            p = _signrank_cdf(v, n)
        return WilcoxonResult(n=n, n_zero=n_zero, statistic=v, pvalue=min(1.0, 2 * p), method="exact", ties=ties)
    _, tie_sizes = np.unique(ranks, return_counts=True)
    sigma = math.sqrt(n * (n + 1) * (2 * n + 1) / 24 - float(np.sum(tie_sizes ** 3 - tie_sizes)) / 48)
    z = v - n * (n + 1) / 4
    if correct:
        z -= math.copysign(0.5, z) if z != 0 else 0.0
    if sigma > 0:
        z /= sigma
        p = float(2 * min(stats.norm.cdf(z), stats.norm.sf(z)))
    else:  # no non-zero differences: R returns NaN
        p = math.nan
    return WilcoxonResult(n=n, n_zero=n_zero, statistic=v, pvalue=p, method="normal", ties=ties)


def compare_paired(x, y, *, log: bool = False, confidence_level: float = 0.95) -> PairedComparison:
    """Per-case comparison of arm x with arm y (x − y): the paired t with its CI and the Wilcoxon test.

    With `log`, the t analysis is on log values and also reports the ratio of geometric means with
    its CI (reading times); the Wilcoxon test is on the log differences then, which is what a
    statistician means by comparing times on the ratio scale.
    """
    t = paired_t(x, y, log=log, confidence_level=confidence_level)
    xs = np.log(np.asarray(x, float)) if log else np.asarray(x, float)
    ys = np.log(np.asarray(y, float)) if log else np.asarray(y, float)
    w = wilcoxon_signed_rank(xs, ys)
    return PairedComparison(n_cases=t.n, mean_x=float(xs.mean()), mean_y=float(ys.mean()), t=t, wilcoxon=w)
