"""Crossed-random-intercept GLMMs by the Laplace approximation: ordinal (ordinal::clmm), binomial (glmer), preference.

Three fits on one engine (stats/methods/_laplace.py: conditional modes by penalised IRLS, the Laplace
approximation of Breslow & Clayton 1993 / Bates, Mächler, Bolker & Walker 2015 §5, its exact
gradient, and a structured factorization of the random-effects system):

- `fit_ordinal_glmm`: cumulative logit, logit P(Y ≤ j) = αⱼ − xᵀβ − Σₖ bₖ, as
  `ordinal::clmm(factor(y) ~ arm + … + (1|case) + (1|reader) + …, link = "logit")`, which uses the
  Laplace approximation whenever there is more than one random term (Christensen, "ordinal —
  Regression Models for Ordinal Data", R package; the clmm vignette). Standard errors come from the
  inverse Hessian of −log L in all parameters, as `summary(clmm)` reports them.
- `fit_binomial_glmm`: logistic GLMM, as `lme4::glmer(y ~ … + (1|g₁) + …, family = binomial,
  nAGQ = 1)`; standard errors from the inverse Hessian of the Laplace deviance in (θ, β), which is
  what `vcov(glmer)` uses when its finite-difference Hessian is available (the default).
- `fit_preference_glmm`: the expert preference of a paired-parallel trial, an intercept-only
  logistic GLMM on the decisive votes with random case, expert, treatment-arm reader and
  reference-arm reader. The fit is glmer's; its test is not (below), because the readers are the
  randomized units and there are few of them.

All three maximise the same Laplace likelihood as R does, more tightly than R's default optimisers:
against R run to convergence, estimates, standard errors and variances agree to about 1e-5; R's
defaults stop short of the optimum (glmer by up to ~1e-3 in log-likelihood when a variance is on the
boundary), which moves its numbers by 1e-5 to 1e-2 (tests/stats/test_glmm.py). The binomial fits run
from two starts (BINOMIAL_START_SDS) because with few votes per case the likelihood can have two
maxima, and one start, ours or glmer's, can stop at the lower.

Small-sample inference, all three fits. Each reports glmer's / clmm's Wald z beside its own test
(`ml_standard_error`, `pvalue_z`; JSON keys `ml_se`, `pvalue_z`), but its `standard_error`,
`pvalue` and intervals are small-sample corrected, because with readers randomized to the arms the
Wald z is too liberal. For the preference (β₀ = 0) on simulated null trials (20 readers, reader SD
0.25 on the quality scale, 296 cases, 5 experts) glmer's z rejected 7–11 % of the time at α = 0.05
(by the set of trials), and 18 % with 8 readers; the corrected test 5.4 % and 6.0 %. On 200 null
trials of stats.methods.simulation (the same design, site fixed; bench/stats_null.py) clmm's z on
the ordinal arm effect rejected 10.5 % and the corrected t 6.0 %; glmer's z on the preference
11.0 % and the corrected t 6.0 %. The reasons: (i) Var(β̂) is mostly the readers' variance, estimated from
10 + 10 readers, and (ii) ML estimates a variance component from nₖ levels as if it knew the dₖ
fixed effects estimated from those levels' means, with a downward bias of about dₖ/nₖ (Patterson &
Thompson 1971; the Laplace approximation adds its own downward bias for binary data, Breslow & Lin
1995). Both are corrected on the working linear model of the fit (Breslow & Clayton 1993, §2:
pseudo-data with residual covariance W⁻¹ at the mode), where Var(β̂ⱼ | θ) = v(θ) =
[(Xᵀ Σ(θ)⁻¹ X)⁻¹]ⱼⱼ with Σ(θ) = W⁻¹ + Σₖ θₖ² ZₖZₖᵀ and ∂v/∂θₖ = 2θₖ ‖Zₖᵀ Σ⁻¹ X m‖²,
m = (XᵀΣ⁻¹X)⁻¹ eⱼ (for the cumulative logit X is [1, arm, covariates]: the thresholds are the
location's intercept):

- the share of v due to component k, vₖ = θₖ² ∂v/∂(θₖ²), is inflated by nₖ/(nₖ − dₖ) with
  dₖ = rank(Zₖᵀ X) (the first-order REML correction: dₖ = 1 for the intercept-only preference model,
  2 + (sites − 1) for readers nested in arms and sites), and the ML standard error is scaled by
  √(1 + Σₖ vₖ dₖ/(nₖ − dₖ) / v);
- the reference distribution is t with the Satterthwaite df 2v² / (∇vᵀ Cov(θ̂) ∇v), Cov(θ̂) the
  θ-block of the inverse Hessian of −log L, components on the boundary left out (the construction of
  lmerTest: Kuznetsova, Brockhoff & Christensen 2017, J. Stat. Softw. 82(13)); with every component
  on the boundary the df is infinite and the test is the z test.

bench/stats_preference_null.py and bench/stats_null.py check the size on simulated null trials.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from scipy.special import expit

from . import _laplace
from .lmm import ConfidenceInterval, grouping_codes, single_threaded_blas

__all__ = [
    "OrdinalGLMMResult",
    "BinomialGLMMResult",
    "PreferenceGLMMResult",
    "fit_ordinal_glmm",
    "fit_binomial_glmm",
    "fit_preference_glmm",
]


def _check_level(confidence_level: float) -> None:
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must lie strictly between 0 and 1, got {confidence_level!r}")


def _z_interval(estimate: float, se: float, confidence_level: float) -> ConfidenceInterval:
    _check_level(confidence_level)
    q = float(stats.norm.ppf(0.5 + confidence_level / 2))
    return ConfidenceInterval(estimate - q * se, estimate + q * se)


def _t_interval(estimate: float, se: float, df: float, confidence_level: float) -> ConfidenceInterval:
    _check_level(confidence_level)
    if not math.isfinite(df):
        return _z_interval(estimate, se, confidence_level)
    q = float(stats.t.ppf(0.5 + confidence_level / 2, df))
    return ConfidenceInterval(estimate - q * se, estimate + q * se)


def _safe_exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class OrdinalGLMMResult:
    """Arm effect (treatment vs reference) on the cumulative-logit scale, crossed random intercepts, scipy.stats style.

    `odds_ratio` = exp(estimate) is the common odds ratio of a higher score in the treatment arm,
    conditional on the random effects (a typical case, reader, expert). The test and interval are
    small-sample corrected (module docstring): t on `df` with the corrected standard error;
    clmm's own Wald z is kept beside (`ml_standard_error`, `pvalue_z`).
    """

    estimate: float                       # β of the arm: logit P(Y ≤ j) = αⱼ − β·treatment − …
    standard_error: float                 # small-sample corrected
    statistic: float                      # estimate / standard_error
    pvalue: float                         # two-sided, t on df
    df: float                             # Satterthwaite
    ml_standard_error: float              # clmm's (inverse Hessian of −log L)
    pvalue_z: float                       # clmm's Pr(>|z|): too liberal when readers are nested in arms
    treatment: str
    reference: str
    thresholds: dict[str, float]          # "1|2", "2|3", … as ordinal names them
    thresholds_se: dict[str, float]
    fixed_effects: dict[str, float]       # arm first, then covariates
    fixed_effects_se: dict[str, float]
    variance_components: dict[str, float]  # variance of each random intercept, by grouping term
    log_likelihood: float                 # Laplace approximation, as logLik(clmm)
    n_obs: int
    n_groups: dict[str, int]
    converged: bool
    method: str = "cumulative logit mixed model, ML by the Laplace approximation (ordinal::clmm)"

    @property
    def se(self) -> float:
        return self.standard_error

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """t interval of the arm coefficient (log odds ratio): corrected standard error, Satterthwaite df."""
        return _t_interval(self.estimate, self.standard_error, self.df, confidence_level)

    @property
    def odds_ratio(self) -> float:
        return _safe_exp(self.estimate)

    def odds_ratio_confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        low, high = self.confidence_interval(confidence_level)
        return ConfidenceInterval(_safe_exp(low), _safe_exp(high))

    def to_dict(self, confidence_level: float = 0.95) -> dict[str, Any]:
        return {
            "estimate": self.estimate,
            "se": self.standard_error,
            "statistic": self.statistic,
            "pvalue": self.pvalue,
            "df": self.df,
            "ml_se": self.ml_standard_error,
            "pvalue_z": self.pvalue_z,
            "treatment": self.treatment,
            "reference": self.reference,
            "confidence_level": confidence_level,
            "confidence_interval": list(self.confidence_interval(confidence_level)),
            "odds_ratio": self.odds_ratio,
            "odds_ratio_confidence_interval": list(self.odds_ratio_confidence_interval(confidence_level)),
            "thresholds": dict(self.thresholds),
            "thresholds_se": dict(self.thresholds_se),
            "fixed_effects": dict(self.fixed_effects),
            "fixed_effects_se": dict(self.fixed_effects_se),
            "variance_components": dict(self.variance_components),
            "log_likelihood": self.log_likelihood,
            "n_obs": self.n_obs,
            "n_groups": dict(self.n_groups),
            "converged": self.converged,
            "method": self.method,
        }


@dataclass(frozen=True)
class BinomialGLMMResult:
    """One coefficient of a logistic GLMM with crossed random intercepts (Laplace, as glmer), scipy.stats style.

    `term` names the coefficient reported as `estimate`: the arm ("<arm><treatment>", the log odds
    ratio treatment vs reference) when the model has an arm, else the intercept (log odds). Its test
    and interval are small-sample corrected (module docstring): t on `df` with the corrected
    standard error; glmer's Wald z is kept beside (`ml_standard_error`, `pvalue_z`). The other
    coefficients (`fixed_effects_se`) carry glmer's standard errors.
    """

    term: str
    estimate: float
    standard_error: float                 # small-sample corrected
    statistic: float                      # estimate / standard_error
    pvalue: float                         # two-sided, t on df
    df: float                             # Satterthwaite
    ml_standard_error: float              # glmer's
    pvalue_z: float                       # glmer's Pr(>|z|)
    fixed_effects: dict[str, float]
    fixed_effects_se: dict[str, float]
    variance_components: dict[str, float]  # θₖ² by grouping term, as VarCorr(glmer)
    log_likelihood: float                 # Laplace approximation, as logLik(glmer)
    n_obs: int
    n_groups: dict[str, int]
    converged: bool
    treatment: str | None = None
    reference: str | None = None
    method: str = "logistic mixed model, ML by the Laplace approximation (lme4::glmer, nAGQ = 1)"

    @property
    def se(self) -> float:
        return self.standard_error

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """t interval of `term` on the log-odds scale (corrected standard error, Satterthwaite df)."""
        return _t_interval(self.estimate, self.standard_error, self.df, confidence_level)

    @property
    def odds_ratio(self) -> float:
        """exp(estimate): the odds ratio of the arm, or the odds for an intercept."""
        return _safe_exp(self.estimate)

    def odds_ratio_confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        low, high = self.confidence_interval(confidence_level)
        return ConfidenceInterval(_safe_exp(low), _safe_exp(high))

    @property
    def deviance(self) -> float:
        """−2 log L (the Laplace deviance glmer minimises)."""
        return -2.0 * self.log_likelihood

    def to_dict(self, confidence_level: float = 0.95) -> dict[str, Any]:
        return {
            "term": self.term,
            "estimate": self.estimate,
            "se": self.standard_error,
            "statistic": self.statistic,
            "pvalue": self.pvalue,
            "df": self.df,
            "ml_se": self.ml_standard_error,
            "pvalue_z": self.pvalue_z,
            "confidence_level": confidence_level,
            "confidence_interval": list(self.confidence_interval(confidence_level)),
            "odds_ratio": self.odds_ratio,
            "odds_ratio_confidence_interval": list(self.odds_ratio_confidence_interval(confidence_level)),
            "fixed_effects": dict(self.fixed_effects),
            "fixed_effects_se": dict(self.fixed_effects_se),
            "variance_components": dict(self.variance_components),
            "log_likelihood": self.log_likelihood,
            "n_obs": self.n_obs,
            "n_groups": dict(self.n_groups),
            "converged": self.converged,
            "treatment": self.treatment,
            "reference": self.reference,
            "method": self.method,
        }


# A random-intercept SD above this on the log-odds scale (one SD multiplies the odds by e**10 ≈ 22 000) says the votes
# are all but decided by that term's level: with few experts per case, typically, the votes of most cases agree. The
# fit is still glmer's (a finite optimum, to the digits R gives), but its estimand, the probability for a typical
# case, then sits near 0 or 1 whatever the share of the votes, and its interval spans nearly all of (0, 1). On the
# 2-site reproduction fixture (24 cases, 3 experts; bench/reproduce_sweep.py) 31 fits of 80 had a case SD above 10
# (11 to 74) and a typical case's probability above 0.9995 or below 0.0004 for shares of 18 to 79 % of the votes;
# the others had SDs up to 9.2. The analysis says so
# in a note and points to the case majorities; it does not change the fit.
DECIDING_SD = 10.0


@dataclass(frozen=True)
class PreferenceGLMMResult:
    """P(an expert prefers the treatment report) for a typical case, expert and pair of readers; ties left out.

    The estimand is expit(β₀) of the logistic GLMM on the decisive votes with random case, expert,
    treatment-arm reader and reference-arm reader: the probability that an expert who prefers one
    of the two reports prefers the treatment report. It is a conditional (subject-specific)
    probability, not the share of votes: with large random effects the two differ, though both
    are ½ under the null. The interval and the test speak of the same quantity: the t interval
    of β₀ (Satterthwaite df, corrected standard error) through expit, and the t test of β₀ = 0
    (⇔ probability ½). `n_ties` votes preferred neither report and were left out.
    """

    estimate: float                       # expit(log_odds)
    log_odds: float                       # β₀ (ML, Laplace: glmer's estimate)
    standard_error: float                 # of β₀, small-sample corrected (module docstring)
    statistic: float                      # β₀ / standard_error
    df: float                             # Satterthwaite
    pvalue: float                         # two-sided, t on df, H₀: β₀ = 0
    ml_standard_error: float              # glmer's standard error of β₀ (inverse Hessian of the deviance)
    pvalue_z: float                       # β₀ / ml_standard_error on N(0, 1): glmer's Pr(>|z|), too liberal
    n_votes: int                          # decisive votes modelled
    n_treatment: int                      # votes for the treatment report
    n_reference: int                      # votes for the reference report
    n_ties: int                           # votes for neither report: left out of the model
    variance_components: dict[str, float]  # on the logit scale, keyed by the role (case, expert, …)
    log_likelihood: float
    n_groups: dict[str, int]
    converged: bool
    treatment: str
    reference: str
    method: str = ("intercept-only logistic GLMM on decisive votes, random case, expert and both readers "
                   "(Laplace, as glmer); t test, small-sample corrected SE and Satterthwaite df")

    @property
    def se(self) -> float:
        return self.standard_error

    @property
    def deciding_terms(self) -> list[str]:
        """The random terms whose SD is above DECIDING_SD: the votes are all but decided by their levels, and a
        typical case's probability is near 0 or 1 whatever the share of the votes (DECIDING_SD). Usually empty."""
        return [t for t, v in self.variance_components.items() if math.sqrt(v) > DECIDING_SD]

    def log_odds_confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        _check_level(confidence_level)
        q = float(stats.t.ppf(0.5 + confidence_level / 2, self.df))
        return ConfidenceInterval(self.log_odds - q * self.standard_error, self.log_odds + q * self.standard_error)

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Interval of the probability: the t interval of β₀ through expit."""
        low, high = self.log_odds_confidence_interval(confidence_level)
        return ConfidenceInterval(float(expit(low)), float(expit(high)))

    def to_dict(self, confidence_level: float = 0.95) -> dict[str, Any]:
        return {
            "estimate": self.estimate,
            "log_odds": self.log_odds,
            "se": self.standard_error,
            "statistic": self.statistic,
            "df": self.df,
            "pvalue": self.pvalue,
            "ml_se": self.ml_standard_error,
            "pvalue_z": self.pvalue_z,
            "confidence_level": confidence_level,
            "confidence_interval": list(self.confidence_interval(confidence_level)),
            "log_odds_confidence_interval": list(self.log_odds_confidence_interval(confidence_level)),
            "n_votes": self.n_votes,
            "n_treatment": self.n_treatment,
            "n_reference": self.n_reference,
            "n_ties": self.n_ties,
            "variance_components": dict(self.variance_components),
            "deciding_terms": self.deciding_terms,
            "log_likelihood": self.log_likelihood,
            "n_groups": dict(self.n_groups),
            "converged": self.converged,
            "treatment": self.treatment,
            "reference": self.reference,
            "method": self.method,
        }


# --------------------------------------------------------------------------------------------
# Data


def _column(data: Mapping[str, Any], name: str, n: int | None = None) -> np.ndarray:
    try:
        col = data[name]
    except (KeyError, IndexError):
        raise ValueError(f"no column {name!r} in the data") from None
    values = np.asarray(col)
    if values.ndim != 1:
        raise ValueError(f"column {name!r} must be one-dimensional")
    if n is not None and values.shape != (n,):
        raise ValueError(f"column {name!r} has {values.size} values, expected {n}")
    return values


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)       # NaN, NaT; pandas' NA raises in bool()
    except TypeError:
        return True


def _require_complete(data: Mapping[str, Any], names: Sequence[str], n: int) -> None:
    """A clear refusal for a missing value in any column the model uses (R would drop the row silently)."""
    for name in dict.fromkeys(names):
        values = _column(data, name, n)
        kind = values.dtype.kind
        if kind == "f":
            bad = ~np.isfinite(values)
        elif kind in "mM":
            bad = np.isnat(values)
        elif kind == "O":
            bad = np.fromiter((_is_missing(v) for v in values), dtype=bool, count=n)
        else:
            continue
        if bad.any():
            raise ValueError(f"column {name!r} has {int(bad.sum())} missing value(s) (first at row "
                             f"{int(np.flatnonzero(bad)[0])}); remove or impute them before the fit")


def _terms_columns(term: str) -> list[str]:
    parts = [p.strip() for p in term.split(":")]
    if not all(parts):
        raise ValueError(f"bad grouping term {term!r}")
    return parts


def _design(data: Mapping[str, Any], *, n: int, arm: str | None, treatment: str | None,
            reference: str | None, covariates: Sequence[str], intercept: bool) -> tuple[np.ndarray, list[str]]:
    """Fixed effects coded as R's model.matrix does: [intercept,] arm indicator (1 = treatment), covariates.

    A numeric covariate enters as is; a text or boolean covariate as treatment-coded dummies
    with its first sorted level as the baseline, named "<column><level>".
    """
    cols = [np.ones(n)] if intercept else []
    names = ["(Intercept)"] if intercept else []
    if arm is not None:
        if treatment is None or reference is None:
            raise ValueError("name both arms: treatment=… and reference=…")
        if treatment == reference:
            raise ValueError("treatment and reference must be different arms")
        values = _column(data, arm, n).astype(str)
        found = set(np.unique(values).tolist())
        if found != {treatment, reference}:
            raise ValueError(f"column {arm!r} must hold exactly the two arms {reference!r} and {treatment!r}, "
                             f"found {sorted(found)}")
        cols.append((values == treatment).astype(float))
        names.append(f"{arm}{treatment}")
    for cov in covariates:
        values = _column(data, cov, n)
        if values.dtype.kind in "iuf":
            cols.append(values.astype(float))
            names.append(cov)
        else:
            values = values.astype(str)
            levels = np.unique(values)
            if levels.size < 2:
                raise ValueError(f"covariate {cov!r} has a single level ({levels[0]!r}): it cannot be estimated")
            for level in levels[1:]:
                cols.append((values == level).astype(float))
                names.append(f"{cov}{level}")
    X = np.column_stack(cols) if cols else np.zeros((n, 0))
    if X.shape[1] and np.linalg.matrix_rank(X) < X.shape[1]:
        raise ValueError(f"the fixed-effects design ({', '.join(names)}) is rank deficient")
    return X, names


def _random_factors(data: Mapping[str, Any], random: Sequence[str] | str,
                    n: int) -> tuple[list[str], list[tuple[np.ndarray, int]]]:
    if isinstance(random, str):
        random = [random]
    random = list(random)
    if not random:
        raise ValueError("at least one random-intercept grouping term is needed")
    if len(set(random)) != len(random):
        raise ValueError(f"repeated grouping terms in {random}")
    factors = []
    for term in random:
        codes, m = grouping_codes(data, term, n)
        if m < 2:
            raise ValueError(f"grouping term {term!r} has a single level: its variance cannot be estimated")
        if m >= n:
            raise ValueError(f"grouping term {term!r} has {m} levels for {n} observations: not identifiable")
        factors.append((codes, m))
    return random, factors


# --------------------------------------------------------------------------------------------
# Fitting


@dataclass
class _Fit:
    psi: np.ndarray                  # (φ, θ) with θ ≥ 0
    value: float                     # −log L (Laplace)
    cov: np.ndarray                  # inverse Hessian of −log L in (φ, θ); NaN rows for θ on the boundary
    converged: bool


def _optimise(model: _laplace.LaplaceModel, start: np.ndarray, *, to_free=None, from_free=None,
              jacobian=None) -> _Fit:
    """Maximise the Laplace likelihood; then the Hessian (central differences of the exact gradient)
    in the natural parameters, one Newton step from it to polish the optimum, and its inverse."""
    n_fixed = model.family.n_fixed

    def fg_natural(psi: np.ndarray):
        return model.evaluate(psi, gradient=True)

    if to_free is None:
        fg = fg_natural
        x0 = start
    else:
        def fg(x: np.ndarray):
            v, g = fg_natural(from_free(x))
            return v, (None if g is None else jacobian(x).T @ g)
        x0 = to_free(start)
    x, _, converged = _laplace.minimize(fg, x0)
    psi = x if from_free is None else from_free(x)
    # f is even in each θₖ (θₖ → −θₖ flips the sign of uₖ only): report θ ≥ 0, and exactly 0 at the
    # boundary when that is no worse, as lme4 does.
    psi[n_fixed:] = np.abs(psi[n_fixed:])
    value = model.evaluate(psi)
    tiny = np.flatnonzero(psi[n_fixed:] < 1e-4)
    for k in tiny:
        trial = psi.copy()
        trial[n_fixed + k] = 0.0
        tv = model.evaluate(trial)
        if tv <= value + 1e-9:
            psi, value = trial, tv
    free = np.r_[np.ones(n_fixed, dtype=bool), psi[n_fixed:] > 0]

    def grad_sub(z: np.ndarray):
        full = psi.copy()
        full[free] = z
        g = model.evaluate(full, gradient=True)[1]
        return None if g is None else g[free]

    H = _laplace.hessian_from_gradient(grad_sub, psi[free])
    cov = np.full((psi.size, psi.size), np.nan)
    ok = bool(np.all(np.isfinite(H)))
    if ok:
        evals = np.linalg.eigvalsh(H)
        ok = bool(evals[0] > 1e-10 * max(1.0, evals[-1]))
    if ok:
        # polish: one Newton step on the free parameters (the BFGS optimum is already tight; this
        # makes the reported digits independent of where it stopped)
        g = grad_sub(psi[free])
        if g is not None:
            step = -np.linalg.solve(H, g)
            trial = psi.copy()
            trial[free] = psi[free] + step
            if np.all(trial[n_fixed:][free[n_fixed:]] > 0) and model.family.valid(trial[:n_fixed]):
                tv = model.evaluate(trial)
                if tv <= value:
                    psi, value = trial, tv
        inv = np.linalg.inv(H)
        cov[np.ix_(free, free)] = (inv + inv.T) / 2.0
    return _Fit(psi=psi, value=float(value), cov=cov, converged=bool(converged and ok))


def _build_model(family, factors: list[tuple[np.ndarray, int]]) -> _laplace.LaplaceModel:
    re = _laplace.CrossedIntercepts([c for c, _ in factors], [m for _, m in factors])
    return _laplace.LaplaceModel(family, re)


def fit_ordinal_glmm(
    data: Mapping[str, Any],
    *,
    outcome: str,
    random: Sequence[str],
    treatment: str,
    reference: str,
    arm: str = "arm",
    covariates: Sequence[str] = (),
    levels: Sequence[Any] | None = None,
) -> OrdinalGLMMResult:
    """ML fit of `outcome ~ arm + covariates + (1|g₁) + (1|g₂) + …`, cumulative logit, Laplace approximation.

    Equals `ordinal::clmm(factor(outcome, ordered = TRUE) ~ arm + … + (1|g₁) + …, link = "logit")`
    (the Laplace approximation is clmm's default, and its only method with several random terms).
    `data` maps column names to equal-length 1-D arrays (a dict of arrays or a pandas DataFrame).
    `random` lists grouping terms: a column ("case", "reader", "expert") or an interaction of
    columns ("case:arm", the report). `outcome` holds ordinal scores (e.g. Likert 1–5) in the order
    `levels` if given, else their sorted order; categories nobody used are dropped, as factor() does.
    """
    raw = _column(data, outcome)
    n = raw.size
    random_terms = [random] if isinstance(random, str) else list(random)
    used = [outcome, arm, *covariates, *(c for t in random_terms for c in _terms_columns(t))]
    _require_complete(data, used, n)
    if levels is None:
        cats = np.unique(raw)
    else:
        cats = np.asarray(list(levels))
        if len(set(cats.tolist())) != cats.size:
            raise ValueError("`levels` has repeated values")
        unknown = set(np.unique(raw).tolist()) - set(cats.tolist())
        if unknown:
            raise ValueError(f"outcome {outcome!r} has values outside `levels`: {sorted(map(str, unknown))}")
        cats = np.array([c for c in cats if np.any(raw == c)])
    if cats.size < 2:
        raise ValueError(f"outcome {outcome!r} needs at least two observed categories")
    lookup = {c: i for i, c in enumerate(cats.tolist())}
    y = np.array([lookup[v] for v in raw.tolist()], dtype=np.int64)
    X, names = _design(data, n=n, arm=arm, treatment=treatment, reference=reference,
                       covariates=covariates, intercept=False)
    random_terms, factors = _random_factors(data, random_terms, n)

    J = cats.size
    k = J - 1
    family = _laplace.CumulativeLogit(y, J, X)
    model = _build_model(family, factors)
    # Start: marginal cumulative logits, no covariate effect, every random SD ½.
    cum = np.cumsum(np.bincount(y, minlength=J))[:-1] / n
    start = np.r_[np.log(cum / (1.0 - cum)), np.zeros(X.shape[1]), np.full(len(factors), 0.5)]

    def to_free(par: np.ndarray) -> np.ndarray:
        # ordered thresholds without constraints: (α₁, log(α₂ − α₁), …)
        return np.r_[par[0], np.log(np.diff(par[:k])), par[k:]]

    def from_free(x: np.ndarray) -> np.ndarray:
        return np.r_[x[0] + np.r_[0.0, np.cumsum(np.exp(x[1:k]))], x[k:]]

    def jacobian(x: np.ndarray) -> np.ndarray:
        Jm = np.eye(x.size)
        Jm[:k, 0] = 1.0
        gaps = np.exp(x[1:k])
        for i in range(1, k):
            Jm[i:k, i] = gaps[i - 1]
        return Jm

    with single_threaded_blas():
        fit = _optimise(model, start, to_free=to_free, from_free=from_free, jacobian=jacobian)
    se_all = np.sqrt(np.diag(fit.cov))
    alpha, beta, theta = fit.psi[:k], fit.psi[k:k + X.shape[1]], fit.psi[k + X.shape[1]:]
    labels = [str(c) for c in cats.tolist()]
    th_names = [f"{labels[i]}|{labels[i + 1]}" for i in range(k)]
    est, ml_se = float(beta[0]), float(se_all[k])
    with single_threaded_blas():
        # the thresholds are the location's intercept in the working linear model
        ratio, df, _ = _small_sample_inference(model, fit, 1, np.column_stack([np.ones(n), X]))
    se = ml_se * math.sqrt(ratio)
    tstat = est / se
    return OrdinalGLMMResult(
        estimate=est,
        standard_error=se,
        statistic=float(tstat),
        pvalue=_t_pvalue(tstat, df),
        df=float(df),
        ml_standard_error=ml_se,
        pvalue_z=float(2.0 * stats.norm.sf(abs(est / ml_se))),
        treatment=treatment,
        reference=reference,
        thresholds={nm: float(a) for nm, a in zip(th_names, alpha)},
        thresholds_se={nm: float(s) for nm, s in zip(th_names, se_all[:k])},
        fixed_effects={nm: float(b) for nm, b in zip(names, beta)},
        fixed_effects_se={nm: float(s) for nm, s in zip(names, se_all[k:k + len(names)])},
        variance_components={t: float(s * s) for t, s in zip(random_terms, theta)},
        log_likelihood=-fit.value,
        n_obs=int(n),
        n_groups={t: int(m) for t, (_, m) in zip(random_terms, factors)},
        converged=fit.converged and bool(np.isfinite(se)) and not math.isnan(df),
    )


def _t_pvalue(statistic: float, df: float) -> float:
    if not (math.isfinite(statistic) and df > 0):
        return math.nan
    if math.isinf(df):
        return float(2.0 * stats.norm.sf(abs(statistic)))
    return float(2.0 * stats.t.sf(abs(statistic), df))


def _binary_outcome(raw: np.ndarray, name: str) -> np.ndarray:
    if raw.dtype.kind == "b":
        return raw.astype(float)
    if raw.dtype.kind not in "iuf":
        raise ValueError(f"outcome {name!r} must be 0/1 (numeric or boolean), got values of type {raw.dtype}")
    bad = ~np.isin(raw, (0, 1))
    if bad.any():
        raise ValueError(f"outcome {name!r} must be 0 or 1; found {sorted(set(raw[bad].tolist()))[:5]}")
    return raw.astype(float)


# The random SDs the binomial fits start from (log-odds scale). With few binary responses per level (three expert
# votes on a case) the Laplace likelihood can have two maxima: one with moderate SDs and one far out, where the votes
# are all but decided by the case (DECIDING_SD). On three simulated 24-case, 3-expert trials a start at ½ stopped at
# the first where the second was higher (e.g. β₀ 3.04, case SD 3.4, log-likelihood −30.176 against β₀ 10.19, case SD
# 14.2, −29.358); starts at 8, 12 and 20 reached the second on all three, 5 on two. Both starts are run and the
# higher likelihood kept (the first wins a tie, so a fit with one maximum is what it was); a fit of the paper's size
# (296 cases, 5 experts) takes 0.4–0.6 s instead of 0.05 s.
BINOMIAL_START_SDS = (0.5, 12.0)


def _fit_binomial(y: np.ndarray, X: np.ndarray, factors: list[tuple[np.ndarray, int]]):
    """(model, fit) of the best of the starts BINOMIAL_START_SDS: the intercept at the marginal log odds (other
    coefficients 0), every random SD at the start's value."""
    beta0 = np.zeros(X.shape[1])
    if X.shape[1] and np.allclose(X[:, 0], 1.0):
        m = float(np.clip(y.mean(), 0.01, 0.99))
        beta0[0] = math.log(m / (1.0 - m))
    best = None
    for sd in BINOMIAL_START_SDS:
        model = _build_model(_laplace.BernoulliLogit(y, X), factors)
        with single_threaded_blas():
            fit = _optimise(model, np.r_[beta0, np.full(len(factors), sd)])
        if best is None or fit.value < best[1].value - 1e-9:
            best = (model, fit)
    model, fit = best
    model.evaluate(fit.psi)        # the model's warm start at the fit kept (the small-sample inference starts there)
    return model, fit


def fit_binomial_glmm(
    data: Mapping[str, Any],
    *,
    outcome: str,
    random: Sequence[str],
    arm: str | None,
    treatment: str | None,
    reference: str | None,
    covariates: Sequence[str] = (),
) -> BinomialGLMMResult:
    """ML (Laplace) fit of `outcome ~ 1 + arm + covariates + (1|g₁) + (1|g₂) + …`, binomial logit.

    Equals `lme4::glmer(outcome ~ arm + … + (1|g₁) + …, family = binomial, nAGQ = 1)`. `outcome` is
    0/1. With an `arm` column (and both arm names) the reported coefficient is the arm's log odds
    ratio, treatment vs reference; with `arm=None` (and treatment=reference=None) the model has
    the intercept and covariates only and the intercept is reported. A text covariate (e.g. the
    finding) is coded as R codes a factor (first sorted level the baseline).
    """
    raw = _column(data, outcome)
    n = raw.size
    random_terms = [random] if isinstance(random, str) else list(random)
    used = [outcome, *([arm] if arm is not None else []), *covariates,
            *(c for t in random_terms for c in _terms_columns(t))]
    _require_complete(data, used, n)
    if arm is None and (treatment is not None or reference is not None):
        raise ValueError("treatment/reference name the levels of `arm`: give arm=… too, or leave all three None")
    y = _binary_outcome(raw, outcome)
    if y.min() == y.max():
        raise ValueError(f"outcome {outcome!r} is {int(y[0])} in every row: nothing to model")
    X, names = _design(data, n=n, arm=arm, treatment=treatment, reference=reference,
                       covariates=covariates, intercept=True)
    random_terms, factors = _random_factors(data, random_terms, n)
    model, fit = _fit_binomial(y, X, factors)
    p = X.shape[1]
    se_all = np.sqrt(np.diag(fit.cov))[:p]
    j = 1 if arm is not None else 0
    est, ml_se = float(fit.psi[j]), float(se_all[j])
    with single_threaded_blas():
        ratio, df, _ = _small_sample_inference(model, fit, j)
    se = ml_se * math.sqrt(ratio)
    tstat = est / se
    return BinomialGLMMResult(
        term=names[j],
        estimate=est,
        standard_error=se,
        statistic=float(tstat),
        pvalue=_t_pvalue(tstat, df),
        df=float(df),
        ml_standard_error=ml_se,
        pvalue_z=float(2.0 * stats.norm.sf(abs(est / ml_se))),
        fixed_effects={nm: float(b) for nm, b in zip(names, fit.psi[:p])},
        fixed_effects_se={nm: float(s) for nm, s in zip(names, se_all)},
        variance_components={t: float(s * s) for t, s in zip(random_terms, fit.psi[p:])},
        log_likelihood=-fit.value,
        n_obs=int(n),
        n_groups={t: int(m) for t, (_, m) in zip(random_terms, factors)},
        converged=fit.converged and bool(np.isfinite(se)) and not math.isnan(df),
        treatment=treatment,
        reference=reference,
    )


def _level_rank(codes: np.ndarray, nlev: int, X: np.ndarray) -> int:
    """rank(Zₖᵀ X): how many fixed effects are estimated from the level means of factor k."""
    sums = np.column_stack([np.bincount(codes, weights=X[:, c], minlength=nlev) for c in range(X.shape[1])])
    return int(np.linalg.matrix_rank(sums))


def _small_sample_inference(model: _laplace.LaplaceModel, fit: _Fit, j: int,
                            X_work: np.ndarray | None = None) -> tuple[float, float, float]:
    """(variance ratio, df, v) for the coefficient in column j of the working design `X_work`: the
    REML-type inflation of Var(β̂ⱼ) and its Satterthwaite df, both on the working linear model at
    the mode (see the module docstring). `X_work` defaults to the family's design; for the
    cumulative logit it is [1, X] (the thresholds act as the intercept of the location)."""
    fam, re = model.family, model.re
    X = fam.X if X_work is None else X_work
    p = X.shape[1]
    nf = fam.n_fixed
    phi, theta = fit.psi[:nf], fit.psi[nf:]
    found = model.modes(phi, theta)
    if found is None:
        return math.nan, math.nan, math.nan
    _, t, fac, _ = found
    w = -t["l2"]
    # Σ⁻¹ X = W X − W A H⁻¹ Aᵀ W X  (Woodbury; H = I + AᵀWA is the factorization at the mode)
    WX = w[:, None] * X
    SX = np.empty_like(X)
    for c in range(p):
        s = fac.solve(model._at_times(theta, WX[:, c]))
        SX[:, c] = WX[:, c] - w * model._a_times(theta, s)
    m = np.linalg.solve(X.T @ SX, np.eye(p)[:, j])
    v = float(m[j])
    r = SX @ m
    # ∂v/∂θₖ = 2θₖ ‖Zₖᵀ Σ⁻¹ X m‖²
    grad = np.array([2.0 * theta[k] * float(np.sum(np.bincount(re.idx[:, k], weights=r, minlength=re.q) ** 2))
                     for k in range(model.K)])
    # Vₖ = θₖ² ∂v/∂(θₖ²): the share of v due to component k. ML estimates it from nₖ levels as if it
    # knew the dₖ = rank(Zₖᵀ X) fixed effects estimated from those levels' means (1 for an
    # intercept-only model; 2 + sites − 1 for readers nested in arms and sites), so it is biased
    # down by (nₖ − dₖ)/nₖ (Patterson & Thompson 1971) and inflated back by nₖ/(nₖ − dₖ).
    share = 0.5 * theta * grad
    nlev = np.array(re.nlev, dtype=float)
    codes = [re.idx[:, k] - re.factor_start[k] for k in range(model.K)]
    d = np.array([_level_rank(codes[k], re.nlev[k], X) for k in range(model.K)], dtype=float)
    spare = np.maximum(nlev - d, 1.0)
    ratio = 1.0 + float(np.sum(share * d / spare)) / v
    free = theta > 0
    C = fit.cov[nf:, nf:][np.ix_(free, free)]
    if not np.all(np.isfinite(C)):
        return ratio, math.nan, v
    denom = float(grad[free] @ C @ grad[free])
    df = 2.0 * v * v / denom if denom > 0 else math.inf
    return ratio, df, v


def fit_preference_glmm(
    data: Mapping[str, Any],
    *,
    treatment: str,
    reference: str,
    outcome: str = "preferred",
    case: str = "case",
    expert: str = "expert",
    treatment_reader: str = "treatment_reader",
    reference_reader: str = "reference_reader",
    tie: str | Sequence[str] = "none",
) -> PreferenceGLMMResult:
    """Expert preference between the treatment-arm and the reference-arm report of each case.

    One row per vote: `case`, `expert`, the reader who wrote the case's treatment-arm report
    (`treatment_reader`) and the one who wrote its reference-arm report (`reference_reader`), and
    `outcome`, the arm whose report the expert preferred (`treatment` or `reference`) or a tie
    label (`tie`, e.g. "none"). Ties are left out of the model and counted in `n_ties`.

    Model: logit P(vote = treatment) = β₀ + b_case + b_expert + b_treatment_reader +
    b_reference_reader (independent random intercepts; the two reader roles are separate factors),
    fitted as `glmer(vote ~ 1 + (1|case) + (1|expert) + (1|treatment_reader) + (1|reference_reader),
    family = binomial)`. The estimate is expit(β₀); the test of β₀ = 0 uses a t distribution with a
    Satterthwaite df and a small-sample corrected standard error (module docstring), because with
    readers randomized to arms glmer's vote-level z test is too liberal when there are few readers.
    """
    if treatment == reference:
        raise ValueError("treatment and reference must be different arms")
    ties = [tie] if isinstance(tie, str) else list(tie)
    if treatment in ties or reference in ties:
        raise ValueError("a tie label cannot also name an arm")
    raw = _column(data, outcome)
    n_all = raw.size
    roles = {"case": case, "expert": expert, "treatment_reader": treatment_reader,
             "reference_reader": reference_reader}
    _require_complete(data, [outcome, *roles.values()], n_all)
    votes = raw.astype(str)
    allowed = {treatment, reference, *ties}
    bad = sorted(set(votes.tolist()) - allowed)
    if bad:
        raise ValueError(f"outcome {outcome!r} must be {treatment!r}, {reference!r} or a tie "
                         f"({', '.join(map(repr, ties))}); found {bad[:5]}")
    decisive = votes != ties[0] if len(ties) == 1 else ~np.isin(votes, ties)
    n_ties = int(n_all - decisive.sum())
    y = (votes[decisive] == treatment).astype(float)
    n = y.size
    if n == 0:
        raise ValueError("every vote is a tie: there is no preference to model")
    sub = {role: _column(data, col, n_all)[decisive] for role, col in roles.items()}
    if y.min() == y.max():
        raise ValueError(f"every decisive vote prefers the {'treatment' if y[0] else 'reference'} report: "
                         "the log odds is not finite")
    terms = list(roles)
    if np.array_equal(sub["treatment_reader"].astype(str), sub["reference_reader"].astype(str)):
        # crossover: both reports of a pair are one reader's, so the two reader roles are one factor
        sub["reader"] = sub.pop("treatment_reader")
        del sub["reference_reader"]
        terms = ["case", "expert", "reader"]
    random_terms, factors = _random_factors(sub, terms, n)
    X = np.ones((n, 1))
    model, fit = _fit_binomial(y, X, factors)
    beta0 = float(fit.psi[0])
    ml_se = float(math.sqrt(fit.cov[0, 0])) if np.isfinite(fit.cov[0, 0]) else math.nan
    with single_threaded_blas():
        ratio, df, _ = _small_sample_inference(model, fit, 0)
    se = ml_se * math.sqrt(ratio)
    stat = beta0 / se
    return PreferenceGLMMResult(
        estimate=float(expit(beta0)),
        log_odds=beta0,
        standard_error=se,
        statistic=float(stat),
        df=float(df),
        pvalue=float(2.0 * stats.t.sf(abs(stat), df)),
        ml_standard_error=ml_se,
        pvalue_z=float(2.0 * stats.norm.sf(abs(beta0 / ml_se))),
        n_votes=int(n),
        n_treatment=int(y.sum()),
        n_reference=int(n - y.sum()),
        n_ties=n_ties,
        variance_components={t: float(s * s) for t, s in zip(random_terms, fit.psi[1:])},
        log_likelihood=-fit.value,
        n_groups={t: int(m) for t, (_, m) in zip(random_terms, factors)},
        converged=fit.converged and bool(np.isfinite(se)) and bool(np.isfinite(df)),
        treatment=treatment,
        reference=reference,
    )
