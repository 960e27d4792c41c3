"""Linear mixed model for an arm effect with crossed random intercepts: REML as lme4, Satterthwaite df as lmerTest.

Model: y = Xβ + Σₖ Zₖ bₖ + ε with X = [1, treatment, covariates…], bₖ ~ N(0, σ²θₖ² I) one random
intercept per level of each grouping factor k (reader, case, reader:arm, case:arm, …) and
ε ~ N(0, σ² I).

The fit follows the formulation of Bates, Mächler, Bolker & Walker (2015), "Fitting linear
mixed-effects models using lme4", J. Stat. Softw. 67(1), §3: relative covariance factor
Λ_θ = diag(θₖ per level), the penalized least-squares system in (u, β) and the REML criterion
profiled over σ,

    d_R(θ) = log|L_θ|² + log|R_X|² + (n − p)[1 + log(2π r²(θ) / (n − p))],

minimised over θ ≥ 0 (eq. 42 there; lme4's `REMLcrit`). The implementation is ours (lme4 is GPL
and no code of it is used): with intercepts only, Zᵀ Z is known once, and every grouping factor
whose block of the (updated) cross-product matrix is diagonal, starting with the largest (case),
is eliminated exactly by a Schur complement with a diagonal pivot. For the paired-parallel and the
crossover designs this leaves a dense system of a few dozen rows (readers, reader:arm, β, y), so
one evaluation of d_R costs microseconds to a millisecond and never touches the n rows.

Small-sample inference on the arm effect follows Kuznetsova, Brockhoff & Christensen (2017),
"lmerTest package: tests in linear mixed effects models", J. Stat. Softw. 82(13): with the
variance parameters φ = (θ₁…θ_K, σ), A = 2 H⁻¹ with H the Hessian of the (non-profiled) REML
deviance in φ (Moore–Penrose inverse over eigenvalues above 1e-8), v(φ) = Var(β̂_arm) and
df = 2 v² / (∇vᵀ A ∇v). Derivatives are central differences with Richardson extrapolation.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg
import scipy.linalg.lapack
import scipy.sparse as sp
import scipy.sparse.linalg
from scipy import stats

__all__ = ["ConfidenceInterval", "LMMResult", "InteractionResult", "PooledFit", "fit_lmm", "fit_lmm_interaction",
           "fit_pooled_lmm", "fstat_ddf", "design_columns", "grouping_codes"]

# A remaining random-effects system up to this many rows is factored densely; above it, sparse LU.
# Measured (quality model with case, reader, expert, case:arm): the dense path costs O(rows²) per
# evaluation, so a site's subset of a 2,000-case trial (~700 rows left) fitted in 2.1 s at 1,500 and
# 0.33 s at 300; whole trials of 296 and 2,000 cases and a 200-case crossover were as fast or faster.
_DENSE_MAX = 300
try:  # optional (BSD-3): keeps BLAS single-threaded during a fit, see single_threaded_blas()
    from threadpoolctl import threadpool_limits as _threadpool_limits
except ImportError:  # pragma: no cover - depends on the environment
    _threadpool_limits = None


def single_threaded_blas() -> contextlib.AbstractContextManager:
    """The matrices of a fit are small (≤ a few thousand × a few dozen), where a multi-threaded
    BLAS only adds synchronisation; on a busy machine it made fits 5× slower. threadpoolctl, when
    installed, limits BLAS to one thread for the duration of the fit."""
    if _threadpool_limits is None:
        return contextlib.nullcontext()
    return _threadpool_limits(limits=1, user_api="blas")


# LAPACK directly: the scipy.linalg wrappers cost more than the factorizations of these small systems.
_potrf = scipy.linalg.lapack.dpotrf
_trtrs = scipy.linalg.lapack.dtrtrs


class ConfidenceInterval(NamedTuple):
    low: float
    high: float


@dataclass(frozen=True)
class LMMResult:
    """Arm effect (treatment − reference) from a REML linear mixed model, scipy.stats style.

    On the log scale when `log` is true: `ratio` = exp(estimate) is then the ratio of geometric
    means treatment / reference, and `percent_reduction` = 100 (1 − ratio).
    """

    estimate: float                       # β of the arm (treatment vs reference)
    se: float
    statistic: float                      # t = estimate / se
    df: float                             # Satterthwaite
    pvalue: float                         # two-sided, t on df
    log: bool
    fixed_effects: dict[str, float]
    fixed_effects_se: dict[str, float]
    variance_components: dict[str, float]  # σ²θₖ² by grouping term, e.g. "reader", "case:arm"
    residual_variance: float
    reml_criterion: float                 # lme4's REMLcrit
    n_obs: int
    n_groups: dict[str, int]
    theta: tuple[float, ...]              # relative SDs (lme4's getME(m, "theta")), order of n_groups
    converged: bool
    method: str = "REML; Satterthwaite df (lmerTest)"

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """t interval with the Satterthwaite df, on the scale of the fit (log scale when `log`)."""
        _check_level(confidence_level)
        q = float(stats.t.ppf(0.5 + confidence_level / 2, self.df))
        return ConfidenceInterval(self.estimate - q * self.se, self.estimate + q * self.se)

    @property
    def ratio(self) -> float:
        """Ratio of geometric means treatment / reference (log fits only)."""
        self._require_log()
        return math.exp(self.estimate)

    def ratio_confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        self._require_log()
        low, high = self.confidence_interval(confidence_level)
        # With a tiny df (a small subgroup) the t interval can be astronomically wide: exp overflows to
        # infinity rather than raising, so that the interval reads "unbounded".
        return ConfidenceInterval(_safe_exp(low), _safe_exp(high))

    @property
    def percent_reduction(self) -> float:
        """100 (1 − ratio): the % time saved in the treatment arm (log fits only)."""
        return 100.0 * (1.0 - self.ratio)

    def percent_reduction_confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        low, high = self.ratio_confidence_interval(confidence_level)
        return ConfidenceInterval(100.0 * (1.0 - high), 100.0 * (1.0 - low))

    def to_dict(self, confidence_level: float = 0.95) -> dict[str, Any]:
        """JSON-serialisable summary, with the intervals at `confidence_level`."""
        out: dict[str, Any] = {
            "estimate": self.estimate,
            "se": self.se,
            "statistic": self.statistic,
            "df": self.df,
            "pvalue": self.pvalue,
            "confidence_level": confidence_level,
            "confidence_interval": list(self.confidence_interval(confidence_level)),
            "log": self.log,
            "fixed_effects": dict(self.fixed_effects),
            "fixed_effects_se": dict(self.fixed_effects_se),
            "variance_components": dict(self.variance_components),
            "residual_variance": self.residual_variance,
            "reml_criterion": self.reml_criterion,
            "n_obs": self.n_obs,
            "n_groups": dict(self.n_groups),
            "theta": list(self.theta),
            "converged": self.converged,
            "method": self.method,
        }
        if self.log:
            out["ratio"] = self.ratio
            out["ratio_confidence_interval"] = list(self.ratio_confidence_interval(confidence_level))
            out["percent_reduction"] = self.percent_reduction
            out["percent_reduction_confidence_interval"] = list(
                self.percent_reduction_confidence_interval(confidence_level)
            )
        return out

    def _require_log(self) -> None:
        if not self.log:
            raise ValueError("a ratio of geometric means needs a fit on the log scale (log=True)")


def _check_level(confidence_level: float) -> None:
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must lie strictly between 0 and 1, got {confidence_level!r}")


# --------------------------------------------------------------------------------------------
# Data preparation


def _column(data: Mapping[str, Any], name: str) -> np.ndarray:
    try:
        col = data[name]
    except (KeyError, IndexError):
        raise ValueError(f"no column {name!r} in the data") from None
    return np.asarray(col)


def _codes(values: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """Integer codes 0..m−1 of a grouping column (levels in sorted order, as R's factor())."""
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise ValueError(f"grouping column {name!r} has missing values")
    if values.dtype.kind == "O":
        if any(v is None for v in values):
            raise ValueError(f"grouping column {name!r} has missing values")
        values = values.astype(str)
    _, inverse = np.unique(values, return_inverse=True)
    inverse = inverse.reshape(-1)
    return inverse, int(inverse.max()) + 1


def grouping_codes(data: Mapping[str, Any], term: str, n: int) -> tuple[np.ndarray, int]:
    """Codes of a grouping term; "reader:arm" is the factor of the observed (reader, arm) pairs."""
    parts = [p.strip() for p in term.split(":")]
    if not all(parts):
        raise ValueError(f"bad grouping term {term!r}")
    codes = np.zeros(n, dtype=np.int64)
    for part in parts:
        col = _column(data, part)
        if col.shape != (n,):
            raise ValueError(f"column {part!r} has shape {col.shape}, expected ({n},)")
        c, m = _codes(col, part)
        codes = codes * m + c
    _, inverse = np.unique(codes, return_inverse=True)
    inverse = inverse.reshape(-1)
    return inverse, int(inverse.max()) + 1


def design_columns(
    data: Mapping[str, Any],
    *,
    arm: str,
    covariates: Sequence[str],
    treatment: str,
    reference: str,
    n: int,
    intercept: bool = True,
) -> tuple[np.ndarray, list[str]]:
    """Fixed-effects design: [intercept,] arm indicator (1 = treatment), then covariates.

    A numeric covariate enters as is; a text/boolean covariate as treatment-coded dummies with its
    first sorted level as reference (as R codes a factor), named "<column><level>".
    """
    arm_values = _column(data, arm)
    if arm_values.shape != (n,):
        raise ValueError(f"column {arm!r} has shape {arm_values.shape}, expected ({n},)")
    arm_values = arm_values.astype(str)
    levels = set(np.unique(arm_values).tolist())
    if levels != {treatment, reference}:
        raise ValueError(
            f"column {arm!r} must hold exactly the two arms {reference!r} and {treatment!r}, "
            f"found {sorted(levels)}"
        )
    cols = [np.ones(n)] if intercept else []
    names = ["(Intercept)"] if intercept else []
    cols.append((arm_values == treatment).astype(float))
    names.append(f"{arm}{treatment}")
    _covariate_columns(data, covariates, n, cols, names)
    X = np.column_stack(cols)
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise ValueError(f"the fixed-effects design ({', '.join(names)}) is rank deficient")
    return X, names


def _covariate_columns(data: Mapping[str, Any], covariates: Sequence[str], n: int, cols: list[np.ndarray],
                       names: list[str]) -> None:
    """Append each covariate's columns (numeric as is, text as treatment-coded dummies) to `cols` and `names`."""
    for cov in covariates:
        values = _column(data, cov)
        if values.shape != (n,):
            raise ValueError(f"column {cov!r} has shape {values.shape}, expected ({n},)")
        if values.dtype.kind in "iuf":
            values = values.astype(float)
            if not np.isfinite(values).all():
                raise ValueError(f"covariate {cov!r} has missing or infinite values")
            cols.append(values)
            names.append(cov)
        else:
            if values.dtype.kind == "O" and any(v is None for v in values):
                raise ValueError(f"covariate {cov!r} has missing values")
            values = values.astype(str)
            for level in np.unique(values)[1:]:
                cols.append((values == level).astype(float))
                names.append(f"{cov}{level}")


# --------------------------------------------------------------------------------------------
# The REML problem


@dataclass
class _Stage:
    """One exact elimination of a grouping factor whose current diagonal block is diagonal."""

    factor: int
    size: int
    # Only for the first stage, whose blocks do not depend on θ: the constant pieces.
    diag: np.ndarray | None = None
    off: Any = None          # C_ER, dense ndarray or sparse CSR
    rest: Any = None         # C_RR
    # Levels sharing a count c share the pivot θ²c + 1, so C_REᵀ diag(w) C_ER = Σ_c w(c) G_c with
    # G_c = Σ_{levels of count c} (row)ᵀ(row) known once: exact, and independent of the level count.
    counts: np.ndarray | None = None
    multiplicity: np.ndarray | None = None
    grams: list[Any] | None = None


@dataclass
class _Factorization:
    logdet_a: float          # log|L_θ|² = log det(Λᵀ Zᵀ Z Λ + I)
    logdet_rx: float         # log|R_X|²
    r2: float                # penalized residual sum of squares
    lx: np.ndarray           # R_Xᵀ (lower triangular, p × p)
    ly: np.ndarray           # so that β̂ = R_X⁻¹ ly


def _indicators(factors: list[tuple[np.ndarray, int]], order: list[int]) -> sp.csr_matrix:
    """Z = [Z_k for k in order], the n × q indicator matrix of the levels."""
    n = factors[0][0].shape[0]
    offsets = np.concatenate([[0], np.cumsum([factors[k][1] for k in order])]).astype(np.int64)
    rows = np.repeat(np.arange(n), len(order))
    cols = np.column_stack([factors[k][0] + offsets[i] for i, k in enumerate(order)]).reshape(-1)
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, int(offsets[-1])))


