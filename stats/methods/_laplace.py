"""Laplace approximation for GLMMs with crossed random intercepts: the engine under stats/methods/glmm.py.

Model: a row's log-likelihood ℓᵢ(ηᵢ; φ) depends on the fixed parameters φ and on the linear
predictor ηᵢ = η_fix,ᵢ(φ) + Σₖ θₖ u_{k, l_k(i)}, with one spherical random effect u ~ N(0, I) per
level of each grouping factor k and θₖ its standard deviation (lme4's relative covariance factor
Λ_θ for scalar intercepts; Bates, Mächler, Bolker & Walker 2015, J. Stat. Softw. 67(1), §3 and
§5 for the GLMM). With A = ZΛ_θ, the negative log-likelihood is approximated by Laplace's method
(Breslow & Clayton 1993, JASA 88:9–25, §2; the objective `glmer(nAGQ = 1)` and, for several random
terms, `ordinal::clmm` minimise):

    f(φ, θ) = −Σᵢ ℓᵢ(η̂ᵢ) + ½ ‖û‖² + ½ log det H,    H = I + Aᵀ W A,  W = diag(−ℓ''ᵢ(η̂ᵢ)),

at the conditional mode û = argmax Σ ℓᵢ − ½‖u‖², found by Newton's method (penalised iteratively
reweighted least squares; ℓ is concave in η for the logit and cumulative-logit links, so the
iteration converges from any start). W is the observed information, which for a non-canonical
model (cumulative logit) is what ordinal's Laplace uses (Christensen, "ordinal", clmm).

The gradient of f is exact: with hᵢ = aᵢᵀH⁻¹aᵢ (aᵢ the row of A), the envelope theorem for û and
the implicit derivative dû/dψ = −H⁻¹ ∂(u − Aᵀℓ')/∂ψ, one extra solve s = H⁻¹ c with
c = ½ Aᵀ(h ∘ −ℓ''') carries the dependence of log det H on û (see `LaplaceModel.evaluate`).

Structure: every row has exactly one level of each factor, so a factor's own block of H is
diagonal. Factors are eliminated one after the other with diagonal pivots (a Schur complement per
factor) for as long as the next factor's block stays diagonal after the fill of the previous ones
(largest first, as in lmm.py); the few levels left (readers, experts) form a small dense block,
factored by LAPACK. The entries of H⁻¹ on the pattern of ZᵀZ, needed for hᵢ, come from the same
factorization by selected inversion (Takahashi, Fagan & Chin 1973): back-substitution of
H⁻¹ = [[D⁻¹ + D⁻¹BS⁻¹BᵀD⁻¹, −D⁻¹BS⁻¹], [·, S⁻¹]] through the stages. The numeric work is index
arithmetic fixed once per data set (numpy bincount), independent of θ, φ and the weights.
The implementation is ours from these equations (lme4 and ordinal are GPL; none of their code is used).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg.lapack
import scipy.sparse as sp
from scipy.special import expit

__all__ = ["CrossedIntercepts", "LaplaceModel", "BernoulliLogit", "CumulativeLogit",
           "minimize", "hessian_from_gradient"]

_potrf = scipy.linalg.lapack.dpotrf
_potri = scipy.linalg.lapack.dpotri
_potrs = scipy.linalg.lapack.dpotrs

# Below this many levels left, the remaining block is factored densely rather than eliminated further.
_SMALL_REST = 48


# --------------------------------------------------------------------------------------------
# The random-effects system H = I + Λ Zᵀ W Z Λ: symbolic plan once, numeric factorization per call


@dataclass
class _StagePlan:
    start: int
    stop: int
    diag_pos: np.ndarray      # (m,) position of (l, l)
    nbr_idx: np.ndarray       # (m, kmax) neighbour level (new order), padding → q (a zero slot)
    nbr_pos: np.ndarray       # (m, kmax) position of (l, neighbour), padding → the dummy slot
    nbr_pos_t: np.ndarray     # (m, kmax) position of (neighbour, l)
    upd_pos: np.ndarray       # (m, kmax, kmax) position of (neighbour a, neighbour b)


class CrossedIntercepts:
    """Symbolic analysis of crossed random intercepts: level ordering, fill pattern and index maps."""

    def __init__(self, codes: Sequence[np.ndarray], nlev: Sequence[int]):
        self.K = len(codes)
        self.nlev = [int(m) for m in nlev]
        n = int(codes[0].shape[0])
        self.n = n
        offsets = np.concatenate([[0], np.cumsum(self.nlev)]).astype(np.int64)
        q = int(offsets[-1])
        self.q = q
        glob = np.column_stack([np.asarray(c, dtype=np.int64) + offsets[k] for k, c in enumerate(codes)])
        order = self._plan(glob, offsets)
        # new position of every original level; factors stay contiguous, in `order`
        perm = np.concatenate([np.arange(offsets[k], offsets[k + 1]) for k in order])
        newpos = np.empty(q, dtype=np.int64)
        newpos[perm] = np.arange(q)
        self.idx = newpos[glob]                                   # (n, K) level of each row, per factor
        self.factor_of = np.empty(q, dtype=np.int64)             # factor of each level (new order)
        for k in range(self.K):
            self.factor_of[newpos[offsets[k]:offsets[k + 1]]] = k
        self.factor_start = [int(newpos[offsets[k]]) for k in range(self.K)]
        self._build(order)

    # ---- symbolic ------------------------------------------------------------------------

    def _indicator(self, glob: np.ndarray) -> sp.csr_matrix:
        n, K = glob.shape
        return sp.csr_matrix((np.ones(n * K), (np.repeat(np.arange(n), K), glob.reshape(-1))),
                             shape=(n, self.q))

    def _plan(self, glob: np.ndarray, offsets: np.ndarray) -> list[int]:
        """Factors in elimination order (the eliminated ones first), and the fill pattern `self._pattern`.

        A factor is eliminated while its block of the current (filled) pattern is diagonal, the
        largest such factor first; the pattern is kept on |entries|, so "diagonal" holds for all θ, W.
        """
        Z = self._indicator(glob)
        P = (Z.T @ Z).tocsr()
        P.data[:] = 1.0
        remaining = list(range(self.K))
        eliminated: list[int] = []
        while remaining and sum(self.nlev[k] for k in remaining) > _SMALL_REST:
            eligible = []
            for k in remaining:
                block = P[offsets[k]:offsets[k + 1], offsets[k]:offsets[k + 1]].tocoo()
                if np.all(block.row == block.col):
                    eligible.append(k)
            if not eligible:
                break
            k = max(eligible, key=lambda j: (self.nlev[j], -j))
            remaining.remove(k)
            mask = np.zeros(self.q)
            for j in remaining:
                mask[offsets[j]:offsets[j + 1]] = 1.0
            off = P[offsets[k]:offsets[k + 1]] @ sp.diags(mask)
            P = (P + off.T @ off).tocsr()
            P.data[:] = 1.0
            eliminated.append(k)
        self._pattern = P
        self._eliminated = eliminated
        self._remaining = remaining
        self._offsets = offsets
        return eliminated + remaining

    def _build(self, order: list[int]) -> None:
        offsets = self._offsets
        perm = np.concatenate([np.arange(offsets[k], offsets[k + 1]) for k in order])
        P = self._pattern[perm][:, perm].tocsr()
        q = self.q
        self.rest_start = int(sum(self.nlev[k] for k in self._eliminated))
        qs, qr = self.rest_start, q - self.rest_start
        if qr:
            dense = sp.csr_matrix(np.ones((qr, qr)))
            P = (P + sp.bmat([[sp.csr_matrix((qs, qs)), None], [None, dense]], format="csr")).tocsr()
        P.data[:] = 1.0
        P.sort_indices()
        rows = np.repeat(np.arange(q, dtype=np.int64), np.diff(P.indptr))
        self._keys = rows * q + P.indices.astype(np.int64)
        self.nnz = int(self._keys.size)
        self.dummy = self.nnz                      # an extra slot: padding reads 0, writes are discarded

        def pos(i: np.ndarray, j: np.ndarray) -> np.ndarray:
            key = np.asarray(i, dtype=np.int64) * q + np.asarray(j, dtype=np.int64)
            p = np.searchsorted(self._keys, key)
            if not np.all(self._keys[np.minimum(p, self.nnz - 1)] == key):
                raise AssertionError("an entry outside the symbolic pattern")
            return p

        self.diag_all = pos(np.arange(q), np.arange(q))
        self.row_pos = pos(self.idx[:, :, None], self.idx[:, None, :])     # (n, K, K)
        self.stages: list[_StagePlan] = []
        start = 0
        for k in self._eliminated:
            stop = start + self.nlev[k]
            levels = np.arange(start, stop)
            sub = P[start:stop]
            nbrs = [sub.indices[sub.indptr[i]:sub.indptr[i + 1]] for i in range(stop - start)]
            nbrs = [c[c >= stop] for c in nbrs]
            kmax = max((c.size for c in nbrs), default=0)
            nbr_idx = np.full((stop - start, kmax), q, dtype=np.int64)
            for i, c in enumerate(nbrs):
                nbr_idx[i, :c.size] = c
            valid = nbr_idx < q
            lv = np.broadcast_to(levels[:, None], nbr_idx.shape)
            nbr_pos = np.full(nbr_idx.shape, self.dummy, dtype=np.int64)
            nbr_pos_t = np.full(nbr_idx.shape, self.dummy, dtype=np.int64)
            nbr_pos[valid] = pos(lv[valid], nbr_idx[valid])
            nbr_pos_t[valid] = pos(nbr_idx[valid], lv[valid])
            pair_valid = valid[:, :, None] & valid[:, None, :]
            ia = np.broadcast_to(nbr_idx[:, :, None], pair_valid.shape)
            ib = np.broadcast_to(nbr_idx[:, None, :], pair_valid.shape)
            upd_pos = np.full(pair_valid.shape, self.dummy, dtype=np.int64)
            upd_pos[pair_valid] = pos(ia[pair_valid], ib[pair_valid])
            self.stages.append(_StagePlan(start, stop, pos(levels, levels), nbr_idx, nbr_pos,
                                          nbr_pos_t, upd_pos))
            start = stop
        r = np.arange(qs, q)
        self.rest_pos = pos(np.repeat(r, qr), np.tile(r, qr)).reshape(qr, qr)

    # ---- numeric -------------------------------------------------------------------------

    def factor(self, theta: np.ndarray, w: np.ndarray) -> _Factor:
        """Factorization of H = I + Λ Zᵀ diag(w) Z Λ at the SDs θ (original factor order), w ≥ 0."""
        tt = np.outer(theta, theta)
        val = np.bincount(self.row_pos.reshape(-1), weights=(w[:, None, None] * tt[None]).reshape(-1),
                          minlength=self.nnz + 1)
        val[self.diag_all] += 1.0
        val[self.dummy] = 0.0
        pivots, offs = [], []
        for st in self.stages:
            d = val[st.diag_pos]
            B = val[st.nbr_pos]
            if B.shape[1]:
                U = (B[:, :, None] * (B / d[:, None])[:, None, :]).reshape(-1)
                val -= np.bincount(st.upd_pos.reshape(-1), weights=U, minlength=self.nnz + 1)
                val[self.dummy] = 0.0
            pivots.append(d)
            offs.append(B)
        logdet = float(sum(np.sum(np.log(d)) for d in pivots))
        chol = None
        if self.rest_pos.size:
            R = val[self.rest_pos]
            chol, info = _potrf(R, lower=1, clean=1)
            if info != 0:
                raise np.linalg.LinAlgError("the random-effects system is not positive definite")
            logdet += 2.0 * float(np.sum(np.log(np.diag(chol))))
        return _Factor(self, pivots, offs, chol, logdet)


class _Factor:
    def __init__(self, plan: CrossedIntercepts, pivots, offs, chol, logdet: float):
        self.plan, self.pivots, self.offs, self.chol, self.logdet = plan, pivots, offs, chol, logdet

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """H⁻¹ rhs (levels in the plan's order)."""
        plan = self.plan
        q = plan.q
        r = np.zeros(q + 1)
        r[:q] = rhs
        for st, d, B in zip(plan.stages, self.pivots, self.offs):
            z = r[st.start:st.stop] / d
            if B.shape[1]:
                r -= np.bincount(st.nbr_idx.reshape(-1), weights=(B * z[:, None]).reshape(-1), minlength=q + 1)
                r[q] = 0.0
        x = np.zeros(q + 1)
        if self.chol is not None:
            xr, info = _potrs(self.chol, r[plan.rest_start:q], lower=1)
            x[plan.rest_start:q] = xr
        for st, d, B in zip(reversed(plan.stages), reversed(self.pivots), reversed(self.offs)):
            acc = np.sum(B * x[st.nbr_idx], axis=1) if B.shape[1] else 0.0
            x[st.start:st.stop] = (r[st.start:st.stop] - acc) / d
        return x[:q]

    def selected_inverse(self) -> np.ndarray:
        """H⁻¹ on the symbolic pattern (positions as CrossedIntercepts' keys; one trailing zero slot)."""
        plan = self.plan
        sinv = np.zeros(plan.nnz + 1)
        if self.chol is not None:
            inv, info = _potri(self.chol, lower=1)
            inv = np.tril(inv) + np.tril(inv, -1).T
            sinv[plan.rest_pos] = inv
        for st, d, B in zip(reversed(plan.stages), reversed(self.pivots), reversed(self.offs)):
            if B.shape[1]:
                S = sinv[st.upd_pos]                                   # (m, kmax, kmax)
                T = np.einsum("la,lab->lb", B, S)
                sinv[st.nbr_pos] = -T / d[:, None]
                sinv[st.nbr_pos_t] = -T / d[:, None]
                sinv[plan.dummy] = 0.0
                sinv[st.diag_pos] = 1.0 / d + np.sum(B * T, axis=1) / d**2
            else:
                sinv[st.diag_pos] = 1.0 / d
        return sinv


# --------------------------------------------------------------------------------------------
# Row models: ℓ(η; φ) and the derivatives the Laplace objective and its gradient need


class BernoulliLogit:
    """0/1 outcome, logit link: ℓ = yη − log(1 + e^η), η = Xβ + random effects (φ = β)."""

    def __init__(self, y: np.ndarray, X: np.ndarray):
        self.y = y.astype(float)
        self.X = X
        self.n_fixed = X.shape[1]

    def valid(self, phi: np.ndarray) -> bool:
        return bool(np.all(np.isfinite(phi)))

    def eta_fixed(self, phi: np.ndarray) -> np.ndarray:
        return self.X @ phi

    def terms(self, phi: np.ndarray, eta: np.ndarray) -> dict[str, np.ndarray]:
        mu = expit(eta)
        # log(1 + e^η) without overflow
        softplus = np.maximum(eta, 0.0) + np.log1p(np.exp(-np.abs(eta)))
        v = mu * (1.0 - mu)
        return {"l": self.y * eta - softplus, "l1": self.y - mu, "l2": -v, "mu": mu}

    def third(self, t: dict[str, np.ndarray]) -> np.ndarray:
        mu = t["mu"]
        return -mu * (1.0 - mu) * (1.0 - 2.0 * mu)

    def fixed_gradient(self, t: dict[str, np.ndarray], l3: np.ndarray, h: np.ndarray, As: np.ndarray) -> np.ndarray:
        # per row: −∂ℓ/∂η − ½ h ∂ℓ''/∂η + (As) ∂ℓ'/∂η, then the chain rule ∂η/∂β = x
        omega = -t["l1"] - 0.5 * h * l3 + As * t["l2"]
        return self.X.T @ omega


class CumulativeLogit:
    """Ordinal outcome y ∈ {0…J−1}: logit P(Y ≤ j) = αⱼ − η, η = Xβ + random effects (φ = (α, β)).

    This is ordinal::clmm's sign convention (Christensen): β > 0 moves scores up.
    """

    def __init__(self, y: np.ndarray, n_cat: int, X: np.ndarray):
        self.y = y.astype(np.int64)
        self.J = int(n_cat)
        self.X = X
        self.p = X.shape[1]
        self.n_fixed = self.J - 1 + self.p
        self.has_hi = self.y < self.J - 1
        self.has_lo = self.y > 0

    def split(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return phi[:self.J - 1], phi[self.J - 1:]

    def valid(self, phi: np.ndarray) -> bool:
        alpha, _ = self.split(phi)
        return bool(np.all(np.isfinite(phi)) and np.all(np.diff(alpha) > 0))

    def eta_fixed(self, phi: np.ndarray) -> np.ndarray:
        _, beta = self.split(phi)
        return self.X @ beta if self.p else np.zeros(self.y.size)

    def terms(self, phi: np.ndarray, eta: np.ndarray) -> dict[str, np.ndarray]:
        alpha, _ = self.split(phi)
        ext = np.r_[-np.inf, alpha, np.inf]
        a = ext[self.y + 1] - eta          # upper bound of the observed category, minus η
        b = ext[self.y] - eta              # lower bound
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            # F(±x) and log F(±x) from t = e^(−|x|): stable in both tails, exact at ±∞
            ta, tb = np.exp(-np.abs(a)), np.exp(-np.abs(b))
            ia, ib = 1.0 / (1.0 + ta), 1.0 / (1.0 + tb)
            pa, pb = a >= 0, b >= 0
            Fa = np.where(pa, ia, ta * ia)
            Fna = np.where(pa, ta * ia, ia)
            Fb = np.where(pb, ib, tb * ib)
            Fnb = np.where(pb, tb * ib, ib)
            log_Fa = np.where(pa, -np.log1p(ta), a - np.log1p(ta))
            log_Fnb = np.where(pb, -b - np.log1p(tb), -np.log1p(tb))
            gap = -np.expm1(b - a)                       # 1 − e^(b − a)
            # P = F(a) − F(b) = F(a) F(−b) (1 − e^(b − a))
            logp = log_Fa + log_Fnb + np.log(gap)
            ra = Fna / (Fnb * gap)                       # f(a) / P
            rb = Fb / (Fa * gap)                         # f(b) / P
        ga, gb = 1.0 - 2.0 * Fa, 1.0 - 2.0 * Fb          # f'/f
        s1 = ra - rb
        s2 = ra * ga - rb * gb
        return {"l": logp, "l1": -s1, "l2": s2 - s1 * s1, "ra": ra, "rb": rb, "Fa": Fa, "Fb": Fb,
                "ga": ga, "gb": gb, "s1": s1, "s2": s2}

    def third(self, t: dict[str, np.ndarray]) -> np.ndarray:
        qa = 1.0 - 6.0 * t["Fa"] + 6.0 * t["Fa"] ** 2     # f''/f
        qb = 1.0 - 6.0 * t["Fb"] + 6.0 * t["Fb"] ** 2
        t["qa"], t["qb"] = qa, qb
        s1, s2 = t["s1"], t["s2"]
        s3 = t["ra"] * qa - t["rb"] * qb
        return -s3 + 3.0 * s1 * s2 - 2.0 * s1**3

    def fixed_gradient(self, t: dict[str, np.ndarray], l3: np.ndarray, h: np.ndarray, As: np.ndarray) -> np.ndarray:
        ra, rb, s1, s2 = t["ra"], t["rb"], t["s1"], t["s2"]
        # partial derivatives in the two bounds a = α_y − η and b = α_{y−1} − η
        l1_a = -ra * t["ga"] + s1 * ra
        l1_b = rb * t["gb"] - s1 * rb
        l2_a = ra * t["qa"] - s2 * ra + 2.0 * s1 * l1_a
        l2_b = -rb * t["qb"] + s2 * rb + 2.0 * s1 * l1_b
        om_a = -ra - 0.5 * h * l2_a + As * l1_a
        om_b = rb - 0.5 * h * l2_b + As * l1_b
        k = self.J - 1
        g_alpha = (np.bincount(self.y[self.has_hi], weights=om_a[self.has_hi], minlength=k)[:k]
                   + np.bincount(self.y[self.has_lo] - 1, weights=om_b[self.has_lo], minlength=k)[:k])
        omega = -t["l1"] - 0.5 * h * l3 + As * t["l2"]
        g_beta = self.X.T @ omega if self.p else np.zeros(0)
        return np.r_[g_alpha, g_beta]


# --------------------------------------------------------------------------------------------
# The Laplace objective


class LaplaceModel:
    """f(ψ) = −log L_Laplace(ψ) for ψ = (φ, θ); `evaluate` gives f and, on request, its exact gradient."""

    def __init__(self, family, re: CrossedIntercepts):
        self.family = family
        self.re = re
        self.K = re.K
        self.n_par = family.n_fixed + re.K
        self.u = np.zeros(re.q)          # warm start of the conditional modes
        self.n_eval = 0

    def _a_times(self, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
        return u[self.re.idx] @ theta

    def _at_times(self, theta: np.ndarray, v: np.ndarray) -> np.ndarray:
        q = self.re.q
        out = np.zeros(q)
        for k in range(self.K):
            out += theta[k] * np.bincount(self.re.idx[:, k], weights=v, minlength=q)
        return out

    def modes(self, phi: np.ndarray, theta: np.ndarray, *, tol: float = 1e-10, max_iter: int = 60):
        """Conditional modes û by damped Newton, and the state at û (terms, factorization).

        Stops when the Newton step is below `tol` in every coordinate (u is on the N(0, 1) scale):
        the gradient of f depends on û to first order, so a relative criterion on the objective
        (which sees only the square of the step) would blur finite differences of the gradient.
        """
        fam = self.family
        eta_fix = fam.eta_fixed(phi)
        u = self.u.copy()

        def objective(u):
            t = fam.terms(phi, eta_fix + self._a_times(theta, u))
            val = -float(np.sum(t["l"])) + 0.5 * float(u @ u)
            return val, t

        val, t = objective(u)
        if not math.isfinite(val):
            u = np.zeros_like(u)
            val, t = objective(u)
            if not math.isfinite(val):
                return None
        for _ in range(max_iter):
            fac = self.re.factor(theta, -t["l2"])
            g = self._at_times(theta, t["l1"]) - u            # ascent direction of Σℓ − ½‖u‖²
            step = fac.solve(g)
            size = float(np.max(np.abs(step), initial=0.0))
            if size < tol:
                self.u = u
                return u, t, fac, val
            if size < 1e-4:
                # Close to the mode Newton's step is exact to O(step²); a line search on the objective
                # would only see rounding there (its decrease is O(step²) ≈ 1e-18 relative).
                u = u + step
                val, t = objective(u)
                if not math.isfinite(val):
                    return None
                continue
            s = 1.0
            while s > 1e-10:
                un = u + s * step
                vn, tn = objective(un)
                if vn <= val:
                    break
                s /= 2.0
            else:
                self.u = u
                return u, t, fac, val     # no decrease along Newton's direction: optimal to rounding
            u, val, t = un, vn, tn
        return None

    def evaluate(self, psi: np.ndarray, *, gradient: bool = False):
        self.n_eval += 1
        fam, re = self.family, self.re
        phi, theta = psi[:fam.n_fixed], psi[fam.n_fixed:]
        bad = (math.inf, None) if gradient else math.inf
        if not (fam.valid(phi) and np.all(np.isfinite(theta))):
            return bad
        found = self.modes(phi, theta)
        if found is None:
            return bad
        u, t, fac, val = found
        value = val + 0.5 * fac.logdet
        if not gradient:
            return value
        sinv = fac.selected_inverse()
        Minv = sinv[re.row_pos]                               # (n, K, K): H⁻¹ at each row's levels
        Mt = Minv @ theta                                     # (n, K)
        h = Mt @ theta                                        # leverages aᵢᵀ H⁻¹ aᵢ
        l3 = fam.third(t)
        w = -t["l2"]
        c = 0.5 * self._at_times(theta, -h * l3)
        s = fac.solve(c)
        As = self._a_times(theta, s)
        g_phi = fam.fixed_gradient(t, l3, h, As)
        V = u[re.idx]                                         # (n, K): ∂η/∂θₖ
        S = s[re.idx]
        l1 = t["l1"]
        g_theta = (-(l1 @ V) + 0.5 * ((-h * l3) @ V) + (w[:, None] * Mt).sum(axis=0)
                   + l1 @ S - (As * w) @ V)
        return value, np.r_[g_phi, g_theta]


# --------------------------------------------------------------------------------------------
# Optimisation


def hessian_from_gradient(grad: Callable[[np.ndarray], np.ndarray | None], x: np.ndarray,
                          h: float = 1e-4) -> np.ndarray:
    """Central differences of an exact gradient, symmetrised (NaN if the gradient is undefined nearby)."""
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


def _positive_inverse(H: np.ndarray) -> np.ndarray:
    evals, evecs = np.linalg.eigh(H)
    floor = max(1e-8 * float(np.max(np.abs(evals))), 1e-10)
    evals = np.maximum(np.abs(evals), floor)
    return (evecs / evals) @ evecs.T


def minimize(fg: Callable[[np.ndarray], tuple[float, np.ndarray | None]], x0: np.ndarray, *,
             max_iter: int = 300, tol: float = 1e-11) -> tuple[np.ndarray, float, bool]:
    """Quasi-Newton (BFGS) with a backtracking line search on an objective with an exact gradient.

    The inverse-Hessian metric starts from a finite-difference Hessian of the gradient (the
    objective is a smooth function of a few parameters), and the iteration stops when the Newton
    decrement gᵀ B g falls below `tol`·max(1, |f|). Returns (x, f(x), converged).
    """
    x = np.asarray(x0, dtype=float).copy()
    n = x.size
    fx, gx = fg(x)
    if gx is None or not math.isfinite(fx):
        raise RuntimeError("the Laplace objective cannot be evaluated at its starting values")

    def fresh_metric(at: np.ndarray) -> np.ndarray:
        H = hessian_from_gradient(lambda z: fg(z)[1], at)
        if not np.all(np.isfinite(H)):
            return np.eye(n) / max(1.0, float(np.max(np.abs(gx))))
        return _positive_inverse(H)

    Binv = fresh_metric(x)
    restarted = False
    for _ in range(max_iter):
        step = -Binv @ gx
        decrement = float(-gx @ step)
        if 0 <= decrement < tol * max(1.0, abs(fx)):
            return x, fx, True
        if decrement < 0:
            Binv = fresh_metric(x)
            continue
        t = 1.0
        while t > 1e-12:
            xn = x + t * step
            fn, gn = fg(xn)
            if gn is not None and fn <= fx - 1e-4 * t * decrement:
                break
            t /= 2.0
        else:
            # no sufficient decrease: refresh the metric once; then we are at the optimum to rounding
            if not restarted:
                restarted = True
                Binv = fresh_metric(x)
                continue
            return x, fx, decrement < 1e-7 * max(1.0, abs(fx))
        restarted = False
        s, yv = xn - x, gn - gx
        sy = float(s @ yv)
        if sy > 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(yv)):
            rho = 1.0 / sy
            V = np.eye(n) - rho * np.outer(s, yv)
            Binv = V @ Binv @ V.T + rho * np.outer(s, s)
        x, fx, gx = xn, fn, gn
    return x, fx, False
