"""Power and number of readers for the paired-parallel design, readers randomized to arms and crossed with cases.

Design (the paper's): `readers_per_arm` readers in each arm, each case reported once in each arm
by one reader of that arm (equal workloads), every report scored by `n_experts` experts. The arm
contrast Δ̂ of the LMM (random case, reader, expert and report = case:arm) is, in this balanced
design, the mean over cases of the case's difference of expert-mean scores. The case and expert
intercepts cancel in that difference (every case is read in both arms; every expert scores both
reports); the reader intercepts do not, because the two arms are different readers:

    Var(Δ̂) = 2σ²_reader / k  +  (2σ²_report + 2σ²_residual / E) / n          (k readers per arm, n cases)

which is the split-plot variance of Obuchowski & Rockette (1995) and Hillis (2007) for readers
nested in tests. The reader term is estimated from the spread of readers within arms (2k − 2 df);
the case term from the case differences (n − 1 df). The test is a t with Satterthwaite df
(Kuznetsova, Brockhoff & Christensen 2017, as lmerTest computes it for the fit), approximated here
by the Welch–Satterthwaite combination of the two terms:

    df = Var(Δ̂)² / [ (2σ²_reader/k)² / (2k − 2) + (case term)² / (n − 1) ]

and power is that of a two-sided t on df with noncentrality Δ / √Var(Δ̂) (noncentral t). With no
reader variance this is exactly the paired t on the n case differences (statsmodels' TTestPower).
The fits' own Satterthwaite df run lower than this (median ≈ 16 against 21 for reading time and
≈ 14.5 against 22.5 for quality with 20 readers and 296 cases, bench/stats_power.py): the LMM
estimates the reader variance net of the case effects in each reader's cases, a subtraction that
costs df. At mid-range power that makes this analytic power ≈ 0.01–0.02 optimistic.
Power is bounded by the reader term: more cases cannot remove it, more readers do.

Reading time is the same contrast on the log scale (one read per report: the report and residual
terms are one), the effect being log(time ratio). Preference is approximated as stated in
`preference_power`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import integrate, special, stats

__all__ = [
    "VarianceComponents",
    "ArmContrastPower",
    "PreferencePower",
    "PairedParallelPower",
    "contrast_power",
    "quality_power",
    "time_power",
    "preference_power",
    "paired_parallel_power",
    "plan_power",
]

_MAX_READERS_PER_ARM = 10_000


@dataclass(frozen=True)
class VarianceComponents:
    """Variances (not SDs) of the random intercepts and the residual, on the analysis scale."""

    reader: float
    case: float = 0.0
    report: float = 0.0           # case:arm
    expert: float = 0.0
    residual: float = 0.0

    def __post_init__(self) -> None:
        for name in ("reader", "case", "report", "expert", "residual"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"variance component {name!r} must be finite and ≥ 0, got {value!r}")

    @classmethod
    def from_sds(cls, *, reader: float, case: float = 0.0, report: float = 0.0, expert: float = 0.0,
                 residual: float = 0.0) -> VarianceComponents:
        return cls(reader=reader**2, case=case**2, report=report**2, expert=expert**2, residual=residual**2)

    @classmethod
    def from_fit(cls, fit: Any) -> VarianceComponents:
        """From a pilot fit (stats.methods.lmm.LMMResult): terms "reader", "case", "case:arm", "expert"."""
        vc: Mapping[str, float] = fit.variance_components
        return cls(reader=vc.get("reader", 0.0), case=vc.get("case", 0.0), report=vc.get("case:arm", 0.0),
                   expert=vc.get("expert", 0.0), residual=fit.residual_variance)


def _check_design(n_cases: int, readers_per_arm: int, alpha: float) -> None:
    if n_cases < 2:
        raise ValueError(f"n_cases must be at least 2, got {n_cases}")
    if readers_per_arm < 2:
        raise ValueError(f"readers_per_arm must be at least 2 (the reader term has 2k − 2 df), got {readers_per_arm}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")


def _welch_satterthwaite(v_reader: float, df_reader: float, v_case: float, df_case: float) -> float:
    total = v_reader + v_case
    return total * total / (v_reader * v_reader / df_reader + v_case * v_case / df_case)


def _t_power(noncentrality: float, df: float, alpha: float) -> float:
    """Two-sided t test power from the noncentral t, computed as statsmodels' ttest_power does."""
    crit_upp = stats.t.isf(alpha / 2.0, df)
    crit_low = stats.t.ppf(alpha / 2.0, df)
    return float(1.0 - special.nctdtr(df, noncentrality, crit_upp) + special.nctdtr(df, noncentrality, crit_low))


