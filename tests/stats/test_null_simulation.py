"""Type-I error and coverage of the arm analyses on simulated trials with reader effects (bench/stats_null.py: 200).

With readers randomized to arms, a test that treats them as fixed (the paired t on case means)
rejects a true null far too often; the LMM with random readers must not. 40 seeded null trials
cannot pin a rate to ±0.01 (MC SE ≈ 0.035 at 0.05), so the bounds are loose but still separate the
two: the LMM ≤ 0.15, the paired t ≥ 0.2 (≈ 0.45 at these settings), the latter proving that the
simulator has the reader variation that makes the difference.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from stats.methods.lmm import fit_lmm
from stats.methods.simulation import SimulationParameters, expected_score_difference, simulate_trial

NEUTRAL = {"treatment": "treatment", "reference": "reference"}
N_TRIALS = 40


def paired_t_pvalue(scores: dict) -> float:
    """The old default: paired t on the per-case means of the expert scores, treatment vs reference."""
    levels, code = np.unique(scores["case"], return_inverse=True)
    treated = scores["arm"] == "treatment"
    s = scores["score"].astype(float)
    mean_t = np.bincount(code[treated], s[treated], levels.size) / np.bincount(code[treated], minlength=levels.size)
    mean_r = np.bincount(code[~treated], s[~treated], levels.size) / np.bincount(code[~treated], minlength=levels.size)
    return float(stats.ttest_rel(mean_t, mean_r).pvalue)


def quality_fit(trial):
    return fit_lmm(trial.scores, outcome="score", random=["case", "reader", "expert", "case:arm"],
                   covariates=["site"], **NEUTRAL)


def time_fit(trial):
    return fit_lmm(trial.reads, outcome="time", log=True, random=["case", "reader"], **NEUTRAL)


@pytest.fixture(scope="module")
def null_trials():
    p = SimulationParameters(quality_effect=0.0, time_ratio=1.0)   # 296 cases, 20 readers, 5 experts, 3 sites
    out = {"old": [], "lmm": [], "time": []}
    for seed in range(N_TRIALS):
        trial = simulate_trial(p, seed=80_000 + seed)
        out["old"].append(paired_t_pvalue(trial.scores))
        out["lmm"].append(quality_fit(trial).pvalue)
        out["time"].append(time_fit(trial).pvalue)
    return {k: np.asarray(v) for k, v in out.items()}


def test_the_paired_t_on_case_means_rejects_a_true_null_far_too_often(null_trials):
    assert np.mean(null_trials["old"] < 0.05) >= 0.2


def test_the_quality_lmm_with_random_readers_keeps_its_type_i_error(null_trials):
    assert np.mean(null_trials["lmm"] < 0.05) <= 0.15


def test_the_reading_time_lmm_keeps_its_type_i_error(null_trials):
    assert np.mean(null_trials["time"] < 0.05) <= 0.15


def test_the_lmm_intervals_cover_the_true_score_difference_and_time_ratio():
    # The LMM estimates the difference on the 1–5 scale; the truth there is not the latent 0.25 but
    # the exact expected score difference from the thresholds (simulation.expected_score_difference).
    p = SimulationParameters(quality_effect=0.25, time_ratio=0.82)
    truth = expected_score_difference(p)
    assert 0.2 < truth < 0.25
    covered_q, covered_t = [], []
    for seed in range(N_TRIALS):
        trial = simulate_trial(p, seed=90_000 + seed)
        low, high = quality_fit(trial).confidence_interval(0.95)
        covered_q.append(low <= truth <= high)
        low, high = time_fit(trial).confidence_interval(0.95)
        covered_t.append(low <= math.log(0.82) <= high)
    # 0.95 expected; 40 trials: SD ≈ 0.035, so 0.85 is ~3 SD below
    assert np.mean(covered_q) >= 0.85
    assert np.mean(covered_t) >= 0.85
