"""Cumulative-logit mixed model for ordinal scores (Likert 1–5), one random case intercept, by adaptive quadrature.

With readers randomized to the arms this model treats them as fixed: it is the plan's "clmm" test, a
fixed-reader sensitivity kept for schema-1 plans. The default ordinal analysis has crossed case,
report, reader and expert intercepts and a small-sample corrected test (stats.methods.glmm).

Model (the parameterisation of R's `ordinal::clmm`: R. H. B. Christensen, "ordinal — Regression
Models for Ordinal Data", R package, and its vignette "Cumulative Link Models for Ordinal
Regression with the R Package ordinal", 2018):

    logit P(Y ≤ j | u) = θⱼ − xᵀβ − σ u,   u ~ N(0, 1) per level of the grouping factor (case),

so β > 0 moves scores up. The marginal likelihood of a case, ∫ Πⱼ P(yⱼ | u) φ(u) du, is computed
by adaptive Gauss–Hermite quadrature (Liu & Pierce 1994; Pinheiro & Bates 1995): the nodes are
centred at the mode û of the case's integrand and scaled by its curvature, as `clmm(…, nAGQ = n)`
with n > 1 does. Parameters are estimated by maximum likelihood over (θ, β, log σ), by
quasi-Newton steps on the exact gradient of the quadrature approximation (the nodes move with the
parameters through û and the curvature; that is included), and standard errors come from the
inverse Hessian of −log L (central differences of that gradient), as `summary(clmm)` reports them.
The implementation is ours, from these equations (ordinal is GPL; none of its code is used).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.polynomial.hermite import hermgauss
from scipy import stats

from .lmm import ConfidenceInterval, _check_level, _column, design_columns, grouping_codes

__all__ = ["CLMMResult", "fit_clmm"]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True)
class CLMMResult:
    """Arm effect (treatment vs reference) on the cumulative-logit scale, scipy.stats style.

    `odds_ratio` = exp(estimate) is the common odds ratio of a higher score in the treatment arm.
    """

    estimate: float                     # β of the arm: logit P(Y ≤ j) = θⱼ − β·treatment − …
    se: float
    statistic: float                    # Wald z
    pvalue: float                       # two-sided, normal
    thresholds: dict[str, float]        # "1|2", "2|3", … as ordinal names them
    thresholds_se: dict[str, float]
    fixed_effects: dict[str, float]     # arm first, then covariates
    fixed_effects_se: dict[str, float]
    random_sd: float                    # SD of the random intercept of `group`
    log_likelihood: float
    n_obs: int
    n_groups: int
    group: str
    n_agq: int
    converged: bool
    method: str = "cumulative logit mixed model, ML by adaptive Gauss-Hermite quadrature"

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Wald interval of the arm coefficient."""
        _check_level(confidence_level)
        q = float(stats.norm.ppf(0.5 + confidence_level / 2))
        return ConfidenceInterval(self.estimate - q * self.se, self.estimate + q * self.se)

    @property
    def odds_ratio(self) -> float:
        return math.exp(self.estimate)

    def odds_ratio_confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        low, high = self.confidence_interval(confidence_level)
        return ConfidenceInterval(math.exp(low), math.exp(high))

    def to_dict(self, confidence_level: float = 0.95) -> dict[str, Any]:
        return {
            "estimate": self.estimate,
            "se": self.se,
            "statistic": self.statistic,
            "pvalue": self.pvalue,
            "confidence_level": confidence_level,
            "confidence_interval": list(self.confidence_interval(confidence_level)),
            "odds_ratio": self.odds_ratio,
            "odds_ratio_confidence_interval": list(self.odds_ratio_confidence_interval(confidence_level)),
            "thresholds": dict(self.thresholds),
            "thresholds_se": dict(self.thresholds_se),
            "fixed_effects": dict(self.fixed_effects),
            "fixed_effects_se": dict(self.fixed_effects_se),
            "random_sd": self.random_sd,
            "log_likelihood": self.log_likelihood,
            "n_obs": self.n_obs,
            "n_groups": self.n_groups,
            "group": self.group,
            "n_agq": self.n_agq,
            "converged": self.converged,
            "method": self.method,
        }


