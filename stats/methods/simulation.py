"""Seeded simulator of a paired-parallel trial whose truth we set, with every source of variation the real data have.

The design is the paper's (Janus-Pro-CXR): readers are randomized 1:1 to the arms within their site
(blocks of two), every case belongs to one site and is reported once in each arm by a reader of that
site and arm, and every expert scores every report and votes on every case. Type-I error and coverage
of an analysis can only be judged on data that carry the variation the analysis must account for:
the arm contrast is between two groups of readers, so a simulator without reader effects makes
every test look right (see shared/notes/statistics.md, "The trap that matters most"). The model
follows the split-plot MRMC view of Obuchowski & Rockette (1995) and Hillis (2007): readers nested in
arms, crossed with cases.

Quality (latent, on the 1–5 point scale), for case c of site s, arm a, reader j, expert e:

    Q[c, a]      = μ + site_s + δ·[a = treatment] + case_c + reader_j + report_{c,a}
    P[c, a, e]   = Q[c, a] + expert_e + ε                      (the expert's perception)
    score        = 1 + #{k : P > τ_k}                          (Likert 1–5)
    RADPEER rank = #{k : P + η ≤ ρ_k}  (0 = "1" concur … 4 = "3b"), η ~ N(0, radpeer_sd²)

Reading time: log t = log t₀ + site_s + log(time_ratio)·[a = treatment] + case_c + reader_j + ε.
Preference of expert e on case c: u = Q[c, treatment] − Q[c, reference] + ν, ν ~ N(0, preference_sd²);
"treatment" if u > tie_band, "reference" if u < −tie_band, "none" otherwise.

Site effects are fixed (known) constants; every other effect is drawn, independently, per trial.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from scoring import radpeer

__all__ = [
    "ARMS",
    "RADPEER_CODES",
    "SimulationParameters",
    "SimulatedTrial",
    "ScoreScaleTruth",
    "simulate_trial",
    "site_allocation",
    "expected_score_difference",
    "score_scale_truth",
]

ARMS = ("treatment", "reference")
RADPEER_CODES = radpeer.CODES   # by rank 0…4: concur … major discrepancy (scoring.radpeer, the one scale)


@dataclass(frozen=True)
class SimulationParameters:
    """The truth of a simulated trial. SDs of quality are in score points (latent scale); of time, on the log scale."""

    n_cases: int = 296
    n_readers: int = 20
    n_experts: int = 5
    n_sites: int = 3
    # quality (latent, points)
    quality_intercept: float = 3.6
    quality_effect: float = 0.0                 # δ, treatment − reference, on the latent scale
    reader_sd: float = 0.25
    case_sd: float = 0.5
    report_sd: float = 0.35
    expert_sd: float = 0.3
    residual_sd: float = 0.6
    site_quality_effects: tuple[float, ...] | None = None   # None: evenly spread over ±0.1
    likert_thresholds: tuple[float, ...] = (1.5, 2.5, 3.5, 4.5)
    radpeer_thresholds: tuple[float, ...] = (1.8, 2.4, 2.9, 3.3)
    radpeer_sd: float = 0.3
    # reading time (log seconds)
    log_time_intercept: float = math.log(100.0)
    time_ratio: float = 1.0                     # geometric mean treatment / reference
    time_reader_sd: float = 0.2
    time_case_sd: float = 0.35
    time_residual_sd: float = 0.3
    site_time_effects: tuple[float, ...] | None = None      # None: evenly spread over ±0.1
    # preference
    preference_sd: float = 0.5
    tie_band: float = 0.25

    def __post_init__(self) -> None:
        if self.n_readers % 2 or self.n_readers < 2 * self.n_sites:
            raise ValueError(
                f"n_readers must be even and at least 2 per site (blocks of two within each of the "
                f"{self.n_sites} sites), got {self.n_readers}"
            )
        if self.n_sites < 1 or self.n_experts < 1:
            raise ValueError("n_sites and n_experts must be at least 1")
        if self.n_cases < self.n_readers:
            raise ValueError("fewer cases than readers leaves readers without reads")
        if self.time_ratio <= 0:
            raise ValueError("time_ratio must be positive")
        for name in ("site_quality_effects", "site_time_effects"):
            value = getattr(self, name)
            if value is not None and len(value) != self.n_sites:
                raise ValueError(f"{name} needs {self.n_sites} values, got {len(value)}")
        for name in ("likert_thresholds", "radpeer_thresholds"):
            value = np.asarray(getattr(self, name))
            if value.size != 4 or np.any(np.diff(value) <= 0):
                raise ValueError(f"{name} must be 4 increasing values")
        for name in ("reader_sd", "case_sd", "report_sd", "expert_sd", "residual_sd", "radpeer_sd",
                     "time_reader_sd", "time_case_sd", "time_residual_sd", "preference_sd", "tie_band"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0")

    @property
    def site_quality(self) -> np.ndarray:
        return _site_effects(self.site_quality_effects, self.n_sites)

    @property
    def site_time(self) -> np.ndarray:
        return _site_effects(self.site_time_effects, self.n_sites)

    @property
    def latent_sd(self) -> float:
        """SD of one expert's perceived quality around μ + site + δ, over all random effects."""
        return math.sqrt(self.reader_sd**2 + self.case_sd**2 + self.report_sd**2 + self.expert_sd**2
                         + self.residual_sd**2)


