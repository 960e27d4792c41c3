"""Seeded simulator of expert preference votes with reader, case, report and expert effects (preference GLMM checks).

Design: readers randomized to the arms (half each); every case is reported once in each arm, by a
reader of that arm drawn at random; every expert compares the two reports of every case side by side
(sides randomized). Latent quality of the report of case c in arm a written by reader j:

    Q[c, a] = δ·[a = treatment] + case_c + reader_j + report_{c,a}

Expert e perceives each report with its own noise and discrimination, and has a side bias:

    D[c, e] = s_e · (Q[c, T] + ε_{e,c,T} − Q[c, R] − ε_{e,c,R}) + side_e · (±1, the side of the treatment report)

and votes "treatment" if D > tie_band, "reference" if D < −tie_band, and the tie label otherwise.
The case effect is common to both reports (it cancels in D, as a case's difficulty does for a side-by-
side comparison); what makes votes on one case agree is the report-level noise, which every expert
sees. The reader effects are what a reader-aware test must carry: with δ = 0 every expert's
preference is ½ on average over readers, yet in one trial the treatment readers can be better.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PreferenceSimulation", "simulate_preference_votes"]


@dataclass(frozen=True)
class PreferenceSimulation:
    n_cases: int = 296
    n_readers: int = 20            # split evenly between the arms
    n_experts: int = 5
    effect: float = 0.0            # δ, on the latent quality scale (Likert points)
    reader_sd: float = 0.25
    case_sd: float = 0.8
    report_sd: float = 0.35
    perception_sd: float = 0.5     # an expert's noise in perceiving one report
    discrimination_sd: float = 0.3  # log-SD of the experts' scale factors s_e
    side_bias_sd: float = 0.2      # SD of the experts' preference for the left report
    tie_band: float = 0.15


def simulate_preference_votes(sim: PreferenceSimulation, seed: int, *, treatment: str = "treatment",
                              reference: str = "reference", tie: str = "none") -> dict[str, np.ndarray]:
    """One trial's votes: columns case, expert, treatment_reader, reference_reader, side, preferred."""
    if sim.n_readers < 4 or sim.n_readers % 2:
        raise ValueError("n_readers must be even and at least 4")
    rng = np.random.default_rng(seed)
    C, E, half = sim.n_cases, sim.n_experts, sim.n_readers // 2
    reader_effect = rng.normal(0.0, sim.reader_sd, sim.n_readers)       # 0..half−1 treatment arm
    # each case gets one reader per arm; balanced (every reader about C/half cases), in random order
    r_t = rng.permutation(np.arange(C) % half)
    r_r = half + rng.permutation(np.arange(C) % half)
    case = rng.normal(0.0, sim.case_sd, C)
    q_t = sim.effect + case + reader_effect[r_t] + rng.normal(0.0, sim.report_sd, C)
    q_r = case + reader_effect[r_r] + rng.normal(0.0, sim.report_sd, C)
    scale = np.exp(rng.normal(0.0, sim.discrimination_sd, E))
    side_bias = rng.normal(0.0, sim.side_bias_sd, E)
    side = np.where(rng.random((C, E)) < 0.5, 1.0, -1.0)                 # +1: treatment report on the left
    perceived = (q_t - q_r)[:, None] + rng.normal(0.0, sim.perception_sd, (C, E)) \
        - rng.normal(0.0, sim.perception_sd, (C, E))
    d = scale[None, :] * perceived + side_bias[None, :] * side
    preferred = np.where(d > sim.tie_band, treatment, np.where(d < -sim.tie_band, reference, tie))
    return {
        "case": np.repeat([f"c{c:03d}" for c in range(C)], E),
        "expert": np.tile([f"e{e}" for e in range(E)], C),
        "treatment_reader": np.repeat([f"r{j:02d}" for j in r_t], E),
        "reference_reader": np.repeat([f"r{j:02d}" for j in r_r], E),
        "side": np.where(side.reshape(-1) > 0, "left", "right"),
        "preferred": preferred.reshape(-1),
    }