def _smallest_readers(power_at: Callable[[int], float], target: float, max_per_arm: int) -> int | None:
    """Smallest k ≥ 2 with power_at(k) ≥ target, by bisection (power rises with k); None if unreachable."""
    if not 0 < target < 1:
        raise ValueError(f"target power must lie strictly between 0 and 1, got {target!r}")
    if power_at(2) >= target:
        return 2
    if power_at(max_per_arm) < target:
        return None
    lo, hi = 2, max_per_arm          # power_at(lo) < target ≤ power_at(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if power_at(mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi


class _ReadersNeeded:
    """What the power results of every endpoint share: the readers a target power needs, found by bisection over
    `at_readers` (the same design with another number of readers per arm; the cases unchanged)."""

    MAX_READERS_PER_ARM: int

    @property
    def n_readers(self) -> int:
        return 2 * self.readers_per_arm

    def readers_for_power(self, target: float = 0.8, *, max_readers_per_arm: int | None = None) -> int | None:
        """Total readers (both arms) for `target` power with these cases; None if the cases alone cannot reach it."""
        k = _smallest_readers(lambda k: self.at_readers(k).power, target,
                              max_readers_per_arm or self.MAX_READERS_PER_ARM)
        return None if k is None else 2 * k

    @property
    def readers_for_80(self) -> int | None:
        return self.readers_for_power(0.8)

    @property
    def readers_for_90(self) -> int | None:
        return self.readers_for_power(0.9)


@dataclass(frozen=True)
class ArmContrastPower(_ReadersNeeded):
    """Power of the two-sided t test of an arm contrast (LMM, readers nested in arms, crossed with cases)."""

    endpoint: str
    effect: float                        # Δ on the analysis scale (log scale for time)
    alpha: float
    n_cases: int
    readers_per_arm: int
    reader_variance: float               # σ²_reader
    case_difference_variance: float      # Var of a case's difference given its readers
    se: float                            # √Var(Δ̂)
    df: float                            # Welch–Satterthwaite
    noncentrality: float                 # Δ / se
    power: float
    method: str = "noncentral t; Welch–Satterthwaite df of reader (2k − 2) and case (n − 1) terms"

    MAX_READERS_PER_ARM = _MAX_READERS_PER_ARM

    def at_readers(self, readers_per_arm: int) -> ArmContrastPower:
        """The same design with another number of readers per arm (cases unchanged)."""
        return contrast_power(effect=self.effect, reader_variance=self.reader_variance,
                              case_difference_variance=self.case_difference_variance, n_cases=self.n_cases,
                              readers_per_arm=readers_per_arm, alpha=self.alpha, endpoint=self.endpoint)


def contrast_power(*, effect: float, reader_variance: float, case_difference_variance: float, n_cases: int,
                   readers_per_arm: int, alpha: float = 0.05, endpoint: str = "arm contrast") -> ArmContrastPower:
    """Power for Δ with Var(Δ̂) = 2 reader_variance / k + case_difference_variance / n (see the module docstring)."""
    _check_design(n_cases, readers_per_arm, alpha)
    if reader_variance < 0 or case_difference_variance < 0 or reader_variance + case_difference_variance == 0:
        raise ValueError("the variances must be ≥ 0 and not both 0")
    v_reader = 2.0 * reader_variance / readers_per_arm
    v_case = case_difference_variance / n_cases
    se = math.sqrt(v_reader + v_case)
    df = _welch_satterthwaite(v_reader, 2.0 * readers_per_arm - 2.0, v_case, n_cases - 1.0)
    nc = effect / se
    return ArmContrastPower(endpoint=endpoint, effect=float(effect), alpha=float(alpha), n_cases=int(n_cases),
                            readers_per_arm=int(readers_per_arm), reader_variance=float(reader_variance),
                            case_difference_variance=float(case_difference_variance), se=se, df=float(df),
                            noncentrality=float(nc), power=_t_power(nc, df, alpha))


def quality_power(*, n_cases: int, readers_per_arm: int, n_experts: int, components: VarianceComponents,
                  effect: float, alpha: float = 0.05) -> ArmContrastPower:
    """Quality score difference Δ (points), each report scored by `n_experts` experts."""
    if n_experts < 1:
        raise ValueError(f"n_experts must be at least 1, got {n_experts}")
    return contrast_power(effect=effect, reader_variance=components.reader,
                          case_difference_variance=2.0 * (components.report + components.residual / n_experts),
                          n_cases=n_cases, readers_per_arm=readers_per_arm, alpha=alpha, endpoint="quality")


