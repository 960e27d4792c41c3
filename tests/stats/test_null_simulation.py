"""Type-I error and coverage of the default arm analyses on simulated trials with reader effects (bench: 200 trials).

With readers randomized to arms, a test that treats them as fixed (the paired t on case means, the
binomial test of case majorities) rejects a true null far too often; the default analyses must not:
the primary LMM, the ordinal sensitivity (the multi-intercept cumulative-logit model with its
small-sample correction) and the preference GLMM. The models are the default plan's own (random
terms and covariates read from stats.plan.default_plan), fitted to stats.methods.simulation's trials
(296 cases, 20 readers nested in arms within 3 sites, reader SD 0.25, report SD 0.35, 5 experts).
40 seeded null trials cannot pin a rate to ±0.01 (MC SE ≈ 0.035 at 0.05), so the bounds are loose
(≤ 6 rejections, 0.15) but still separate the two kinds: the fixed-reader tests reject ≥ 20 % here,
which proves that the simulator has the reader variation that makes the difference.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from stats.methods.glmm import fit_ordinal_glmm, fit_preference_glmm
from stats.methods.lmm import fit_lmm
from stats.methods.preference import analyse_preference
from stats.methods.simulation import SimulationParameters, expected_score_difference, simulate_trial
from stats.plan import default_plan

NEUTRAL = {"treatment": "treatment", "reference": "reference"}
N_TRIALS = 40
PLAN = default_plan("paired_parallel")
QUALITY = {"random": PLAN["random_effects"]["quality"], "covariates": PLAN["covariates"]["quality"]}
TIME = {"random": PLAN["random_effects"]["reading_time"], "covariates": PLAN["covariates"]["reading_time"]}


def paired_t_pvalue(scores: dict) -> float:
    """The old default: paired t on the per-case means of the expert scores, treatment vs reference."""
    levels, code = np.unique(scores["case"], return_inverse=True)
    treated = scores["arm"] == "treatment"
    s = scores["score"].astype(float)
    mean_t = np.bincount(code[treated], s[treated], levels.size) / np.bincount(code[treated], minlength=levels.size)
    mean_r = np.bincount(code[~treated], s[~treated], levels.size) / np.bincount(code[~treated], minlength=levels.size)
    return float(stats.ttest_rel(mean_t, mean_r).pvalue)


def quality_fit(trial):
    return fit_lmm(trial.scores, outcome="score", **QUALITY, **NEUTRAL)


def time_fit(trial):
    return fit_lmm(trial.reads, outcome="time", log=True, **TIME, **NEUTRAL)


def ordinal_fit(trial):
    return fit_ordinal_glmm(trial.scores, outcome="score", **QUALITY, **NEUTRAL)


def majority_pvalue(trial) -> float:
    p = trial.preferences
    return analyse_preference(case=p["case"], expert=p["expert"], choice=p["preferred"], min_votes=PLAN[
        "preference_min_votes"], treatment="treatment", reference="reference").pvalue


@pytest.fixture(scope="module")
def null_trials():
    p = SimulationParameters(quality_effect=0.0, time_ratio=1.0)   # 296 cases, 20 readers, 5 experts, 3 sites
    out = {k: [] for k in ("old", "lmm", "time", "ordinal", "ordinal_z", "preference", "preference_z", "majority")}
    for seed in range(N_TRIALS):
        trial = simulate_trial(p, seed=80_000 + seed)
        out["old"].append(paired_t_pvalue(trial.scores))
        out["lmm"].append(quality_fit(trial).pvalue)
        out["time"].append(time_fit(trial).pvalue)
        o = ordinal_fit(trial)
        out["ordinal"].append(o.pvalue)
        out["ordinal_z"].append(o.pvalue_z)
        g = fit_preference_glmm(trial.preferences, **NEUTRAL)
        out["preference"].append(g.pvalue)
        out["preference_z"].append(g.pvalue_z)
        out["majority"].append(majority_pvalue(trial))
    return {k: np.asarray(v) for k, v in out.items()}


def test_the_paired_t_on_case_means_rejects_a_true_null_far_too_often(null_trials):
    assert np.mean(null_trials["old"] < 0.05) >= 0.2


def test_the_binomial_test_of_case_majorities_rejects_a_true_null_far_too_often(null_trials):
    assert np.mean(null_trials["majority"] < 0.05) >= 0.2


def test_the_quality_lmm_with_random_readers_keeps_its_type_i_error(null_trials):
    assert np.mean(null_trials["lmm"] < 0.05) <= 0.15


def test_the_reading_time_lmm_keeps_its_type_i_error(null_trials):
    assert np.mean(null_trials["time"] < 0.05) <= 0.15


def test_the_ordinal_sensitivity_keeps_its_type_i_error_and_is_never_more_liberal_than_clmms_z(null_trials):
    assert np.mean(null_trials["ordinal"] < 0.05) <= 0.15
    assert np.all(null_trials["ordinal"] >= null_trials["ordinal_z"])


def test_the_preference_glmm_keeps_its_type_i_error(null_trials):
    assert np.mean(null_trials["preference"] < 0.05) <= 0.15
    assert np.all(null_trials["preference"] >= null_trials["preference_z"])


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