class _Terms:
    """log P(y | offset) and its derivatives in the offset o, for logit P(Y ≤ j) = θⱼ − o."""

    def __init__(self, hi: np.ndarray, lo: np.ndarray, o: np.ndarray):
        # hi = θ_y − o and lo = θ_{y−1} − o (±∞ at the ends). With F the logistic CDF,
        # P = F(hi) − F(lo) = F(hi) F(−lo) (1 − e^{lo − hi}), stable in both tails.
        a = hi - o
        b = lo - o
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            # one exp and one log1p per bound: F(±x) and log F(±x) from t = e^(−|x|)
            ta, tb = np.exp(-np.abs(a)), np.exp(-np.abs(b))
            ia, ib = 1.0 / (1.0 + ta), 1.0 / (1.0 + tb)
            la, lb = np.log1p(ta), np.log1p(tb)
            pos_a, pos_b = a >= 0, b >= 0
            fa = np.where(pos_a, ia, ta * ia)           # F(hi)
            fna = np.where(pos_a, ta * ia, ia)          # F(−hi)
            fb = np.where(pos_b, ib, tb * ib)           # F(lo)
            fnb = np.where(pos_b, tb * ib, ib)          # F(−lo)
            log_fa = np.where(pos_a, -la, a - la)
            log_fnb = np.where(pos_b, -b - lb, -lb)
            d = -np.expm1(b - a)
            self.logp = log_fa + log_fnb + np.log(d)
            # f(hi)/P and f(lo)/P, f the logistic density
            self.ra = fna / (fnb * d)
            self.rb = fb / (fa * d)
        self.fa, self.fb = fa, fb
        self.s1 = self.ra - self.rb                                   # −∂ log P / ∂o
        self.s2 = self.ra * (1.0 - 2.0 * fa) - self.rb * (1.0 - 2.0 * fb)  # P''/P in o

    def third(self) -> dict[str, np.ndarray]:
        """Derivatives of L = log P needed for the exact AGQ gradient (o the offset, hi/lo the
        two thresholds of the observed category): L_oo, L_ooo, ∂L_o/∂hi, ∂L_o/∂lo, ∂L_oo/∂hi, ∂L_oo/∂lo."""
        ra, rb, s1, s2, fa, fb = self.ra, self.rb, self.s1, self.s2, self.fa, self.fb
        qa = 1.0 - 6.0 * fa + 6.0 * fa * fa          # f''/f of the logistic at hi
        qb = 1.0 - 6.0 * fb + 6.0 * fb * fb
        s3 = ra * qa - rb * qb
        lo_a = -ra * (1.0 - 2.0 * fa) + s1 * ra
        lo_b = rb * (1.0 - 2.0 * fb) - s1 * rb
        return {
            "L_oo": s2 - s1 * s1,
            "L_ooo": -s3 + 3.0 * s1 * s2 - 2.0 * s1**3,
            "Lo_hi": lo_a,
            "Lo_lo": lo_b,
            "Loo_hi": ra * qa - s2 * ra + 2.0 * s1 * lo_a,
            "Loo_lo": -rb * qb + s2 * rb + 2.0 * s1 * lo_b,
        }