def time_power(*, n_cases: int, readers_per_arm: int, components: VarianceComponents, time_ratio: float,
               alpha: float = 0.05) -> ArmContrastPower:
    """Reading time: `components` on the log scale, effect log(time_ratio) (ratio of geometric means)."""
    if time_ratio <= 0:
        raise ValueError(f"time_ratio must be positive, got {time_ratio!r}")
    # One read per report: a report intercept and the residual are the same term here.
    return contrast_power(effect=math.log(time_ratio), reader_variance=components.reader,
                          case_difference_variance=2.0 * (components.report + components.residual),
                          n_cases=n_cases, readers_per_arm=readers_per_arm, alpha=alpha, endpoint="reading time")


# --------------------------------------------------------------------------------------------
# Preference


def _bvn_cdf(h: float, k: float, rho: float) -> float:
    """P(Z₁ ≤ h, Z₂ ≤ k) for standard normals with correlation rho: one-dimensional quadrature, ~1e-10."""
    if rho >= 1.0 - 1e-12:
        return float(special.ndtr(min(h, k)))
    if rho <= -1.0 + 1e-12:
        return float(max(special.ndtr(h) + special.ndtr(k) - 1.0, 0.0))
    if abs(rho) < 1e-15:
        return float(special.ndtr(h) * special.ndtr(k))
    s = math.sqrt(1.0 - rho * rho)
    value, _ = integrate.quad(lambda x: math.exp(-0.5 * x * x) * special.ndtr((k - rho * x) / s),
                              -np.inf, h, epsabs=1e-13, epsrel=1e-11, limit=200)
    return value / math.sqrt(2.0 * math.pi)


def _vote_moments(effect: float, sd: float, band: float, rho: float, p: float) -> float:
    """E[z z'] for two votes whose latent differences correlate by rho; z = 1{T}(1 − p) − p 1{R}."""
    a = (band - effect) / sd          # T: X > band  ⇔ Z > a
    c = (-band - effect) / sd         # R: X < −band ⇔ Z < c
    p_tt = _bvn_cdf(-a, -a, rho)
    p_rr = _bvn_cdf(c, c, rho)
    p_tr = _bvn_cdf(-a, c, -rho)
    return (1.0 - p) ** 2 * p_tt - 2.0 * p * (1.0 - p) * p_tr + p * p * p_rr


@dataclass(frozen=True)
class PreferencePower(_ReadersNeeded):
    """Power of the test that the share of decisive votes preferring the treatment report is ½.

    Estimand: p = P(vote = treatment) / P(vote decisive), over all votes of all experts on all cases.
    Test: Wald t of p̂ − ½ with a variance that counts the clustering of votes in cases and in readers
    (a two-way, case- and reader-clustered SE, or the GLMM the analysis plan names), on Welch–Satterthwaite
    df of its reader part (2k − 2) and its case part (n − 1), as for the contrasts.
    """

    effect: float                 # latent quality difference δ (points)
    alpha: float
    n_cases: int
    readers_per_arm: int
    n_experts: int
    n_sites: int
    reader_variance: float        # latent quality, points²
    report_variance: float
    vote_sd: float
    tie_band: float
    p_treatment: float            # P(a vote prefers the treatment report)
    p_reference: float
    p_none: float
    decisive_share: float         # p
    se: float                     # SD of p̂ under the design
    df: float
    power: float
    method: str = ("votes = sign of a normal latent difference (tie band); delta-method variance of the ratio "
                   "with case and reader clustering; noncentral t")

    MAX_READERS_PER_ARM = 2_000

    def at_readers(self, readers_per_arm: int) -> PreferencePower:
        return preference_power(n_cases=self.n_cases, readers_per_arm=readers_per_arm, n_experts=self.n_experts,
                                components=VarianceComponents(reader=self.reader_variance,
                                                              report=self.report_variance),
                                effect=self.effect, vote_sd=self.vote_sd, tie_band=self.tie_band,
                                n_sites=self.n_sites, alpha=self.alpha)


