"""Agreement between raters (experts' quality scores, readers' calls): Fleiss' κ, weighted Cohen's κ, ICC.

- Fleiss' κ for m raters per item (Fleiss 1971, Psychol Bull 76:378), with the z test of
  Fleiss, Nee & Landis (1979, Psychol Bull 86:974) under κ = 0, as R `irr::kappam.fleiss` reports it.
- Cohen's κ for two raters, unweighted or with linear / quadratic agreement weights (Cohen 1968),
  with the large-sample variance of Fleiss, Cohen & Everitt (1969, Psychol Bull 72:323). Weights use
  the distances between the numeric score values, so a Likert scale with an unused level keeps its
  spacing. (R `psych::cohen.kappa` gives the same κ but a different variance for weighted κ.)
- ICC(2,1) (two-way random, absolute agreement) and ICC(3,1) (two-way mixed, consistency) from
  the two-way ANOVA mean squares, with the F-based intervals of Shrout & Fleiss (1979, Psychol Bull
  86:420, eqs. 5–6 and the Satterthwaite interval for ICC(2,1)), as R `psych::ICC` reports them.
  They need the same raters on every item.
- ICC(1,1) (one-way random: each item rated by its own set of raters; Shrout & Fleiss 1979, case 1)
  with its F interval, as `psych::ICC` reports "ICC1": the ICC to report when the raters of an item
  are not a fixed panel (experts assigned per item, or raters known only by their position).
- Krippendorff's α (Krippendorff 2004, *Content Analysis*, ch. 11; "Computing Krippendorff's
  alpha-reliability", 2011) from the coincidence matrix, with the nominal, ordinal, interval or ratio
  difference function: an agreement for ordinal scores (Likert, RADPEER) beside Fleiss' κ, which
  treats the categories as unordered. Items with fewer than two scores are left out; raters may
  differ between items and items may have different numbers of scores.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats
from statsmodels.stats import inter_rater

__all__ = [
    "FleissKappa",
    "CohenKappa",
    "ICC",
    "AgreementResult",
    "ratings_matrix",
    "fleiss_kappa",
    "cohen_kappa",
    "icc",
    "icc1",
    "KrippendorffAlpha",
    "krippendorff_alpha",
    "analyse_agreement",
]


@dataclass(frozen=True)
class FleissKappa:
    kappa: float
    se0: float                   # standard error under κ = 0 (Fleiss, Nee & Landis 1979)
    statistic: float             # z = κ / se0
    pvalue: float                # two-sided
    n_items: int
    n_raters: int                # per item
    categories: tuple[float, ...]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CohenKappa:
    weights: str                 # "none", "linear" or "quadratic"
    kappa: float
    se: float                    # large-sample (Fleiss, Cohen & Everitt 1969)
    low: float
    high: float
    se0: float                   # under κ = 0
    statistic: float             # z = κ / se0
    pvalue: float
    n_items: int
    confidence_level: float

    def confidence_interval(self) -> tuple[float, float]:
        return self.low, self.high

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ICC:
    kind: str                    # "ICC(1,1)", "ICC(2,1)" or "ICC(3,1)"
    estimate: float
    statistic: float             # F = MS(items) / MS(error)
    df1: int
    df2: int
    pvalue: float                # H0: ICC = 0
    low: float
    high: float
    confidence_level: float

    def confidence_interval(self) -> tuple[float, float]:
        return self.low, self.high

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class KrippendorffAlpha:
    metric: str                  # "nominal", "ordinal", "interval" or "ratio"
    alpha: float
    observed_disagreement: float  # D_o
    expected_disagreement: float  # D_e
    n_items: int                 # items with at least two scores (pairable)
    n_values: int                # pairable values: the n of the coincidence matrix
    categories: tuple[float, ...]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AgreementResult:
    n_items: int
    n_raters: int
    raters: tuple[str, ...]
    ms_items: float              # two-way ANOVA mean squares (items × raters, one score per cell)
    ms_raters: float
    ms_error: float
    icc2: ICC
    icc3: ICC
    fleiss: FleissKappa
    cohen_unweighted: CohenKappa | None    # two raters only
    cohen_linear: CohenKappa | None
    cohen_quadratic: CohenKappa | None
    icc1: ICC | None = None
    krippendorff_ordinal: KrippendorffAlpha | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def ratings_matrix(item, rater, score) -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray]:
    """Long format (one row per item and rater) to an items × raters matrix; every cell must be filled once."""
    item, rater = [str(v) for v in item], [str(v) for v in rater]
    score = np.asarray(score, dtype=float)
    if not (len(item) == len(rater) == score.size):
        raise ValueError("item, rater and score must have the same length")
    if not np.all(np.isfinite(score)):
        raise ValueError("scores must be finite numbers")
    items, raters = sorted(set(item)), sorted(set(rater))
    ii = {v: i for i, v in enumerate(items)}
    rj = {v: j for j, v in enumerate(raters)}
    x = np.full((len(items), len(raters)), np.nan)
    for i, r, s in zip(item, rater, score):
        if not np.isnan(x[ii[i], rj[r]]):
            raise ValueError(f"rater {r!r} scored item {i!r} twice")
        x[ii[i], rj[r]] = s
    if np.isnan(x).any():
        i, j = (int(a[0]) for a in np.nonzero(np.isnan(x)))
        raise ValueError(f"incomplete ratings: rater {raters[j]!r} did not score item {items[i]!r}")
    return tuple(items), tuple(raters), x


def fleiss_kappa(matrix) -> FleissKappa:
    """Fleiss' κ of an items × raters matrix of category codes (statsmodels), with the z test under κ = 0."""
    x = np.asarray(matrix, dtype=float)
    n_items, m = x.shape
    if m < 2:
        raise ValueError("Fleiss' kappa needs at least two raters per item")
    counts, categories = inter_rater.aggregate_raters(x)
    kappa = float(inter_rater.fleiss_kappa(counts, method="fleiss"))
    p = counts.sum(axis=0) / (n_items * m)
    pq = p * (1 - p)
    if pq.sum() > 0:
        se0 = math.sqrt(2) / (pq.sum() * math.sqrt(n_items * m * (m - 1))) * math.sqrt(
            pq.sum() ** 2 - float(np.sum(pq * (1 - 2 * p))))
        z = kappa / se0
        pval = float(2 * stats.norm.sf(abs(z)))
    else:  # every rating in one category: κ is undefined
        se0, z, pval = math.nan, math.nan, math.nan
    return FleissKappa(kappa=kappa, se0=se0, statistic=z, pvalue=pval, n_items=n_items, n_raters=m,
                       categories=tuple(float(c) for c in categories))