def _crossproduct(factors: list[tuple[np.ndarray, int]], order: list[int], Xy: np.ndarray) -> sp.csr_matrix:
    """[Z X y]ᵀ[Z X y] with the levels of the factors in `order`, each factor's levels contiguous."""
    Z = _indicators(factors, order)
    ZtXy = np.asarray(Z.T @ Xy)
    return sp.bmat(
        [[(Z.T @ Z).tocsr(), sp.csr_matrix(ZtXy)], [sp.csr_matrix(ZtXy.T), sp.csr_matrix(Xy.T @ Xy)]],
        format="csr",
    )


def _elimination_plan(factors: list[tuple[np.ndarray, int]]) -> tuple[list[int], list[int]]:
    """Factors to eliminate by diagonal pivots, in order (largest eligible first), and those left.

    Symbolic: the fill of each Schur complement is computed on |entries| (a sum of non-negative
    terms cannot cancel), so "this block is diagonal" holds for every θ, not just for one.
    """
    nlev = [m for _, m in factors]
    Z = _indicators(factors, list(range(len(factors))))
    pattern = (Z.T @ Z).tocsr()
    pattern.data = np.abs(pattern.data)
    remaining = list(range(len(factors)))
    eliminated: list[int] = []
    while remaining:
        offs = np.concatenate([[0], np.cumsum([nlev[k] for k in remaining])])
        eligible = []
        for i in range(len(remaining)):
            block = pattern[offs[i]:offs[i + 1], offs[i]:offs[i + 1]].tocoo()
            if np.all(block.row == block.col):
                eligible.append(i)
        if not eligible:
            break
        i = max(eligible, key=lambda i: (nlev[remaining[i]], -i))
        keep = np.r_[0:offs[i], offs[i + 1]:pattern.shape[0]]
        sel = np.arange(offs[i], offs[i + 1])
        off = pattern[sel][:, keep]
        pattern = (pattern[keep][:, keep] + off.T @ off).tocsr()
        pattern.data = np.abs(pattern.data)
        eliminated.append(remaining.pop(i))
    return eliminated, remaining


