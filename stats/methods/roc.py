"""Area under the ROC curve of AI finding scores, with DeLong intervals and the paired DeLong test.

The AUC is the Mann–Whitney statistic, P(score of a diseased case > score of a healthy case) with
ties counted ½, i.e. the empirical (trapezoidal) ROC area with higher scores meaning disease
(pROC `direction = "<"`). Its variance and the covariance of two AUCs on the same cases come from
DeLong's structural components V10 / V01 (DeLong, DeLong & Clarke-Pearson 1988, Biometrics 44:837),
computed with midranks as in Sun & Xu 2014 (IEEE Signal Processing Letters 21:1389), which needs
only three rankings per score instead of m × n comparisons.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

__all__ = ["AUCResult", "DeLongTest", "delong_components", "roc_auc", "delong_test"]


@dataclass(frozen=True)
class AUCResult:
    auc: float
    se: float                    # DeLong
    low: float                   # normal interval, clipped to [0, 1] as pROC's ci.auc does
    high: float
    n_positive: int
    n_negative: int
    confidence_level: float

    def confidence_interval(self) -> tuple[float, float]:
        return self.low, self.high

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DeLongTest:
    """Paired DeLong test of AUC(a) − AUC(b) on the same cases (pROC `roc.test(method = "delong", paired = TRUE)`)."""

    a: AUCResult
    b: AUCResult
    difference: float            # AUC(a) − AUC(b)
    se: float
    statistic: float             # z
    pvalue: float                # two-sided
    low: float                   # normal interval of the difference
    high: float
    correlation: float           # DeLong correlation of the two AUC estimates
    confidence_level: float

    def confidence_interval(self) -> tuple[float, float]:
        return self.low, self.high

    def to_dict(self) -> dict:
        return asdict(self)


def _check(truth, scores) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    if truth.ndim != 1 or scores.shape[1] != truth.size:
        raise ValueError("truth and every score must have one value per case")
    if not np.all(np.isin(truth, (0, 1))):
        raise ValueError("truth must be 0 (healthy) or 1 (diseased)")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite numbers")
    if truth.sum() < 2 or (truth == 0).sum() < 2:
        raise ValueError("the DeLong variance needs at least two diseased and two healthy cases")
    return truth.astype(int), scores


def delong_components(truth, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and the structural components of k scores (rows of `scores`) on the same cases.

    Returns (auc[k], v10[k, m], v01[k, n]) for the m diseased and n healthy cases; with midranks
    (Sun & Xu 2014): V10ᵢ = (Tzᵢ − Txᵢ) / n and V01ⱼ = 1 − (Tzⱼ − Tyⱼ) / m, where Tz ranks all cases,
    Tx the diseased only and Ty the healthy only.
    """
    truth, scores = _check(truth, scores)
    pos, neg = scores[:, truth == 1], scores[:, truth == 0]
    m, n = pos.shape[1], neg.shape[1]
    tx = stats.rankdata(pos, axis=1)
    ty = stats.rankdata(neg, axis=1)
    tz = stats.rankdata(np.hstack([pos, neg]), axis=1)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return v10.mean(axis=1), v10, v01


def _covariance(v10: np.ndarray, v01: np.ndarray) -> np.ndarray:
    m, n = v10.shape[1], v01.shape[1]
    return np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n


def _auc_result(auc: float, var: float, m: int, n: int, confidence_level: float) -> AUCResult:
    se = math.sqrt(max(var, 0.0))
    z = float(stats.norm.ppf(0.5 + confidence_level / 2))
    return AUCResult(auc=float(auc), se=se, low=max(0.0, auc - z * se), high=min(1.0, auc + z * se),
                     n_positive=m, n_negative=n, confidence_level=confidence_level)


def roc_auc(truth, score, *, confidence_level: float = 0.95) -> AUCResult:
    """Empirical AUC with its DeLong standard error and interval (pROC `ci.auc(method = "delong")`)."""
    auc, v10, v01 = delong_components(truth, score)
    cov = _covariance(v10, v01)
    return _auc_result(auc[0], cov[0, 0], v10.shape[1], v01.shape[1], confidence_level)


def delong_test(truth, score_a, score_b, *, confidence_level: float = 0.95) -> DeLongTest:
    """Paired DeLong test between two scores on the same cases."""
    auc, v10, v01 = delong_components(truth, np.vstack([np.asarray(score_a, float), np.asarray(score_b, float)]))
    cov = _covariance(v10, v01)
    m, n = v10.shape[1], v01.shape[1]
    a = _auc_result(auc[0], cov[0, 0], m, n, confidence_level)
    b = _auc_result(auc[1], cov[1, 1], m, n, confidence_level)
    diff = float(auc[0] - auc[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    if se > 0:
        zstat = diff / se
        p = float(2 * stats.norm.sf(abs(zstat)))
    else:  # identical rankings: nothing to test
        zstat, p = math.nan, math.nan
    q = float(stats.norm.ppf(0.5 + confidence_level / 2))
    denom = math.sqrt(cov[0, 0] * cov[1, 1])
    return DeLongTest(a=a, b=b, difference=diff, se=se, statistic=zstat, pvalue=p,
                      low=diff - q * se, high=diff + q * se,
                      correlation=float(cov[0, 1] / denom) if denom > 0 else math.nan,
                      confidence_level=confidence_level)
