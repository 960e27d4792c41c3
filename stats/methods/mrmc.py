"""Multi-reader multi-case (crossover) comparison of modalities: Obuchowski–Rockette with Hillis' df.

Every reader reads every case in every modality (fully crossed design). A figure of merit (FOM)
θᵢⱼ is computed for each modality i and reader j, and compared across modalities with the
Obuchowski–Rockette model (Obuchowski & Rockette 1995, Commun Stat Simul Comput 24:285), whose
error covariances over cases are estimated by the jackknife, and with Hillis' denominator degrees
of freedom (Hillis 2007, Stat Med 26:596; Hillis, Berbaum & Metz 2008, Acad Radiol 15:647). Three
analyses, as OR-DBM MRMC, RJafroc and MRMCaov report them:

- random readers and random cases: F = MS(T) / [MS(T×R) + r·max(Cov2 − Cov3, 0)] on
  (t − 1, ddf_H), ddf_H = [MS(T×R) + r·max(Cov2 − Cov3, 0)]² / {MS(T×R)² / [(t − 1)(r − 1)]};
- fixed readers, random cases: X² = (t − 1)·MS(T) / [Var − Cov1 + (r − 1)·max(Cov2 − Cov3, 0)] on χ²(t − 1);
- random readers, fixed cases: F = MS(T) / MS(T×R) on (t − 1, (t − 1)(r − 1)).

FOMs: the trapezoidal (Wilcoxon) AUC, or the sensitivity / specificity at a rating threshold T
(rating ≥ T is a positive call). The jackknife leaves out one case at a time from the cases the
FOM depends on: all cases for the AUC, diseased cases only for sensitivity, healthy cases only for
specificity (as MRMCaov does; jackknifing over all cases would add zero rows and shrink the
covariances by a factor).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from itertools import combinations

import numpy as np
from scipy import stats

from stats.methods.roc import delong_components

__all__ = ["FOMS", "Comparison", "ModalityEstimate", "ORAnalysis", "MRMCResult", "obuchowski_rockette"]

FOMS = ("auc", "sensitivity", "specificity")


@dataclass(frozen=True)
class Comparison:
    """Difference of the reader-averaged FOMs of two modalities, first − second."""

    first: str
    second: str
    estimate: float
    se: float
    df: float | None             # None: normal reference (fixed readers)
    statistic: float             # t, or z when df is None
    pvalue: float
    low: float
    high: float

    def confidence_interval(self) -> tuple[float, float]:
        return self.low, self.high


@dataclass(frozen=True)
class ModalityEstimate:
    """Reader-averaged FOM of one modality with an interval based only on that modality's data (clipped to [0, 1])."""

    modality: str
    estimate: float
    se: float
    df: float | None
    low: float
    high: float


@dataclass(frozen=True)
class ORAnalysis:
    """One Obuchowski–Rockette analysis (one choice of random / fixed factors)."""

    factors: str                 # "random readers, random cases", "fixed readers, random cases"
                                 # or "random readers, fixed cases"
    statistic_name: str          # "F" or "chi2"
    statistic: float
    df1: int
    df2: float | None            # None for the chi-square
    pvalue: float
    denominator: float           # the error term of the statistic
    comparisons: tuple[Comparison, ...]
    modalities: tuple[ModalityEstimate, ...]


@dataclass(frozen=True)
class MRMCResult:
    fom: str
    threshold: float | None
    modalities: tuple[str, ...]
    readers: tuple[str, ...]
    n_cases: int
    n_positive: int
    n_negative: int
    n_jackknife: int             # cases left out one at a time
    foms: tuple[tuple[float, ...], ...]    # [modality][reader]
    modality_foms: tuple[float, ...]       # averaged over readers
    ms_t: float
    ms_r: float
    ms_tr: float | None
    var: float                   # OR error variance and covariances (jackknife)
    cov1: float                  # same reader, different modality
    cov2: float                  # different reader, same modality
    cov3: float                  # different reader, different modality
    random: ORAnalysis | None    # random readers and cases (None with one reader)
    fixed_readers: ORAnalysis
    fixed_cases: ORAnalysis | None
    confidence_level: float

    @property
    def statistic(self) -> float:
        return self.random.statistic if self.random else self.fixed_readers.statistic

    @property
    def pvalue(self) -> float:
        return self.random.pvalue if self.random else self.fixed_readers.pvalue

    @property
    def difference(self) -> float:
        return self.modality_foms[0] - self.modality_foms[1]

    def to_dict(self) -> dict:
        return asdict(self)


