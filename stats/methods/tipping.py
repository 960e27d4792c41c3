"""δ-adjusted tipping point of an LMM arm effect for its missing outcomes (pattern mixture, no Django).

The primary mixed model uses every outcome observed; that is valid when the missing outcomes (reads
not submitted, reports not scored, an expert's missing score) are missing at random (MAR) given the
model. A δ-adjusted sensitivity analysis (Little & Yau 1996; Ratitch, O'Kelly & Tosiello 2013;
the EMA guideline on missing data, 2010) supposes instead that the missing outcomes of an arm lie,
on average, δ away from what MAR predicts, and asks for the δ at which the trial's conclusion changes
(the tipping point).

Method. Complete the data with one row per expected outcome: the observed rows and, for each
missing one, a row with its case, arm, reader, expert, site and period (the design is known even
where the outcome is not). With the variance parameters fixed at the fit's REML estimates, V is
known and the arm effect of the completed data is the GLS estimate β̂(y_c) = L (XᵀV⁻¹X)⁻¹ XᵀV⁻¹ y_c,
linear in y_c. Filling each missing outcome with its conditional mean given the observed ones under
the model (MAR imputation, the limit of many imputations) returns the observed-data estimate β̂
exactly (the fixed point of EM for a Gaussian model with known V); adding δ_X to the imputed
outcomes of arm X and δ_Y to those of arm Y gives

    β̂(δ_X, δ_Y) = β̂ + δ_X w_X + δ_Y w_Y,      w_a = L (XᵀV⁻¹X)⁻¹ XᵀV⁻¹ 1[imputed rows of arm a],

and, δ being a fixed sensitivity parameter, Rubin's variance in the limit of many proper imputations
is the observed-data variance: the standard error and the Satterthwaite df of the primary fit are
kept. So the conclusion at any δ follows from β̂, its SE, its df and the two weights; no refit and no
random draws. V⁻¹ is applied by the Woodbury identity on the sparse random-effects design.

Direction. F is the arm the estimate favours (the sign of β̂; X when β̂ = 0). If the primary is
significant, the tipping point is the shift of F's missing outcomes towards the other arm at which
the interval first contains 0; if not, the shift in F's favour at which it first excludes 0. The
shift of both arms' missing outcomes in opposite directions is reported beside it.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg
from scipy import stats

from .lmm import design_columns, grouping_codes

__all__ = ["DeltaWeights", "TippingPoint", "delta_weights", "tipping_point"]


@dataclass(frozen=True)
class DeltaWeights:
    """w_a: the change of the arm effect per unit shift of arm a's missing outcomes (module docstring)."""

    treatment: float
    reference: float
    missing_treatment: int
    missing_reference: int
    expected_treatment: int
    expected_reference: int


def delta_weights(data: Mapping[str, Any], *, missing: Sequence[bool], random: Sequence[str],
                  variance_components: Mapping[str, float], residual_variance: float, covariates: Sequence[str] = (),
                  arm: str = "arm", treatment: str, reference: str) -> DeltaWeights:
    """The weights w_X, w_Y of the completed data `data` (one row per expected outcome; `missing` marks the
    imputed rows) at the fit's variance parameters: `variance_components` by grouping term and the residual."""
    miss = np.asarray(missing, dtype=bool)
    n = miss.size
    X, _ = design_columns(data, arm=arm, covariates=covariates, treatment=treatment, reference=reference, n=n)
    if residual_variance <= 0:
        raise ValueError("the residual variance must be > 0")
    blocks, scale = [], []
    for term in random:
        tau2 = float(variance_components.get(term, 0.0))
        if tau2 <= 0:
            continue   # a component on the boundary adds nothing to V
        codes, m = grouping_codes(data, term, n)
        blocks.append(sp.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, m)))
        scale.append(np.full(m, residual_variance / tau2))
    arms = np.asarray(data[arm]).astype(str)
    E = np.column_stack([(miss & (arms == treatment)).astype(float), (miss & (arms == reference)).astype(float)])
    M = np.column_stack([X, E])
    if blocks:
        Z = sp.hstack(blocks).tocsc()
        C = (Z.T @ Z + sp.diags(np.concatenate(scale))).tocsc()
        ZtM = np.asarray(Z.T @ M)
        solved = scipy.sparse.linalg.splu(C).solve(ZtM)
        VinvM = (M - Z @ solved) / residual_variance
    else:
        VinvM = M / residual_variance
    p = X.shape[1]
    A = X.T @ VinvM[:, :p]
    B = X.T @ VinvM[:, p:]
    w = np.linalg.solve(A, B)[1]      # the arm coefficient's row
    is_t = arms == treatment
    return DeltaWeights(treatment=float(w[0]), reference=float(w[1]),
                        missing_treatment=int((miss & is_t).sum()), missing_reference=int((miss & ~is_t).sum()),
                        expected_treatment=int(is_t.sum()), expected_reference=int((~is_t).sum()))