def preference_power(*, n_cases: int, readers_per_arm: int, n_experts: int, components: VarianceComponents,
                     effect: float, vote_sd: float, tie_band: float, n_sites: int = 1,
                     alpha: float = 0.05) -> PreferencePower:
    """Power for the share of decisive votes (approximation stated below).

    Model (as stats.methods.simulation draws votes): expert e's vote on case c is the sign of
    X = D_c + ν, D_c = δ + reader_T − reader_R + report_T − report_R the latent quality difference
    of the two reports, ν ~ N(0, vote_sd²) the expert's noise, "none" when |X| ≤ tie_band. Then
    P(treatment) = Φ((δ − b)/s), P(reference) = Φ((−δ − b)/s), s² = 2σ²_reader + 2σ²_report + vote_sd².

    Approximation: p̂ = W / (W + L) linearised (delta method), p̂ − p ≈ Σ z_v / (N P_decisive) with
    z_v = 1{T}(1 − p) − p 1{R} (mean 0). Var Σ z_v sums E[z z'] over pairs of votes that share
    latent terms, from bivariate normal orthant probabilities: the other experts of the same case
    (correlation (2σ²_reader + 2σ²_report)/s²), cases that share one reader (σ²_reader/s²) or both
    (2σ²_reader/s²). With equal workloads m = n/k cases per reader, n(m − 1)/2 case pairs share a
    reader of a given arm, and, readers of the other arm being dealt within the site, a fraction
    (m − 1)/(n/n_sites − 1) of them share both. The reader-sharing pairs make the reader part of the
    variance. Other expert effects (e.g. an expert who favours one side) are not modelled.
    """
    _check_design(n_cases, readers_per_arm, alpha)
    if n_experts < 1 or n_sites < 1:
        raise ValueError("n_experts and n_sites must be at least 1")
    if vote_sd < 0 or tie_band < 0:
        raise ValueError("vote_sd and tie_band must be ≥ 0")
    var_d = 2.0 * components.reader + 2.0 * components.report
    s2 = var_d + vote_sd**2
    if s2 <= 0:
        raise ValueError("the latent difference has no variance: votes would be deterministic")
    s = math.sqrt(s2)
    p_t = float(special.ndtr((effect - tie_band) / s))
    p_r = float(special.ndtr((-effect - tie_band) / s))
    p_dec = p_t + p_r
    p = p_t / p_dec
    n, k, E = n_cases, readers_per_arm, n_experts
    m = n / k
    n_site = n / n_sites
    q = min(max((m - 1.0) / (n_site - 1.0), 0.0), 1.0) if n_site > 1 else 1.0
    var_z = (1.0 - p) ** 2 * p_t + p * p * p_r
    pairs_case = n * E * (E - 1) / 2.0
    pairs_one_reader = E * E * n * (m - 1.0) * (1.0 - q)
    pairs_both_readers = E * E * n * (m - 1.0) / 2.0 * q
    cov_case = _vote_moments(effect, s, tie_band, var_d / s2, p) if E > 1 else 0.0
    cov_one = _vote_moments(effect, s, tie_band, components.reader / s2, p)
    cov_both = _vote_moments(effect, s, tie_band, 2.0 * components.reader / s2, p)
    N = n * E
    scale = (N * p_dec) ** 2
    v_case = (N * var_z + 2.0 * pairs_case * cov_case) / scale
    v_reader = max(2.0 * (pairs_one_reader * cov_one + pairs_both_readers * cov_both) / scale, 0.0)
    se = math.sqrt(v_case + v_reader)
    df = _welch_satterthwaite(v_reader, 2.0 * k - 2.0, v_case, n - 1.0)
    return PreferencePower(effect=float(effect), alpha=float(alpha), n_cases=int(n), readers_per_arm=int(k),
                           n_experts=int(E), n_sites=int(n_sites), reader_variance=float(components.reader),
                           report_variance=float(components.report), vote_sd=float(vote_sd),
                           tie_band=float(tie_band), p_treatment=p_t, p_reference=p_r, p_none=1.0 - p_dec,
                           decisive_share=p, se=se, df=float(df), power=_t_power((p - 0.5) / se, df, alpha))


# --------------------------------------------------------------------------------------------
# All three endpoints of a trial


@dataclass(frozen=True)
class PairedParallelPower:
    """Power of the three endpoints of one paired-parallel design."""

    quality: ArmContrastPower
    time: ArmContrastPower
    preference: PreferencePower

    def readers_needed(self) -> dict[str, dict[str, int | None]]:
        """Total readers for 80 % and 90 % power, by endpoint (None: not reachable with these cases)."""
        return {name: {"80%": getattr(self, name).readers_for_80, "90%": getattr(self, name).readers_for_90}
                for name in ("quality", "time", "preference")}