def cohen_kappa(x, y, *, weights: str = "none", confidence_level: float = 0.95) -> CohenKappa:
    """Cohen's κ of two raters' scores on the same items; `weights` "none", "linear" or "quadratic"."""
    if weights not in ("none", "linear", "quadratic"):
        raise ValueError("weights must be none, linear or quadratic")
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("the two raters must score the same items")
    cats = np.unique(np.concatenate([x, y]))
    table = (x[:, None, None] == cats[None, :, None]) & (y[:, None, None] == cats[None, None, :])
    table = table.sum(axis=0)
    if cats.size < 2:
        nan = math.nan
        return CohenKappa(weights, nan, nan, nan, nan, nan, nan, nan, int(x.size), confidence_level)
    res = inter_rater.cohens_kappa(table, wt=None if weights == "none" else weights,
                                   weights=None if weights == "none" else cats)
    z = float(stats.norm.ppf(0.5 + confidence_level / 2))
    return CohenKappa(weights=weights, kappa=float(res.kappa), se=float(res.std_kappa),
                      low=float(res.kappa - z * res.std_kappa), high=float(res.kappa + z * res.std_kappa),
                      se0=float(res.std_kappa0),
                      statistic=float(res.z_value), pvalue=float(res.pvalue_two_sided), n_items=int(x.size),
                      confidence_level=confidence_level)