@dataclass(frozen=True)
class TippingPoint:
    """The shift of the missing outcomes at which the conclusion about the arm effect changes."""

    estimate: float
    se: float
    df: float
    alpha: float
    weights: DeltaWeights
    favoured: str                   # "treatment" or "reference": the arm the estimate favours
    significant: bool
    shift: float | None             # added to the favoured arm's missing outcomes; None: no shift changes it
    shift_both: float | None        # added to the favoured arm's, subtracted from the other arm's
    grid: list[dict[str, float | bool]] = field(default_factory=list)

    @property
    def critical(self) -> float:
        return float(stats.t.isf(self.alpha / 2, self.df))

    def to_dict(self) -> dict[str, Any]:
        w = self.weights
        return {"estimate": self.estimate, "se": self.se, "df": self.df, "alpha": self.alpha,
                "critical_t": self.critical, "significant": self.significant, "favoured": self.favoured,
                "shift": self.shift, "shift_both": self.shift_both,
                "weights": {"treatment": w.treatment, "reference": w.reference},
                "missing": {"treatment": w.missing_treatment, "reference": w.missing_reference},
                "expected": {"treatment": w.expected_treatment, "reference": w.expected_reference},
                "grid": self.grid}


def _at(estimate: float, se: float, df: float, alpha: float) -> dict[str, float | bool]:
    p = float(2 * stats.t.sf(abs(estimate / se), df))
    return {"estimate": estimate, "pvalue": p, "significant": p <= alpha}


def tipping_point(*, estimate: float, se: float, df: float, alpha: float, weights: DeltaWeights,
                  steps: int = 8) -> TippingPoint:
    """The tipping point of an arm effect (module docstring), with the conclusion on a grid of shifts up to twice it."""
    if not (se > 0 and math.isfinite(se) and df > 0):
        raise ValueError("the fit has no usable SE or df")
    if not 0 < alpha < 1:
        raise ValueError("alpha must lie strictly between 0 and 1")
    favoured = "treatment" if estimate >= 0 else "reference"
    sign = 1.0 if estimate >= 0 else -1.0
    w_f = weights.treatment if favoured == "treatment" else weights.reference
    w_o = weights.reference if favoured == "treatment" else weights.treatment
    c = float(stats.t.isf(alpha / 2, df))
    p = float(2 * stats.t.sf(abs(estimate / se), df))
    significant = p <= alpha
    target = sign * c * se           # the boundary on the estimate's side
    eps = 1e-12
    shift = (target - estimate) / w_f if abs(w_f) > eps else None
    shift_both = (target - estimate) / (w_f - w_o) if abs(w_f - w_o) > eps else None
    grid = []
    if shift is not None:
        for k in range(steps + 1):
            s = 2.0 * shift * k / steps
            grid.append({"shift": s, **_at(estimate + s * w_f, se, df, alpha)})
    return TippingPoint(estimate=float(estimate), se=float(se), df=float(df), alpha=float(alpha), weights=weights,
                        favoured=favoured, significant=significant, shift=shift, shift_both=shift_both, grid=grid)