def _site_effects(values: tuple[float, ...] | None, n_sites: int) -> np.ndarray:
    if values is None:
        return np.linspace(-0.1, 0.1, n_sites) if n_sites > 1 else np.zeros(1)
    return np.asarray(values, dtype=float)


@dataclass(frozen=True)
class SimulatedTrial:
    """Plain columns (numpy arrays) of one simulated trial, and the truth it was drawn from.

    `reads`: one row per read (= report): read, case, site, arm, reader, time (seconds).
    `scores`: one row per expert score of a report: read, case, site, arm, reader, expert, score (1–5),
    radpeer (code), radpeer_rank (0 = concur … 4), latent (the perceived quality the score thresholds).
    `preferences`: one row per expert and case: case, site, expert, treatment_reader,
    reference_reader, preferred ("treatment", "reference" or "none").
    `effects`: the drawn random effects, by name.
    """

    parameters: SimulationParameters
    reads: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]
    preferences: dict[str, np.ndarray]
    effects: dict[str, Any]


def site_allocation(n_readers: int, n_sites: int, n_cases: int) -> tuple[np.ndarray, np.ndarray]:
    """(reader pairs per site, cases per site): pairs dealt round-robin; cases in proportion (largest remainder).

    Deterministic, so that the share of cases per site, which the true score difference depends on
    (thresholds make the arm difference depend on the site's level), is known from the parameters.
    """
    pairs = np.bincount(np.arange(n_readers // 2) % n_sites, minlength=n_sites)
    exact = n_cases * pairs / pairs.sum()
    cases = np.floor(exact).astype(int)
    short = n_cases - cases.sum()
    cases[np.argsort(-(exact - cases), kind="stable")[:short]] += 1
    return pairs, cases


def simulate_trial(parameters: SimulationParameters | None = None, *, seed: int,
                   **overrides: Any) -> SimulatedTrial:
    """Draw one trial. `overrides` replace fields of `parameters` (the defaults when None)."""
    p = dataclasses.replace(parameters or SimulationParameters(), **overrides)
    rng = np.random.default_rng(seed)
    n, E = p.n_cases, p.n_experts

    # Readers: numbered site by site; within each pair (a block of two) a coin decides the arms.
    pairs, cases_per_site = site_allocation(p.n_readers, p.n_sites, n)
    reader_site = np.repeat(np.arange(p.n_sites), 2 * pairs)
    reader_arm = np.empty(p.n_readers, dtype=int)            # 0 = treatment, 1 = reference
    for b in range(p.n_readers // 2):
        first = int(rng.integers(2))
        reader_arm[2 * b], reader_arm[2 * b + 1] = first, 1 - first
    # Cases: the site of each case is a random permutation of the fixed counts.
    case_site = rng.permutation(np.repeat(np.arange(p.n_sites), cases_per_site))
    # Reads: within site and arm, the cases in random order are dealt to that arm's readers in turn,
    # so workloads are equal (±1), as a worklist that balances readers would make them.
    reader_of = np.empty((n, 2), dtype=int)
    for s in range(p.n_sites):
        cs = np.flatnonzero(case_site == s)
        for a in range(2):
            rs = np.flatnonzero((reader_site == s) & (reader_arm == a))
            order = rng.permutation(cs)
            reader_of[order, a] = rs[(np.arange(order.size) + int(rng.integers(rs.size))) % rs.size]

    # Random effects.
    reader_q = rng.normal(0.0, p.reader_sd, p.n_readers)
    reader_t = rng.normal(0.0, p.time_reader_sd, p.n_readers)
    case_q = rng.normal(0.0, p.case_sd, n)
    case_t = rng.normal(0.0, p.time_case_sd, n)
    report_q = rng.normal(0.0, p.report_sd, (n, 2))
    expert_q = rng.normal(0.0, p.expert_sd, E)
    treated = np.array([1.0, 0.0])

    Q = (p.quality_intercept + p.site_quality[case_site][:, None] + p.quality_effect * treated[None, :]
         + case_q[:, None] + reader_q[reader_of] + report_q)                    # (n, 2)
    perceived = Q[:, :, None] + expert_q[None, None, :] + rng.normal(0.0, p.residual_sd, (n, 2, E))
    score = 1 + np.sum(perceived[..., None] > np.asarray(p.likert_thresholds), axis=-1)
    radpeer_latent = perceived + rng.normal(0.0, p.radpeer_sd, perceived.shape)
    radpeer_rank = np.sum(radpeer_latent[..., None] <= np.asarray(p.radpeer_thresholds), axis=-1)
    log_time = (p.log_time_intercept + p.site_time[case_site][:, None] + math.log(p.time_ratio) * treated[None, :]
                + case_t[:, None] + reader_t[reader_of] + rng.normal(0.0, p.time_residual_sd, (n, 2)))
    u = (Q[:, 0] - Q[:, 1])[:, None] + rng.normal(0.0, p.preference_sd, (n, E))
    preferred = np.where(u > p.tie_band, "treatment", np.where(u < -p.tie_band, "reference", "none"))

    # Labels: zero-padded so that sorted order is numeric order.
    case_label = np.array([f"C{c + 1:04d}" for c in range(n)])
    reader_label = np.array([f"R{j + 1:02d}" for j in range(p.n_readers)])
    expert_label = np.array([f"E{e + 1}" for e in range(E)])
    site_label = np.array([f"S{s + 1}" for s in range(p.n_sites)])
    arm_label = np.array(ARMS)

    ci, ai = np.meshgrid(np.arange(n), np.arange(2), indexing="ij")          # (n, 2): one read each
    ci, ai = ci.reshape(-1), ai.reshape(-1)
    read_id = np.arange(1, 2 * n + 1)
    reads = {
        "read": read_id,
        "case": case_label[ci],
        "site": site_label[case_site[ci]],
        "arm": arm_label[ai],
        "reader": reader_label[reader_of[ci, ai]],
        "time": np.exp(log_time.reshape(-1)),
    }
    scores = {
        "read": np.repeat(read_id, E),
        "case": np.repeat(reads["case"], E),
        "site": np.repeat(reads["site"], E),
        "arm": np.repeat(reads["arm"], E),
        "reader": np.repeat(reads["reader"], E),
        "expert": np.tile(expert_label, 2 * n),
        "score": score.reshape(-1).astype(int),
        "radpeer": np.array(RADPEER_CODES)[radpeer_rank.reshape(-1)],
        "radpeer_rank": radpeer_rank.reshape(-1).astype(int),
        "latent": perceived.reshape(-1),     # the truth behind the score: never in real data
    }
    preferences = {
        "case": np.repeat(case_label, E),
        "site": np.repeat(site_label[case_site], E),
        "expert": np.tile(expert_label, n),
        "treatment_reader": np.repeat(reader_label[reader_of[:, 0]], E),
        "reference_reader": np.repeat(reader_label[reader_of[:, 1]], E),
        "preferred": preferred.reshape(-1),
    }
    effects = {
        "reader_arm": {reader_label[j]: ARMS[reader_arm[j]] for j in range(p.n_readers)},
        "reader_site": {reader_label[j]: site_label[reader_site[j]] for j in range(p.n_readers)},
        "reader_quality": dict(zip(reader_label.tolist(), reader_q.tolist())),
        "reader_time": dict(zip(reader_label.tolist(), reader_t.tolist())),
        "case_quality": case_q,
        "case_time": case_t,
        "report_quality": report_q,                     # (case, arm) in ARMS order
        "expert_quality": dict(zip(expert_label.tolist(), expert_q.tolist())),
        "report_latent_quality": Q,
    }
    return SimulatedTrial(parameters=p, reads=reads, scores=scores, preferences=preferences, effects=effects)


# --------------------------------------------------------------------------------------------
# The truth on the score scale


def _expected_score(mean: np.ndarray | float, sd: float, thresholds: np.ndarray) -> np.ndarray:
    """E[1 + #{k : X > τ_k}] for X ~ N(mean, sd²): exact."""
    mean = np.asarray(mean, dtype=float)
    if sd == 0:
        return 1.0 + np.sum(mean[..., None] > thresholds, axis=-1)
    return 1.0 + np.sum(special.ndtr((mean[..., None] - thresholds) / sd), axis=-1)


def expected_score_difference(parameters: SimulationParameters | None = None, **overrides: Any) -> float:
    """True expected Likert score difference treatment − reference, exactly from the thresholds.

    With thresholding the difference on the 1–5 scale is not δ: a latent shift moves a score only
    where the perceived quality lies near a threshold. One expert's perception is normal with mean
    μ + site + δ·[treatment] and SD `latent_sd` (all random effects together), so
    E[score] = 1 + Σ_k Φ((μ + site + δ − τ_k)/SD); the trial's expected difference averages over sites
    with their (fixed) shares of cases, which is the population the LMM's arm effect estimates
    (a balanced design weights every case alike).
    """
    p = dataclasses.replace(parameters or SimulationParameters(), **overrides)
    _, cases = site_allocation(p.n_readers, p.n_sites, p.n_cases)
    w = cases / cases.sum()
    tau = np.asarray(p.likert_thresholds, dtype=float)
    m = p.quality_intercept + p.site_quality
    diff = _expected_score(m + p.quality_effect, p.latent_sd, tau) - _expected_score(m, p.latent_sd, tau)
    return float(w @ diff)


@dataclass(frozen=True)
class ScoreScaleTruth:
    """What the Likert thresholding makes of the latent truth, as the score-scale LMM sees it.

    effect: expected score difference (exact). reader_variance: variance of a reader's expected
    score over readers, within site, averaged over the arms (exact, by quadrature). case_difference_variance:
    variance of a case's difference of expert-mean scores given the trial's readers and experts
    (Monte Carlo, `n_draws` conditioning draws). With these, Var(Δ̂) ≈ 2 reader_variance / (readers
    per arm) + case_difference_variance / n_cases, as for a Gaussian LMM.
    """

    effect: float
    reader_variance: float
    case_difference_variance: float


def score_scale_truth(parameters: SimulationParameters | None = None, *, seed: int = 0,
                      n_draws: int = 4000, cases_per_draw: int = 64, **overrides: Any) -> ScoreScaleTruth:
    """The score-scale effect and variance pieces of a trial (see ScoreScaleTruth), from its latent truth."""
    p = dataclasses.replace(parameters or SimulationParameters(), **overrides)
    tau = np.asarray(p.likert_thresholds, dtype=float)
    pairs, cases = site_allocation(p.n_readers, p.n_sites, p.n_cases)
    m = p.quality_intercept + p.site_quality

    # Reader part: g_a(r) = E[score | reader effect r] is exact given r (the rest of the latent sum
    # is normal); its variance over r ~ N(0, reader_sd²) by Gauss–Hermite quadrature, pooled over
    # sites by their readers and over the two arms.
    rest_sd = math.sqrt(max(p.latent_sd**2 - p.reader_sd**2, 0.0))
    x, wq = np.polynomial.hermite_e.hermegauss(80)
    wq = wq / wq.sum()
    var_r = []
    for a_effect in (p.quality_effect, 0.0):
        g = _expected_score(m[:, None] + a_effect + p.reader_sd * x[None, :], rest_sd, tau)   # (sites, nodes)
        mean = g @ wq
        var_r.append(((g - mean[:, None]) ** 2) @ wq)
    reader_variance = float((pairs / pairs.sum()) @ (0.5 * (var_r[0] + var_r[1])))

    # Case part: given readers (r_T, r_R), experts and site, the within-trial variance of a case's
    # difference of expert-mean scores; the conditioning draws are averaged.
    rng = np.random.default_rng(seed)
    w = cases / cases.sum()
    site = rng.choice(p.n_sites, size=n_draws, p=w)
    r = rng.normal(0.0, p.reader_sd, (n_draws, 1, 2))
    e = rng.normal(0.0, p.expert_sd, (n_draws, 1, 1, p.n_experts))
    K = cases_per_draw
    base = (p.quality_intercept + p.site_quality[site][:, None, None]
            + np.array([p.quality_effect, 0.0])[None, None, :] + r
            + rng.normal(0.0, p.case_sd, (n_draws, K, 1)) + rng.normal(0.0, p.report_sd, (n_draws, K, 2)))
    perceived = base[..., None] + e + rng.normal(0.0, p.residual_sd, (n_draws, K, 2, p.n_experts))
    score = 1.0 + np.sum(perceived[..., None] > tau, axis=-1)
    d = score[:, :, 0, :].mean(axis=-1) - score[:, :, 1, :].mean(axis=-1)     # (draws, K)
    case_difference_variance = float(np.mean(np.var(d, axis=1, ddof=1)))
    return ScoreScaleTruth(effect=expected_score_difference(p), reader_variance=reader_variance,
                           case_difference_variance=case_difference_variance)