def _natural(labels) -> list[str]:
    """Sort labels numerically when they all are numbers ('2' before '10'), else as text."""
    labels = list(labels)
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


def _layout(reader, case, modality, truth, rating, modalities):
    reader, case, modality = ([str(v) for v in col] for col in (reader, case, modality))
    truth = np.asarray(truth, dtype=float)
    rating = np.asarray(rating, dtype=float)
    if not (len(reader) == len(case) == len(modality) == truth.size == rating.size):
        raise ValueError("reader, case, modality, truth and rating must have the same length")
    if not np.all(np.isfinite(rating)):
        raise ValueError("ratings must be finite numbers")
    if not np.all(np.isin(truth, (0, 1))):
        raise ValueError("truth must be 0 (healthy) or 1 (diseased)")
    present = _natural(set(modality))
    mods = list(modalities) if modalities is not None else present
    if sorted(mods) != sorted(present):
        raise ValueError(f"modalities {mods!r} do not match the data's {present!r}")
    if len(mods) < 2:
        raise ValueError("an MRMC comparison needs at least two modalities")
    readers, cases = _natural(set(reader)), _natural(set(case))
    mi = {m: i for i, m in enumerate(mods)}
    ri = {r: j for j, r in enumerate(readers)}
    ci = {c: k for k, c in enumerate(cases)}
    y = np.full((len(mods), len(readers), len(cases)), np.nan)
    t_case = np.full(len(cases), np.nan)
    for r, c, m, t, v in zip(reader, case, modality, truth, rating):
        i, j, k = mi[m], ri[r], ci[c]
        if not np.isnan(y[i, j, k]):
            raise ValueError(f"reader {r!r} rated case {c!r} twice in modality {m!r}")
        y[i, j, k] = v
        if not np.isnan(t_case[k]) and t_case[k] != t:
            raise ValueError(f"case {c!r} has two different truths")
        t_case[k] = t
    if np.isnan(y).any():
        i, j, k = (int(a[0]) for a in np.nonzero(np.isnan(y)))
        raise ValueError(f"not fully crossed: reader {readers[j]!r} has no rating of case {cases[k]!r} "
                         f"in modality {mods[i]!r}")
    return tuple(mods), tuple(readers), y, t_case.astype(int)


def _jackknife_foms(y: np.ndarray, truth: np.ndarray, fom: str, threshold: float | None):
    """FOMs θ[t, r] and the leave-one-case-out FOMs θ₍₋ₖ₎[t, r, k] over the cases the FOM depends on."""
    t, r, _ = y.shape
    flat = y.reshape(t * r, -1)
    pos, neg = truth == 1, truth == 0
    m, n = int(pos.sum()), int(neg.sum())
    if fom == "auc":
        if m < 2 or n < 2:
            raise ValueError("the AUC jackknife needs at least two diseased and two healthy cases")
        theta, v10, v01 = delong_components(truth, flat)
        # leaving out a diseased case i removes its n comparisons: θ₍₋ᵢ₎ = (m θ − V10ᵢ) / (m − 1)
        jack = np.hstack([(m * theta[:, None] - v10) / (m - 1), (n * theta[:, None] - v01) / (n - 1)])
    else:
        if threshold is None:
            raise ValueError(f"the {fom} FOM needs a rating threshold (rating >= T is a positive call)")
        if fom == "sensitivity":
            hits, size = (flat[:, pos] >= threshold).astype(float), m
        else:
            hits, size = (flat[:, neg] < threshold).astype(float), n
        if size < 2:
            kind = "diseased" if fom == "sensitivity" else "healthy"
            raise ValueError(f"the {fom} jackknife needs at least two {kind} cases")
        theta = hits.mean(axis=1)
        jack = (size * theta[:, None] - hits) / (size - 1)
    return theta.reshape(t, r), jack