def _mean_squares(x: np.ndarray) -> tuple[float, float, float]:
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * float(np.sum((x.mean(axis=1) - grand) ** 2))
    ss_cols = n * float(np.sum((x.mean(axis=0) - grand) ** 2))
    ss_err = float(np.sum((x - grand) ** 2)) - ss_rows - ss_cols
    return ss_rows / (n - 1), ss_cols / (k - 1), ss_err / ((n - 1) * (k - 1))


def icc(matrix, *, confidence_level: float = 0.95) -> tuple[ICC, ICC]:
    """ICC(2,1) and ICC(3,1) (Shrout & Fleiss 1979) of an items × raters matrix, with F-based intervals."""
    x = np.asarray(matrix, dtype=float)
    n, k = x.shape
    if n < 2 or k < 2:
        raise ValueError("an ICC needs at least two items and two raters")
    msr, msc, mse = _mean_squares(x)
    df1, df2 = n - 1, (n - 1) * (k - 1)
    upper_q = 0.5 + confidence_level / 2
    f = msr / mse if mse > 0 else math.inf
    p = float(stats.f.sf(f, df1, df2)) if math.isfinite(f) else 0.0

    icc3 = (msr - mse) / (msr + (k - 1) * mse)
    if math.isfinite(f):
        fl = f / stats.f.ppf(upper_q, df1, df2)
        fu = f * stats.f.ppf(upper_q, df2, df1)
        low3, high3 = (fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1)
    else:
        low3 = high3 = 1.0

    icc2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    # Satterthwaite df for the denominator mixture (Shrout & Fleiss 1979, p. 425; Fleiss & Shrout 1978)
    fj = msc / mse if mse > 0 else math.inf
    c = n * (1 + (k - 1) * icc2) - k * icc2
    v = (k - 1) * (n - 1) * (k * icc2 * fj + c) ** 2 / ((n - 1) * (k * icc2 * fj) ** 2 + c ** 2)
    f_star_low = stats.f.ppf(upper_q, n - 1, v)
    f_star_high = stats.f.ppf(upper_q, v, n - 1)
    low2 = n * (msr - f_star_low * mse) / (f_star_low * (k * msc + (k * n - k - n) * mse) + n * msr)
    high2 = n * (f_star_high * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f_star_high * msr)

    return (ICC("ICC(2,1)", float(icc2), float(f), df1, df2, p, float(low2), float(high2), confidence_level),
            ICC("ICC(3,1)", float(icc3), float(f), df1, df2, p, float(low3), float(high3), confidence_level))


def icc1(matrix, *, confidence_level: float = 0.95) -> ICC:
    """ICC(1,1), one-way random effects (Shrout & Fleiss 1979, case 1), with the F interval (psych's "ICC1")."""
    x = np.asarray(matrix, dtype=float)
    n, k = x.shape
    if n < 2 or k < 2:
        raise ValueError("an ICC needs at least two items and two raters")
    grand = x.mean()
    ss_rows = k * float(np.sum((x.mean(axis=1) - grand) ** 2))
    ss_within = float(np.sum((x - x.mean(axis=1, keepdims=True)) ** 2))
    df1, df2 = n - 1, n * (k - 1)
    msb, msw = ss_rows / df1, ss_within / df2
    estimate = (msb - msw) / (msb + (k - 1) * msw)
    upper_q = 0.5 + confidence_level / 2
    if msw > 0:
        f = msb / msw
        p = float(stats.f.sf(f, df1, df2))
        fl = f / stats.f.ppf(upper_q, df1, df2)
        fu = f * stats.f.ppf(upper_q, df2, df1)
        low, high = (fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1)
    else:
        f, p, low, high = math.inf, 0.0, 1.0, 1.0
    return ICC("ICC(1,1)", float(estimate), float(f), df1, df2, p, float(low), float(high), confidence_level)


METRICS = ("nominal", "ordinal", "interval", "ratio")