class _REML:
    """Everything that depends only on the data, and the profiled REML criterion as a function of θ."""

    def __init__(self, y: np.ndarray, X: np.ndarray, factors: list[tuple[np.ndarray, int]]):
        self.n, self.p = X.shape
        self.k = len(factors)
        self.nlev = [m for _, m in factors]
        self.y_shift = float(np.mean(y))   # centring y changes only the intercept, and helps conditioning
        Xy = np.column_stack([X, y - self.y_shift])

        eliminated, remaining = _elimination_plan(factors)
        order = eliminated + remaining
        C = _crossproduct(factors, order, Xy)
        self.stages = [_Stage(factor=k, size=self.nlev[k]) for k in eliminated]
        self.remaining = remaining
        self.q_rest = sum(self.nlev[k] for k in remaining)
        # The scale of the rows left after the eliminations: θ of their factor; X and y get 1.
        self.rest_factor = np.repeat(np.array(remaining, dtype=np.int64), [self.nlev[k] for k in remaining])

        # The first elimination acts on constant blocks of C: keep them, dense when small.
        first = self.stages[0]
        m = first.size
        first.diag = np.asarray(C[:m, :m].diagonal())
        off, rest = C[:m, m:], C[m:, m:]
        dim_rest = C.shape[0] - m
        counts, which = np.unique(first.diag, return_inverse=True)
        dense = dim_rest <= _DENSE_MAX
        first.rest = rest.toarray() if dense else rest.tocsr()
        if counts.size <= 32:
            first.counts = counts
            first.multiplicity = np.bincount(which, minlength=counts.size).astype(float)
            off = off.tocsr()
            grams = []
            for i in range(counts.size):
                rows = off[np.flatnonzero(which == i)]
                g = (rows.T @ rows)
                grams.append(g.toarray() if dense else g.tocsr())
            first.grams = np.stack(grams) if dense else grams
        elif dense and m * dim_rest <= 5_000_000:
            first.off = off.toarray()
        else:
            first.off = off.tocsr()

    # ---- one evaluation -------------------------------------------------------------------

    def factorize(self, theta: np.ndarray) -> _Factorization | None:
        """Exact factorization at θ (length K, original factor order); None if not positive definite."""
        th2 = theta * theta
        st = self.stages[0]
        t2 = th2[st.factor]
        if st.grams is not None:
            d = t2 * st.counts + 1.0
            logdet_a = float(st.multiplicity @ np.log(d))
            w = t2 / d
            if sp.issparse(st.rest):
                C = st.rest
                for wi, g in zip(w, st.grams):
                    C = C - wi * g
            else:
                C = st.rest - (w @ st.grams.reshape(w.size, -1)).reshape(st.rest.shape)
        else:
            d = t2 * st.diag + 1.0
            logdet_a = float(np.sum(np.log(d)))
            w = t2 / d
            if isinstance(st.off, np.ndarray):
                C = st.rest - (st.off.T * w) @ st.off
            else:
                C = (st.rest - st.off.T @ sp.diags(w) @ st.off).tocsr()
        for st in self.stages[1:]:
            m = st.size
            if sp.issparse(C) and C.shape[0] <= _DENSE_MAX:
                C = C.toarray()
            if sp.issparse(C):
                C = C.tocsr()
                diag = np.asarray(C[:m, :m].diagonal())
                off = C[:m, m:]
                rest = C[m:, m:]
                # e.g. case after case:arm in a crossover: every case row couples to every reader,
                # so the coupling block is dense in all but name; dense arithmetic is then faster
                if off.shape[1] <= _DENSE_MAX and off.nnz > 0.1 * off.shape[0] * off.shape[1]:
                    off, rest = off.toarray(), rest.toarray()
            else:
                diag = np.diag(C)[:m].copy()
                off = C[:m, m:]
                rest = C[m:, m:]
            d = th2[st.factor] * diag + 1.0
            logdet_a += float(np.sum(np.log(d)))
            w = th2[st.factor] / d
            if sp.issparse(off):
                C = (rest - off.T @ sp.diags(w) @ off).tocsr()
            else:
                C = rest - (off.T * w) @ off
        s = np.concatenate([theta[self.rest_factor], np.ones(self.p + 1)])
        qr = self.q_rest
        if sp.issparse(C) and C.shape[0] <= _DENSE_MAX:
            C = C.toarray()
        if not sp.issparse(C):
            M = C * s[:, None] * s[None, :]
            idx = np.arange(qr)
            M[idx, idx] += 1.0
            L, info = _potrf(M, lower=1, clean=1)
            if info != 0:
                return None
            dl = np.diag(L)
            logdet_a += 2.0 * float(np.sum(np.log(dl[:qr])))
            tail = L[qr:, qr:]
        else:
            S = sp.diags(s)
            M = (S @ C @ S).tocsc()
            A = (M[:qr, :qr] + sp.identity(qr, format="csc")).tocsc()
            B = M[:qr, qr:].toarray()
            try:
                lu = scipy.sparse.linalg.splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0)
            except RuntimeError:
                return None
            logdet_a += float(np.sum(np.log(np.abs(lu.U.diagonal()))))
            schur = M[qr:, qr:].toarray() - B.T @ lu.solve(B)
            tail, info = _potrf(schur, lower=1, clean=1)
            if info != 0:
                return None
        p = self.p
        dt = np.diag(tail)
        if not np.all(dt > 0):
            return None
        return _Factorization(
            logdet_a=logdet_a,
            logdet_rx=2.0 * float(np.sum(np.log(dt[:p]))),
            r2=float(dt[p] ** 2),
            lx=tail[:p, :p],
            ly=tail[p, :p],
        )

    def profiled_deviance(self, theta: np.ndarray) -> float:
        """lme4's REML criterion d_R(θ) (Bates et al. 2015, eq. 42)."""
        f = self.factorize(np.abs(theta))
        if f is None:
            return math.inf
        nu = self.n - self.p
        return f.logdet_a + f.logdet_rx + nu * (1.0 + math.log(2.0 * math.pi * f.r2 / nu))

    def deviance(self, varpar: np.ndarray) -> float:
        """REML deviance −2 log L_R as a function of φ = (θ₁…θ_K, σ), not profiled (lmerTest's scale)."""
        theta, sigma = varpar[:-1], varpar[-1]
        f = self.factorize(np.abs(theta))
        if f is None or sigma <= 0:
            return math.inf
        nu = self.n - self.p
        return f.logdet_a + f.logdet_rx + f.r2 / sigma**2 + nu * math.log(2.0 * math.pi * sigma**2)

    def var_beta(self, varpar: np.ndarray, j: int) -> float:
        """Var(β̂ⱼ) = σ² [(R_Xᵀ R_X)⁻¹]ⱼⱼ at φ."""
        e = np.zeros(self.p)
        e[j] = 1.0
        return self.var_contrast(varpar, e)

    def var_contrast(self, varpar: np.ndarray, contrast: np.ndarray) -> float:
        """Var(lᵀβ̂) = σ² ‖R_X⁻ᵀ l‖² at φ."""
        f = self.factorize(np.abs(varpar[:-1]))
        if f is None:
            return math.nan
        z, _ = _trtrs(f.lx, np.asarray(contrast, dtype=float), lower=1)  # R_X⁻ᵀ l
        return float(varpar[-1] ** 2 * z @ z)