def _or_covariances(jack: np.ndarray, t: int, r: int):
    """Jackknife covariance of the FOMs over cases, averaged into OR's Var, Cov1, Cov2, Cov3 (and per modality)."""
    k = jack.shape[1]
    centred = jack - jack.mean(axis=1, keepdims=True)
    cov = (k - 1) / k * centred @ centred.T          # (t·r) × (t·r), rows ordered modality-major
    mod = np.repeat(np.arange(t), r)
    rdr = np.tile(np.arange(r), t)
    same_m = mod[:, None] == mod[None, :]
    same_r = rdr[:, None] == rdr[None, :]

    def mean(mask):
        return float(cov[mask].mean()) if mask.any() else 0.0

    var = mean(same_m & same_r)
    cov1 = mean(~same_m & same_r)
    cov2 = mean(same_m & ~same_r)
    cov3 = mean(~same_m & ~same_r)
    var_i = [mean(same_m & same_r & (mod[:, None] == i)) for i in range(t)]
    cov2_i = [mean(same_m & ~same_r & (mod[:, None] == i)) for i in range(t)]
    return var, cov1, cov2, cov3, var_i, cov2_i


def _interval(estimate: float, se: float, df: float | None, level: float) -> tuple[float, float]:
    q = stats.norm.ppf(0.5 + level / 2) if df is None or math.isinf(df) else stats.t.ppf(0.5 + level / 2, df)
    return float(estimate - q * se), float(estimate + q * se)


def _unit(interval: tuple[float, float]) -> tuple[float, float]:
    """A FOM is a proportion: its interval is clipped to [0, 1], as MRMCaov reports it."""
    return max(0.0, interval[0]), min(1.0, interval[1])


def _comparisons(mods, means, se: float, df: float | None, level: float) -> tuple[Comparison, ...]:
    out = []
    for a, b in combinations(range(len(mods)), 2):
        est = float(means[a] - means[b])
        stat = est / se if se > 0 else math.nan
        if df is None or math.isinf(df):
            p = float(2 * stats.norm.sf(abs(stat)))
        else:
            p = float(2 * stats.t.sf(abs(stat), df))
        low, high = _interval(est, se, df, level)
        out.append(Comparison(first=mods[a], second=mods[b], estimate=est, se=se,
                              df=None if df is None or math.isinf(df) else float(df),
                              statistic=stat, pvalue=p, low=low, high=high))
    return tuple(out)


def _f_pvalue(f: float, df1: int, df2: float) -> float:
    if math.isinf(df2):
        return float(stats.chi2.sf(f * df1, df1))
    return float(stats.f.sf(f, df1, df2))