def paired_parallel_power(*, n_cases: int, readers_per_arm: int, n_experts: int,
                          quality_components: VarianceComponents, quality_effect: float,
                          time_components: VarianceComponents, time_ratio: float,
                          vote_sd: float, tie_band: float, n_sites: int = 1,
                          alpha: float = 0.05) -> PairedParallelPower:
    """Quality, reading time and preference power for one design. Preference uses the quality
    components and effect as its latent scale (votes are drawn from the latent report qualities)."""
    return PairedParallelPower(
        quality=quality_power(n_cases=n_cases, readers_per_arm=readers_per_arm, n_experts=n_experts,
                              components=quality_components, effect=quality_effect, alpha=alpha),
        time=time_power(n_cases=n_cases, readers_per_arm=readers_per_arm, components=time_components,
                        time_ratio=time_ratio, alpha=alpha),
        preference=preference_power(n_cases=n_cases, readers_per_arm=readers_per_arm, n_experts=n_experts,
                                    components=quality_components, effect=quality_effect, vote_sd=vote_sd,
                                    tie_band=tie_band, n_sites=n_sites, alpha=alpha),
    )


# --------------------------------------------------------------------------------------------
# The power section of an analysis plan


POWER_DESIGNS = ("paired_parallel",)


def _contrast_summary(res: ArmContrastPower) -> dict[str, Any]:
    return {"power": res.power, "effect": res.effect, "se": res.se, "df": res.df, "noncentrality": res.noncentrality,
            "n_readers": res.n_readers, "readers_for_80": res.readers_for_80, "readers_for_90": res.readers_for_90,
            "method": res.method}


def plan_power(inputs: Mapping[str, Any], *, design: str) -> dict[str, Any]:
    """Power of quality, reading time and preference, and the readers needed for 80 % and 90 %, from a plan's
    power inputs (stats.plan: counts, α, variance components as SDs on each analysis scale); JSON-ready.

    Each endpoint is computed on its own: one whose inputs cannot give a power (no variance at all) says why
    and leaves the others standing. Only the paired-parallel design has an analytic power here.
    """
    if design not in POWER_DESIGNS:
        return {"status": "not_available", "design": design,
                "reason": "the analytic power covers the paired-parallel design (readers nested in arms, every case "
                          "read once in each arm); simulate other designs with stats.methods.simulation"}
    n, k, experts = int(inputs["n_cases"]), int(inputs["readers_per_arm"]), int(inputs["n_experts"])
    sites, alpha = int(inputs.get("n_sites", 1)), float(inputs["alpha"])
    q, t, p = inputs["quality"], inputs["time"], inputs["preference"]
    quality_vc = VarianceComponents.from_sds(reader=q["reader_sd"], report=q["report_sd"], residual=q["residual_sd"])
    time_vc = VarianceComponents.from_sds(reader=t["reader_sd"], report=t["report_sd"], residual=t["residual_sd"])
    out: dict[str, Any] = {"status": "ok", "design": design, "n_cases": n, "readers_per_arm": k, "n_experts": experts,
                           "alpha": alpha, "computed_with": "stats.methods.power"}
    jobs: dict[str, Callable[[], dict[str, Any]]] = {
        "quality": lambda: _contrast_summary(quality_power(n_cases=n, readers_per_arm=k, n_experts=experts,
                                                           components=quality_vc, effect=q["effect"], alpha=alpha)),
        "time": lambda: {**_contrast_summary(time_power(n_cases=n, readers_per_arm=k, components=time_vc,
                                                        time_ratio=t["time_ratio"], alpha=alpha)),
                         "time_ratio": t["time_ratio"]},
        "preference": lambda: _preference_summary(preference_power(
            n_cases=n, readers_per_arm=k, n_experts=experts, components=quality_vc, effect=q["effect"],
            vote_sd=p["vote_sd"], tie_band=p["tie_band"], n_sites=sites, alpha=alpha)),
    }
    for name, job in jobs.items():
        try:
            out[name] = {"status": "ok", **job()}
        except ValueError as exc:
            out[name] = {"status": "not_computable", "reason": str(exc)}
    return out


def _preference_summary(res: PreferencePower) -> dict[str, Any]:
    return {"power": res.power, "decisive_share": res.decisive_share, "p_none": res.p_none, "se": res.se,
            "df": res.df, "n_readers": res.n_readers, "readers_for_80": res.readers_for_80,
            "readers_for_90": res.readers_for_90, "method": res.method}