class _CLMM:
    def __init__(self, y: np.ndarray, n_cat: int, X: np.ndarray, g: np.ndarray, n_groups: int, n_agq: int):
        order = np.argsort(g, kind="stable")
        self.y = y[order]
        self.X = X[order]
        self.g = g[order]
        self.G = n_groups
        self.starts = np.r_[0, np.flatnonzero(np.diff(self.g)) + 1]
        self.J = n_cat
        self.p = X.shape[1]
        self.n = y.size
        nodes, weights = hermgauss(n_agq)
        self.nodes = nodes
        self.log_w = np.log(weights) + nodes**2
        self.n_par = (n_cat - 1) + self.p + 1
        self.u = np.zeros(n_groups)   # warm start for the conditional modes
        self.has_hi = self.y < n_cat - 1
        self.has_lo = self.y > 0

    def _sum(self, a: np.ndarray) -> np.ndarray:
        return np.add.reduceat(a, self.starts, axis=0)

    def _bounds(self, alpha: np.ndarray, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ext = np.r_[-np.inf, alpha, np.inf]
        return ext[self.y + 1] - eta, ext[self.y] - eta

    def split(self, par: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        k = self.J - 1
        return par[:k], par[k:k + self.p], float(par[-1])

    def modes(self, hi: np.ndarray, lo: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Conditional modes û and −h''(û) of every case's log integrand h(u) = Σ log P − u²/2.

        h is strictly concave (the logit link is log-concave), so Newton with step halving
        converges from any start; we iterate to |h'| < 1e-10.
        """
        u = self.u.copy()
        t = _Terms(hi, lo, sigma * u[self.g])
        if not np.all(np.isfinite(t.logp)):
            u = np.zeros_like(u)
            t = _Terms(hi, lo, sigma * u[self.g])
            if not np.all(np.isfinite(t.logp)):
                return None
        h = self._sum(t.logp) - 0.5 * u * u
        for _ in range(100):
            d1 = -sigma * self._sum(t.s1) - u
            d2 = sigma**2 * self._sum(t.s2 - t.s1**2) - 1.0
            if np.max(np.abs(d1)) < 1e-10:
                self.u = u
                return u, -d2
            step = -d1 / d2
            for _ in range(30):
                un = u + step
                tn = _Terms(hi, lo, sigma * un[self.g])
                hn = self._sum(tn.logp) - 0.5 * un * un
                bad = ~(hn >= h - 1e-12 * np.abs(h))
                if not bad.any():
                    break
                step = np.where(bad, step / 2.0, step)
            else:
                return None
            u, t, h = un, tn, hn
        return None

    def nll(self, par: np.ndarray, *, gradient: bool = False):
        """−log L by adaptive GHQ; with `gradient`, also its exact gradient (None where not finite)."""
        alpha, beta, tau = self.split(par)
        if np.any(np.diff(alpha) <= 0) or not np.all(np.isfinite(par)):
            return (math.inf, None) if gradient else math.inf
        sigma = math.exp(tau)
        eta = self.X @ beta if self.p else np.zeros(self.n)
        hi, lo = self._bounds(alpha, eta)
        found = self.modes(hi, lo, sigma)
        if found is None:
            return (math.inf, None) if gradient else math.inf
        u, curv = found
        s = 1.0 / np.sqrt(curv)
        z = u[:, None] + math.sqrt(2.0) * s[:, None] * self.nodes[None, :]        # G × K
        t = _Terms(hi[:, None], lo[:, None], sigma * z[self.g])                 # n × K
        lp = self.log_w[None, :] + self._sum(t.logp) - 0.5 * z * z               # G × K
        top = lp.max(axis=1)
        w = np.exp(lp - top[:, None])
        tot = w.sum(axis=1)
        ll = np.log(math.sqrt(2.0) * s) - _LOG_SQRT_2PI + top + np.log(tot)
        value = -float(ll.sum())
        if not math.isfinite(value):
            return (math.inf, None) if gradient else math.inf
        if not gradient:
            return value
        # Exact gradient of the AGQ approximation. (i) With the nodes held fixed, Fisher's identity
        # under the quadrature weights: Σₖ πᵢₖ ∂ log p(yᵢ | zᵢₖ)/∂ψ. (ii) The nodes move with ψ
        # through û and ŝ = c^(−1/2), c = −h''(û): by the implicit function theorem
        # dû/dψ = h_uψ / c and dc/dψ = −(h_uuψ + h_uuu dû/dψ).
        pi = w / tot[:, None]                                                    # G × K
        pin = pi[self.g]                                                         # n × K
        k = self.J - 1
        a_ra = np.sum(pin * t.ra, axis=1)
        a_rb = np.sum(pin * t.rb, axis=1)
        a_s1 = np.sum(pin * t.s1, axis=1)
        a_s1z = np.sum(pin * t.s1 * z[self.g], axis=1)
        g_alpha = (np.bincount(self.y[self.has_hi], weights=a_ra[self.has_hi], minlength=k)[:k]
                   - np.bincount(self.y[self.has_lo] - 1, weights=a_rb[self.has_lo], minlength=k)[:k])
        g_beta = -(self.X.T @ a_s1) if self.p else np.zeros(0)
        g_tau = -sigma * float(np.sum(a_s1z))

        hu = -sigma * self._sum(t.s1) - z                                        # h_u at the nodes
        e_u = np.sum(pi * hu, axis=1)
        e_s = 1.0 / s + math.sqrt(2.0) * np.sum(pi * hu * self.nodes[None, :], axis=1)
        m = _Terms(hi, lo, sigma * u[self.g])                                    # at the modes
        d3 = m.third()
        h_uuu = sigma**3 * self._sum(d3["L_ooo"])
        omega = 0.5 * e_s * curv ** -1.5
        kappa = (e_u + omega * h_uuu) / curv
        w1, w2 = kappa[self.g], omega[self.g]
        uo = u[self.g]
        c_hi = w1 * sigma * d3["Lo_hi"] + w2 * sigma**2 * d3["Loo_hi"]
        c_lo = w1 * sigma * d3["Lo_lo"] + w2 * sigma**2 * d3["Loo_lo"]
        g_alpha = g_alpha + (np.bincount(self.y[self.has_hi], weights=c_hi[self.has_hi], minlength=k)[:k]
                             + np.bincount(self.y[self.has_lo] - 1, weights=c_lo[self.has_lo], minlength=k)[:k])
        if self.p:
            g_beta = g_beta + self.X.T @ (w1 * sigma * d3["L_oo"] + w2 * sigma**2 * d3["L_ooo"])
        L_o = -m.s1
        g_tau += float(np.sum(w1 * (sigma * L_o + sigma**2 * uo * d3["L_oo"])
                              + w2 * (2.0 * sigma**2 * d3["L_oo"] + sigma**3 * uo * d3["L_ooo"])))
        grad = -np.r_[g_alpha, g_beta, g_tau]
        return value, grad


def _to_free(par: np.ndarray, k: int) -> np.ndarray:
    """(θ₁…θ_k, …) → (θ₁, log(θ₂ − θ₁), …): ordered thresholds without constraints."""
    return np.r_[par[0], np.log(np.diff(par[:k])), par[k:]]


def _from_free(x: np.ndarray, k: int) -> np.ndarray:
    return np.r_[x[0] + np.r_[0.0, np.cumsum(np.exp(x[1:k]))], x[k:]]


def _jacobian_from_free(x: np.ndarray, k: int, n: int) -> np.ndarray:
    J = np.eye(n)
    J[:k, 0] = 1.0
    gaps = np.exp(x[1:k])
    for i in range(1, k):
        J[i:k, i] = gaps[i - 1]
    return J


def _fit(model: _CLMM, start: np.ndarray, *, max_iter: int = 200) -> tuple[np.ndarray, bool]:
    """Quasi-Newton (BFGS) in the unconstrained parameters with the exact gradient of the AGQ
    −log L, started from a finite-difference Hessian; stops on the Newton decrement."""
    k = model.J - 1
    n = model.n_par

    def fg(x: np.ndarray) -> tuple[float, np.ndarray | None]:
        par = _from_free(x, k)
        v, g = model.nll(par, gradient=True)
        if g is None:
            return v, None
        return v, _jacobian_from_free(x, k, n).T @ g

    x = _to_free(start, k)
    fx, gx = fg(x)
    if gx is None:
        raise RuntimeError("the ordinal model cannot be evaluated at its starting values")
    H = _hessian_from_gradient(lambda z: fg(z)[1], x)
    if not np.all(np.isfinite(H)):
        H = np.eye(n)
    evals, evecs = np.linalg.eigh(H)
    evals = np.maximum(np.abs(evals), max(1e-8 * float(np.max(np.abs(evals))), 1e-10))
    Binv = (evecs / evals) @ evecs.T           # inverse-Hessian approximation
    tol = 1e-16 * max(1.0, abs(fx))
    for _ in range(max_iter):
        step = -Binv @ gx
        decrement = float(-gx @ step)
        if decrement < tol:
            return _from_free(x, k), True
        if decrement < 0:                       # lost positive definiteness: restart the metric
            Binv = np.eye(n) / max(1.0, float(np.max(np.abs(gx))))
            continue
        t = 1.0
        while t > 1e-10:
            xn = x + t * step
            fn, gn = fg(xn)
            if gn is not None and fn <= fx - 1e-4 * t * decrement:
                break
            if gn is not None and abs(fn - fx) <= 1e-14 * abs(fx) and decrement < 1e-10 * max(1.0, abs(fx)):
                break                            # at the optimum to rounding
            t /= 2.0
        else:
            return _from_free(x, k), decrement < 1e-8 * max(1.0, abs(fx))
        s, yv = xn - x, gn - gx
        sy = float(s @ yv)
        if sy > 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(yv)):
            rho = 1.0 / sy
            V = np.eye(n) - rho * np.outer(s, yv)
            Binv = V @ Binv @ V.T + rho * np.outer(s, s)
        x, fx, gx = xn, fn, gn
    return _from_free(x, k), False


def _hessian_from_gradient(grad, x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Central differences of an exact gradient (truncation error O(h²) ≈ 1e-8 relative)."""
    n = x.size
    steps = h * np.maximum(np.abs(x), 1.0)
    H = np.empty((n, n))
    for i in range(n):
        e = np.zeros(n)
        e[i] = steps[i]
        gp, gm = grad(x + e), grad(x - e)
        if gp is None or gm is None:
            return np.full((n, n), np.nan)
        H[:, i] = (gp - gm) / (2.0 * steps[i])
    return (H + H.T) / 2.0


def fit_clmm(
    data: Mapping[str, Any],
    *,
    outcome: str,
    group: str = "case",
    arm: str = "arm",
    covariates: Sequence[str] = (),
    levels: Sequence[Any] | None = None,
    n_agq: int = 10,
    treatment: str,
    reference: str,
) -> CLMMResult:
    """ML fit of `outcome ~ arm + covariates + (1|group)`, logit link, flexible thresholds.

    Equals `ordinal::clmm(factor(outcome, ordered = TRUE) ~ arm + … + (1|group), nAGQ = n_agq)`.
    `outcome` holds ordinal scores (e.g. Likert 1–5); their order is `levels` if given, else the
    sorted observed values (unobserved categories are dropped, as R's factor() drops them).
    `n_agq` is the number of adaptive quadrature nodes (≥ 2; 10 is accurate for Likert data,
    where a Laplace approximation, n_agq = 1, is not offered).
    """
    if int(n_agq) != n_agq or n_agq < 2:
        raise ValueError("n_agq must be an integer ≥ 2 (adaptive Gauss-Hermite quadrature)")
    n_agq = int(n_agq)
    raw = _column(data, outcome)
    if raw.ndim != 1:
        raise ValueError(f"outcome {outcome!r} must be one-dimensional")
    n = raw.size
    if raw.dtype.kind == "f" and np.isnan(raw).any() or raw.dtype.kind == "O" and any(v is None for v in raw):
        raise ValueError(f"outcome {outcome!r} has missing values")
    if levels is None:
        cats = np.unique(raw)
    else:
        cats = np.asarray(list(levels))
        unknown = set(np.unique(raw).tolist()) - set(cats.tolist())
        if unknown:
            raise ValueError(f"outcome {outcome!r} has values outside `levels`: {sorted(unknown)}")
        cats = np.array([c for c in cats if np.any(raw == c)])
    if cats.size < 2:
        raise ValueError(f"outcome {outcome!r} needs at least two observed categories")
    lookup = {c: i for i, c in enumerate(cats.tolist())}
    y = np.array([lookup[v] for v in raw.tolist()], dtype=np.int64)
    X, names = design_columns(data, arm=arm, covariates=covariates, treatment=treatment,
                              reference=reference, n=n, intercept=False)
    g, n_groups = grouping_codes(data, group, n)
    if n_groups < 3:
        raise ValueError(f"grouping factor {group!r} needs at least 3 levels, has {n_groups}")
    if n_groups >= n:
        raise ValueError(f"grouping factor {group!r} has as many levels as observations: not identifiable")

    model = _CLMM(y, cats.size, X, g, n_groups, n_agq)
    # Start where ordinal does in spirit: marginal cumulative logits, no covariate effect, σ = 1.
    k = cats.size - 1
    cum = np.cumsum(np.bincount(y, minlength=cats.size))[:-1] / n
    start = np.r_[np.log(cum / (1.0 - cum)), np.zeros(X.shape[1]), 0.0]
    par, converged = _fit(model, start)

    # Standard errors from the inverse Hessian of −log L in ordinal's parameters (θ, β, log σ):
    # central differences of the exact gradient.
    H = _hessian_from_gradient(lambda p: model.nll(p, gradient=True)[1], par)
    value = model.nll(par)
    try:
        cov = np.linalg.inv(H)
        se_all = np.sqrt(np.diag(cov))
    except np.linalg.LinAlgError:
        se_all = np.full(par.size, math.nan)
    if not np.all(np.isfinite(se_all)):
        converged = False

    alpha, beta, tau = model.split(par)
    labels = [str(c) for c in cats.tolist()]
    th_names = [f"{labels[i]}|{labels[i + 1]}" for i in range(k)]
    est, se = float(beta[0]), float(se_all[k])
    z = est / se
    return CLMMResult(
        estimate=est,
        se=se,
        statistic=float(z),
        pvalue=float(2.0 * stats.norm.sf(abs(z))),
        thresholds={nm: float(a) for nm, a in zip(th_names, alpha)},
        thresholds_se={nm: float(s) for nm, s in zip(th_names, se_all[:k])},
        fixed_effects={nm: float(b) for nm, b in zip(names, beta)},
        fixed_effects_se={nm: float(s) for nm, s in zip(names, se_all[k:k + len(names)])},
        random_sd=float(math.exp(tau)),
        log_likelihood=-float(value),
        n_obs=int(n),
        n_groups=int(n_groups),
        group=group,
        n_agq=n_agq,
        converged=bool(converged),
    )