def krippendorff_alpha(item, score, *, metric: str = "ordinal") -> KrippendorffAlpha:
    """Krippendorff's α of scores given in long format (one row per item and rater; raters need no names).

    α = 1 − D_o/D_e with the coincidence matrix o_ck = Σ_u (c–k pairs in item u)/(m_u − 1) over items
    with m_u ≥ 2 scores, n_c = Σ_k o_ck, n = Σ n_c, D_o = Σ o_ck δ²_ck / n and
    D_e = Σ n_c n_k δ²_ck / (n (n − 1)); δ² by `metric` (ordinal: (Σ_{g=c..k} n_g − (n_c + n_k)/2)²).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}")
    item = [str(v) for v in item]
    values = np.asarray(score, dtype=float)
    if len(item) != values.size:
        raise ValueError("item and score must have the same length")
    if not np.all(np.isfinite(values)):
        raise ValueError("scores must be finite numbers")
    cats = np.unique(values)
    index = {c: i for i, c in enumerate(cats.tolist())}
    by_item: dict[str, list[int]] = {}
    for i, v in zip(item, values.tolist()):
        by_item.setdefault(i, []).append(index[v])
    K = cats.size
    o = np.zeros((K, K))
    pairable = 0
    for codes in by_item.values():
        m = len(codes)
        if m < 2:
            continue
        pairable += 1
        counts = np.bincount(codes, minlength=K).astype(float)
        o += (np.outer(counts, counts) - np.diag(counts)) / (m - 1)
    nc = o.sum(axis=1)
    n = float(nc.sum())
    if pairable == 0 or n < 2:
        raise ValueError("Krippendorff's alpha needs at least one item with two scores")
    if metric == "nominal":
        d2 = 1.0 - np.eye(K)
    elif metric == "interval":
        d2 = (cats[:, None] - cats[None, :]) ** 2
    elif metric == "ratio":
        s = cats[:, None] + cats[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            d2 = np.where(s != 0, ((cats[:, None] - cats[None, :]) / s) ** 2, 0.0)
    else:
        cum = np.concatenate([[0.0], np.cumsum(nc)])
        lo, hi = np.minimum.outer(np.arange(K), np.arange(K)), np.maximum.outer(np.arange(K), np.arange(K))
        d2 = (cum[hi + 1] - cum[lo] - (nc[:, None] + nc[None, :]) / 2.0) ** 2
    d_o = float(np.sum(o * d2)) / n
    d_e = float(np.sum(np.outer(nc, nc) * d2)) / (n * (n - 1.0))
    alpha = 1.0 - d_o / d_e if d_e > 0 else math.nan
    return KrippendorffAlpha(metric=metric, alpha=float(alpha), observed_disagreement=d_o, expected_disagreement=d_e,
                             n_items=pairable, n_values=int(round(n)), categories=tuple(float(c) for c in cats))


def analyse_agreement(*, item, rater, score, confidence_level: float = 0.95) -> AgreementResult:
    """All agreement measures of a complete items × raters design given in long format."""
    _, raters, x = ratings_matrix(item, rater, score)
    n, k = x.shape
    if n < 2 or k < 2:
        raise ValueError("agreement needs at least two items and two raters")
    msr, msc, mse = _mean_squares(x)
    icc2, icc3 = icc(x, confidence_level=confidence_level)
    cohen = {w: cohen_kappa(x[:, 0], x[:, 1], weights=w, confidence_level=confidence_level) if k == 2 else None
             for w in ("none", "linear", "quadratic")}
    return AgreementResult(n_items=n, n_raters=k, raters=raters, ms_items=msr, ms_raters=msc, ms_error=mse,
                           icc2=icc2, icc3=icc3, fleiss=fleiss_kappa(x),
                           cohen_unweighted=cohen["none"], cohen_linear=cohen["linear"],
                           cohen_quadratic=cohen["quadratic"], icc1=icc1(x, confidence_level=confidence_level),
                           krippendorff_ordinal=krippendorff_alpha(np.repeat(np.arange(n), k), x.reshape(-1),
                                                                   metric="ordinal"))