# --------------------------------------------------------------------------------------------
# Numerical derivatives: central differences with Richardson extrapolation (as numDeriv does it).

# numDeriv's zero.tol: a coordinate smaller than this is stepped by `eps` (a variance component at the boundary).
ZERO_TOL = math.sqrt(np.finfo(float).eps / 7e-7)


def _steps(x: np.ndarray, d: float, zero_tol: float, eps: float) -> np.ndarray:
    """numDeriv's first step: d·|x|, plus eps where |x| < zero_tol."""
    return d * np.abs(x) + np.where(np.abs(x) < zero_tol, eps, 0.0)


def _richardson(estimates: list[np.ndarray]) -> np.ndarray:
    a = [np.asarray(e, dtype=float) for e in estimates]
    for m in range(1, len(a)):
        f = 4.0**m
        a = [(f * a[i + 1] - a[i]) / (f - 1.0) for i in range(len(a) - 1)]
    return a[0]


def richardson_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, *, d: float = 1e-3,
                        r: int = 4, zero_tol: float = ZERO_TOL, eps: float = 1e-4) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    h0 = _steps(x, d, zero_tol, eps)
    levels = []
    for lev in range(r):
        h = h0 / 2.0**lev
        g = np.empty(x.size)
        for i in range(x.size):
            e = np.zeros(x.size)
            e[i] = h[i]
            g[i] = (f(x + e) - f(x - e)) / (2.0 * h[i])
        levels.append(g)
    return _richardson(levels)