def obuchowski_rockette(*, reader, case, modality, truth, rating, fom: str = "auc", threshold: float | None = None,
                        modalities=None, confidence_level: float = 0.95) -> MRMCResult:
    """OR/Hillis analysis of a fully crossed MRMC study given in long format (one row per rating).

    `modalities` orders the comparison (first − second); by default the labels sorted
    (numerically when they are numbers).
    """
    if fom not in FOMS:
        raise ValueError(f"fom must be one of {', '.join(FOMS)}")
    mods, readers, y, truth_k = _layout(reader, case, modality, truth, rating, modalities)
    t, r, n_cases = y.shape
    theta, jack = _jackknife_foms(y, truth_k, fom, threshold)
    var, cov1, cov2, cov3, var_i, cov2_i = _or_covariances(jack, t, r)

    mean_i = theta.mean(axis=1)
    mean_j = theta.mean(axis=0)
    grand = float(theta.mean())
    ms_t = r * float(np.sum((mean_i - grand) ** 2)) / (t - 1)
    ms_r = t * float(np.sum((mean_j - grand) ** 2)) / (r - 1) if r > 1 else math.nan
    ms_tr = (float(np.sum((theta - mean_i[:, None] - mean_j[None, :] + grand) ** 2)) / ((t - 1) * (r - 1))
             if r > 1 else None)
    ms_r_i = theta.var(axis=1, ddof=1) if r > 1 else np.full(t, math.nan)
    level = confidence_level
    c23 = max(cov2 - cov3, 0.0)   # Hillis' truncation, part of the published procedure

    # fixed readers, random cases
    den_fr = var - cov1 + (r - 1) * c23
    x2 = (t - 1) * ms_t / den_fr if den_fr > 0 else math.nan
    se_fr = math.sqrt(2 * den_fr / r) if den_fr > 0 else math.nan
    mod_fr = []
    for i in range(t):
        se_i = math.sqrt((var_i[i] + (r - 1) * max(cov2_i[i], 0.0)) / r)
        mod_fr.append(ModalityEstimate(mods[i], float(mean_i[i]), se_i, None,
                                       *_unit(_interval(mean_i[i], se_i, None, level))))
    fixed_readers = ORAnalysis(
        factors="fixed readers, random cases", statistic_name="chi2", statistic=float(x2), df1=t - 1, df2=None,
        pvalue=float(stats.chi2.sf(x2, t - 1)), denominator=float(den_fr),
        comparisons=_comparisons(mods, mean_i, se_fr, None, level), modalities=tuple(mod_fr))

    random = fixed_cases = None
    if r > 1:
        # random readers and random cases (Hillis 2007 ddf)
        den = ms_tr + r * c23
        f = ms_t / den if den > 0 else math.nan
        ddf = den ** 2 / (ms_tr ** 2 / ((t - 1) * (r - 1))) if ms_tr > 0 else math.inf
        mod_rr = []
        for i in range(t):
            c2 = max(cov2_i[i], 0.0)
            se_i = math.sqrt(ms_r_i[i] / r + c2)
            df_i = (ms_r_i[i] + r * c2) ** 2 / (ms_r_i[i] ** 2 / (r - 1)) if ms_r_i[i] > 0 else math.inf
            mod_rr.append(ModalityEstimate(mods[i], float(mean_i[i]), float(se_i),
                                           None if math.isinf(df_i) else float(df_i),
                                           *_unit(_interval(mean_i[i], se_i, df_i, level))))
        random = ORAnalysis(
            factors="random readers, random cases", statistic_name="F", statistic=float(f), df1=t - 1,
            df2=None if math.isinf(ddf) else float(ddf), pvalue=_f_pvalue(f, t - 1, ddf), denominator=float(den),
            comparisons=_comparisons(mods, mean_i, math.sqrt(2 * den / r), ddf, level), modalities=tuple(mod_rr))

        # random readers, fixed cases: the conventional two-way ANOVA of the FOMs
        df_fc = (t - 1) * (r - 1)
        f_fc = ms_t / ms_tr if ms_tr > 0 else math.nan
        mod_fc = []
        for i in range(t):
            se_i = math.sqrt(ms_r_i[i] / r)
            mod_fc.append(ModalityEstimate(mods[i], float(mean_i[i]), float(se_i), float(r - 1),
                                           *_unit(_interval(mean_i[i], se_i, r - 1, level))))
        fixed_cases = ORAnalysis(
            factors="random readers, fixed cases", statistic_name="F", statistic=float(f_fc), df1=t - 1,
            df2=float(df_fc), pvalue=_f_pvalue(f_fc, t - 1, df_fc), denominator=float(ms_tr),
            comparisons=_comparisons(mods, mean_i, math.sqrt(2 * ms_tr / r), df_fc, level), modalities=tuple(mod_fc))

    return MRMCResult(
        fom=fom, threshold=None if fom == "auc" else float(threshold),
        modalities=mods, readers=readers, n_cases=n_cases,
        n_positive=int((truth_k == 1).sum()), n_negative=int((truth_k == 0).sum()), n_jackknife=jack.shape[1],
        foms=tuple(tuple(float(v) for v in row) for row in theta),
        modality_foms=tuple(float(v) for v in mean_i),
        ms_t=ms_t, ms_r=ms_r, ms_tr=ms_tr, var=var, cov1=cov1, cov2=cov2, cov3=cov3,
        random=random, fixed_readers=fixed_readers, fixed_cases=fixed_cases, confidence_level=confidence_level)