def richardson_hessian(f: Callable[[np.ndarray], float], x: np.ndarray, *, d: float = 1e-2,
                       r: int = 4, zero_tol: float = ZERO_TOL, eps: float = 1e-4) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    k = x.size
    f0 = f(x)
    h0 = _steps(x, d, zero_tol, eps)
    levels = []
    for lev in range(r):
        h = h0 / 2.0**lev
        H = np.empty((k, k))
        for i in range(k):
            e = np.zeros(k)
            e[i] = h[i]
            H[i, i] = (f(x + e) - 2.0 * f0 + f(x - e)) / h[i] ** 2
            for j in range(i):
                ej = np.zeros(k)
                ej[j] = h[j]
                H[i, j] = H[j, i] = (f(x + e + ej) - f(x + e - ej) - f(x - e + ej) + f(x - e - ej)) / (
                    4.0 * h[i] * h[j]
                )
        levels.append(H)
    return _richardson(levels)


# --------------------------------------------------------------------------------------------
# Fitting


def _optimize_theta(problem: _REML, start: Sequence[float] | None = None) -> tuple[np.ndarray, bool]:
    """Minimise d_R over θ ≥ 0, starting from θ = 1 as lme4 does (or from `start`, e.g. the θ of a fit of the
    same terms to more data: fewer Newton steps to the same optimum).

    d_R is even in every θₖ (θₖ → −θₖ only flips the sign of uₖ), so its minimum over θ ≥ 0 is
    |θ*| for the unconstrained minimum θ*: a plain Newton iteration does the job, with no bounds to
    handle, and converges to the optimum far more tightly than lme4's bobyqa default.
    """
    x0 = np.ones(problem.k)
    if start is not None and len(start) == problem.k and np.all(np.isfinite(start)):
        # a component at the boundary would start Newton on a flat ridge: start it off the boundary
        x0 = np.maximum(np.abs(np.asarray(start, dtype=float)), 0.05)
        if not math.isfinite(problem.profiled_deviance(x0)):
            x0 = np.ones(problem.k)
    theta, converged = newton_minimize(problem.profiled_deviance, x0)
    theta = np.abs(theta)
    # A variance component at the boundary: report exactly 0, as lme4 does, when that is no worse.
    tiny = theta < 1e-6
    if tiny.any():
        snapped = np.where(tiny, 0.0, theta)
        if problem.profiled_deviance(snapped) <= problem.profiled_deviance(theta) + 1e-10:
            theta = snapped
    return theta, converged


def newton_minimize(f: Callable[[np.ndarray], float], x0: np.ndarray, *, max_iter: int = 200,
                    tol: float = 1e-16) -> tuple[np.ndarray, bool]:
    """Damped Newton with finite-difference derivatives, for smooth objectives of a few parameters.

    The Hessian is made positive definite by taking |eigenvalues| (floored), steps are halved
    until f decreases, and the iteration stops when the Newton decrement gᵀH⁻¹g falls below
    `tol`·max(1, |f|) or no step decreases f.
    """
    x = np.asarray(x0, dtype=float).copy()
    k = x.size
    fx = f(x)
    if not math.isfinite(fx):
        raise RuntimeError("the objective is not finite at the starting point")
    for _ in range(max_iter):
        h = 1e-4 * np.maximum(np.abs(x), 0.05)
        fp, fm = np.empty(k), np.empty(k)
        for i in range(k):
            e = np.zeros(k)
            e[i] = h[i]
            fp[i], fm[i] = f(x + e), f(x - e)
        g = (fp - fm) / (2.0 * h)
        H = np.empty((k, k))
        for i in range(k):
            H[i, i] = (fp[i] - 2.0 * fx + fm[i]) / h[i] ** 2
            for j in range(i):
                ei, ej = np.zeros(k), np.zeros(k)
                ei[i], ej[j] = h[i], h[j]
                H[i, j] = H[j, i] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (
                    4.0 * h[i] * h[j]
                )
        if not (np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
            return x, False
        evals, evecs = np.linalg.eigh((H + H.T) / 2.0)
        floor = max(1e-10 * float(np.max(np.abs(evals))), 1e-12)
        evals = np.maximum(np.abs(evals), floor)
        gz = evecs.T @ g
        step = -evecs @ (gz / evals)
        decrement = float(gz @ (gz / evals))
        if decrement < tol * max(1.0, abs(fx)):
            return x, True
        t = 1.0
        while t > 1e-12:
            xn = x + t * step
            fn = f(xn)
            if fn < fx:
                break
            t /= 2.0
        else:
            # No decrease along the Newton direction: we are at the optimum to rounding.
            return x, decrement < 1e-8 * max(1.0, abs(fx))
        x, fx = xn, fn
    return x, False


def _vcov_varpar(problem: _REML, varpar: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    """A = 2 H⁻¹, the asymptotic covariance of φ̂ = (θ, σ): H the Hessian of the REML deviance (lmerTest).

    The steps are numDeriv::hessian's, which lmerTest uses: a first step of a tenth of each parameter, four
    Richardson levels. Smaller first steps drown the second differences in rounding: the deviance is known to
    ~1e-13 (of ~10²–10³), and with the steps used before (1e-3·θ, two levels) a θ near 0.1 carried enough of that
    noise to move the df by 1e-6 relative from lmerTest's (docs/statistics.md, "The R script")."""
    H = richardson_hessian(problem.deviance, varpar, d=0.1, r=4)
    H = (H + H.T) / 2.0
    evals, evecs = np.linalg.eigh(H)
    pos = evals > tol
    # Moore–Penrose inverse over the positive eigenvalues, as lmerTest does for a boundary fit.
    H_inv = (evecs[:, pos] / evals[pos]) @ evecs[:, pos].T
    return 2.0 * H_inv


def _contrast_df(problem: _REML, varpar: np.ndarray, A: np.ndarray, contrast: np.ndarray) -> float:
    """Kuznetsova, Brockhoff & Christensen (2017): df = 2 v² / (∇vᵀ A ∇v), v(φ) = Var(lᵀβ̂)."""
    v = problem.var_contrast(varpar, contrast)
    g = richardson_gradient(lambda x: problem.var_contrast(x, contrast), varpar, d=1e-3, r=2)
    denom = float(g @ A @ g)
    return 2.0 * v * v / denom if denom > 0 else math.inf


def _satterthwaite_df(problem: _REML, varpar: np.ndarray, j: int, tol: float = 1e-8) -> float:
    """The df of the single coefficient j (summary(lmer)'s column "df")."""
    e = np.zeros(problem.p)
    e[j] = 1.0
    return _contrast_df(problem, varpar, _vcov_varpar(problem, varpar, tol), e)


def fstat_ddf(nu: Sequence[float], tol: float = 1e-8) -> float:
    """Denominator df of an F built from q independent t statistics with df νₘ (lmerTest's get_Fstat_ddf).

    E = Σ νₘ/(νₘ − 2) and ν = 2E/(E − q) (Kuznetsova et al. 2017, §3.3; Fai & Cornelius 1996), 2 when
    some νₘ ≤ 2, and ν₁ itself when q = 1 or all νₘ agree.
    """
    nu = np.asarray(nu, dtype=float)
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(np.mean(nu))
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2.0)))
    return 2.0 * E / (E - nu.size)


def _f_test(problem: _REML, varpar: np.ndarray, beta: np.ndarray, L: np.ndarray,
            eps: float = math.sqrt(np.finfo(float).eps)) -> tuple[float, int, float]:
    """(F, numerator df q, Satterthwaite denominator df) of H₀: Lβ = 0, as lmerTest's contestMD.

    Var(Lβ̂) = P D Pᵀ; the q rows of PᵀL with eigenvalues above eps·max are independent contrasts
    whose t² average to F, and whose Satterthwaite df combine by `fstat_ddf`.
    """
    L = np.atleast_2d(np.asarray(L, dtype=float))
    f = problem.factorize(np.abs(varpar[:-1]))
    if f is None:
        return math.nan, L.shape[0], math.nan
    Z = scipy.linalg.solve_triangular(f.lx, L.T, lower=True)          # R_X⁻ᵀ Lᵀ
    VL = varpar[-1] ** 2 * (Z.T @ Z)
    evals, evecs = np.linalg.eigh((VL + VL.T) / 2.0)
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    pos = evals > max(eps * evals[0], 0.0)
    q = int(pos.sum())
    PtL = evecs[:, pos].T @ L
    d = evals[pos]
    t2 = (PtL @ beta) ** 2 / d
    F = float(np.sum(t2) / q)
    A = _vcov_varpar(problem, varpar)
    nu = [_contrast_df(problem, varpar, A, row) for row in PtL]
    return F, q, fstat_ddf(nu)


def _outcome_and_factors(data: Mapping[str, Any], *, outcome: str, random: Sequence[str] | str,
                         log: bool) -> tuple[np.ndarray, list[str], list[tuple[np.ndarray, int]]]:
    if isinstance(random, str):
        random = [random]
    random = list(random)
    if not random:
        raise ValueError("at least one random-intercept grouping term is needed")
    if len(set(random)) != len(random):
        raise ValueError(f"repeated grouping terms in {random}")
    y = _column(data, outcome).astype(float)
    if y.ndim != 1:
        raise ValueError(f"outcome {outcome!r} must be one-dimensional")
    n = y.size
    if not np.isfinite(y).all():
        raise ValueError(f"outcome {outcome!r} has missing or infinite values")
    if log:
        if not (y > 0).all():
            raise ValueError(f"outcome {outcome!r} must be > 0 for a fit on the log scale")
        y = np.log(y)
    factors = [grouping_codes(data, term, n) for term in random]
    for term, (_, m) in zip(random, factors):
        if m >= n:
            raise ValueError(f"grouping term {term!r} has {m} levels for {n} observations: not identifiable")
    return y, random, factors


def fit_lmm(
    data: Mapping[str, Any],
    *,
    outcome: str,
    random: Sequence[str],
    arm: str = "arm",
    covariates: Sequence[str] = (),
    log: bool = False,
    treatment: str,
    reference: str,
    start: Sequence[float] | None = None,
) -> LMMResult:
    """REML fit of `outcome ~ arm + covariates + (1|g₁) + (1|g₂) + …`; the arm effect with Satterthwaite df.

    `data` maps column names to equal-length 1-D arrays (a dict of lists or a pandas DataFrame).
    `random` lists grouping terms: a column name ("reader", "case") or a combination of columns
    ("reader:arm", "case:arm"), each given a random intercept. With `log=True` the outcome
    (e.g. reading time in seconds, > 0) is modelled on the log scale and the result reports the
    ratio of geometric means and the % reduction. Equals
    `lmerTest::lmer(y ~ arm + … + (1|g₁) + …, REML = TRUE)` with `summary()`'s Satterthwaite df.
    `start` (optional) is where the search for θ begins, one relative SD per term (`LMMResult.theta`).
    """
    y, random, factors = _outcome_and_factors(data, outcome=outcome, random=random, log=log)
    n = y.size
    X, names = design_columns(data, arm=arm, covariates=covariates, treatment=treatment,
                              reference=reference, n=n)
    p = X.shape[1]
    if n <= p:
        raise ValueError(f"{n} observations cannot support {p} fixed effects")
    with single_threaded_blas():
        return _fit(y, X, names, factors, random, log, start)


@dataclass(frozen=True)
class PooledFit:
    """Variance components of a REML fit with no arm term (a blinded look at pooled data)."""

    variance_components: dict[str, float]  # σ²θₖ² by grouping term
    residual_variance: float
    fixed_effects: dict[str, float]
    reml_criterion: float
    n_obs: int
    n_groups: dict[str, int]
    converged: bool
    method: str = "REML, no arm term (pooled over the arms)"


def fit_pooled_lmm(data: Mapping[str, Any], *, outcome: str, random: Sequence[str], covariates: Sequence[str] = (),
                   log: bool = False, start: Sequence[float] | None = None) -> PooledFit:
    """REML fit of `outcome ~ 1 + covariates + (1|g₁) + …`: the same model as `fit_lmm` without the arm, as
    `lme4::lmer(y ~ 1 + …)`. It needs no arm column, so a fit of masked or pooled data learns nothing of the arms."""
    y, random, factors = _outcome_and_factors(data, outcome=outcome, random=random, log=log)
    n = y.size
    cols: list[np.ndarray] = [np.ones(n)]
    names = ["(Intercept)"]
    _covariate_columns(data, covariates, n, cols, names)
    X = np.column_stack(cols)
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise ValueError(f"the fixed-effects design ({', '.join(names)}) is rank deficient")
    if n <= X.shape[1]:
        raise ValueError(f"{n} observations cannot support {X.shape[1]} fixed effects")
    with single_threaded_blas():
        core = _fit_core(y, X, factors, start)
    return PooledFit(
        variance_components={term: float(core.sigma2 * t * t) for term, t in zip(random, core.theta)},
        residual_variance=float(core.sigma2),
        fixed_effects={nm: float(b) for nm, b in zip(names, core.beta)},
        reml_criterion=float(core.reml),
        n_obs=int(n),
        n_groups={term: int(m) for term, (_, m) in zip(random, factors)},
        converged=core.converged,
    )


@dataclass
class _Core:
    problem: _REML
    theta: np.ndarray
    beta: np.ndarray
    cov: np.ndarray
    sigma2: float
    reml: float
    converged: bool

    @property
    def varpar(self) -> np.ndarray:
        return np.concatenate([self.theta, [math.sqrt(self.sigma2)]])


def _fit_core(y: np.ndarray, X: np.ndarray, factors: list[tuple[np.ndarray, int]],
              start: Sequence[float] | None = None) -> _Core:
    n, p = X.shape
    problem = _REML(y, X, factors)
    theta, converged = _optimize_theta(problem, start)
    f = problem.factorize(theta)
    if f is None:
        raise RuntimeError("the REML fit failed: the system is not positive definite at the optimum")
    nu = n - p
    sigma2 = f.r2 / nu
    beta = scipy.linalg.solve_triangular(f.lx.T, f.ly, lower=False)
    beta[0] += problem.y_shift
    Rinv = scipy.linalg.solve_triangular(f.lx, np.eye(p), lower=True)   # R_X⁻ᵀ
    cov = sigma2 * (Rinv.T @ Rinv)
    reml = f.logdet_a + f.logdet_rx + nu * (1.0 + math.log(2.0 * math.pi * sigma2))
    return _Core(problem, theta, beta, cov, float(sigma2), float(reml), converged)


def _fit(y: np.ndarray, X: np.ndarray, names: list[str], factors: list[tuple[np.ndarray, int]],
         random: list[str], log: bool, start: Sequence[float] | None = None) -> LMMResult:
    n, _ = X.shape
    core = _fit_core(y, X, factors, start)
    beta, sigma2, theta = core.beta, core.sigma2, core.theta
    se_all = np.sqrt(np.diag(core.cov))
    j = 1  # the arm column
    df = _satterthwaite_df(core.problem, core.varpar, j)
    est, se = float(beta[j]), float(se_all[j])
    tstat = est / se
    pval = float(2.0 * stats.t.sf(abs(tstat), df))
    return LMMResult(
        estimate=est,
        se=se,
        statistic=float(tstat),
        df=float(df),
        pvalue=pval,
        log=bool(log),
        fixed_effects={nm: float(b) for nm, b in zip(names, beta)},
        fixed_effects_se={nm: float(s) for nm, s in zip(names, se_all)},
        variance_components={term: float(sigma2 * t * t) for term, t in zip(random, theta)},
        residual_variance=float(sigma2),
        reml_criterion=float(core.reml),
        n_obs=int(n),
        n_groups={term: int(m) for term, (_, m) in zip(random, factors)},
        theta=tuple(float(t) for t in theta),
        converged=core.converged,
    )


# --------------------------------------------------------------------------------------------
# Treatment × subgroup interaction


@dataclass(frozen=True)
class InteractionResult:
    """F test of a treatment × subgroup interaction (H₀: the arm effect is the same in every level of `by`).

    The model is `outcome ~ arm * by + covariates + (1|g₁) + …` (REML); the interaction coefficients
    are arm:level for every level of `by` but the first (sorted, R's reference level), and the F test
    of all of them together has the Satterthwaite denominator df of lmerTest's `anova()` (type III,
    which for this highest-order term tests exactly these coefficients).
    """

    by: str
    levels: tuple[str, ...]
    statistic: float                       # F
    df_numerator: int
    df_denominator: float                  # Satterthwaite (Kuznetsova et al. 2017)
    pvalue: float
    coefficients: dict[str, float]         # the interaction coefficients, named "<arm><treatment>:<by><level>"
    coefficients_se: dict[str, float]
    log: bool
    n_obs: int
    converged: bool
    method: str = "F test of the arm × subgroup interaction, REML, Satterthwaite denominator df (lmerTest anova)"

    def to_dict(self) -> dict[str, Any]:
        return {"by": self.by, "levels": list(self.levels), "statistic": self.statistic,
                "df_numerator": self.df_numerator, "df_denominator": self.df_denominator, "pvalue": self.pvalue,
                "coefficients": dict(self.coefficients), "coefficients_se": dict(self.coefficients_se),
                "log": self.log, "n_obs": self.n_obs, "converged": self.converged, "method": self.method}


def fit_lmm_interaction(
    data: Mapping[str, Any],
    *,
    outcome: str,
    random: Sequence[str],
    by: str,
    arm: str = "arm",
    covariates: Sequence[str] = (),
    log: bool = False,
    treatment: str,
    reference: str,
    start: Sequence[float] | None = None,
) -> InteractionResult:
    """The treatment × `by` interaction test: `lmerTest::anova(lmer(outcome ~ arm * by + covariates + (1|g) …))`.

    `by` is a column of subgroup labels (text; two or more levels). A covariate equal to `by` is
    its main effect already and is not repeated. `start`: as for fit_lmm.
    """
    y, random, factors = _outcome_and_factors(data, outcome=outcome, random=random, log=log)
    n = y.size
    labels = _column(data, by)
    if labels.shape != (n,):
        raise ValueError(f"column {by!r} has shape {labels.shape}, expected ({n},)")
    if labels.dtype.kind == "O" and any(v is None for v in labels):
        raise ValueError(f"subgroup column {by!r} has missing values")
    labels = labels.astype(str)
    levels = tuple(np.unique(labels).tolist())
    if len(levels) < 2:
        raise ValueError(f"subgroup column {by!r} has a single level: there is no interaction to test")
    others = [c for c in covariates if c != by]
    X, names = design_columns({**{c: _column(data, c) for c in [arm, *others]}, by: labels}, arm=arm,
                              covariates=[*others, by], treatment=treatment, reference=reference, n=n)
    arm_col = X[:, 1]
    inter = [(arm_col * (labels == lv)).astype(float) for lv in levels[1:]]
    inter_names = [f"{arm}{treatment}:{by}{lv}" for lv in levels[1:]]
    X = np.column_stack([X, *inter])
    names = [*names, *inter_names]
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise ValueError(f"the interaction design ({', '.join(names)}) is rank deficient: "
                         f"some level of {by!r} lacks one of the arms")
    if n <= X.shape[1]:
        raise ValueError(f"{n} observations cannot support {X.shape[1]} fixed effects")
    p = X.shape[1]
    k = len(inter)
    L = np.zeros((k, p))
    L[np.arange(k), np.arange(p - k, p)] = 1.0
    with single_threaded_blas():
        core = _fit_core(y, X, factors, start)
        F, q, ddf = _f_test(core.problem, core.varpar, core.beta, L)
    se = np.sqrt(np.diag(core.cov))
    pvalue = float(stats.f.sf(F, q, ddf)) if math.isfinite(F) and math.isfinite(ddf) else math.nan
    return InteractionResult(
        by=by, levels=levels, statistic=float(F), df_numerator=int(q), df_denominator=float(ddf), pvalue=pvalue,
        coefficients={nm: float(b) for nm, b in zip(inter_names, core.beta[p - k:])},
        coefficients_se={nm: float(s) for nm, s in zip(inter_names, se[p - k:])},
        log=bool(log), n_obs=int(n), converged=core.converged)


def _safe_exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf
