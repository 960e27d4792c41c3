"""The trial simulator (stats/methods/simulation.py): the paper's design, and components with the SDs we set."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy import special, stats

from stats.methods.lmm import fit_lmm
from stats.methods.simulation import (
    ARMS,
    RADPEER_CODES,
    SimulationParameters,
    expected_score_difference,
    score_scale_truth,
    simulate_trial,
)

NEUTRAL = {"treatment": "treatment", "reference": "reference"}
QUALITY_RANDOM = ["case", "reader", "expert", "case:arm"]


def test_readers_are_nested_in_arms_and_sites_and_every_case_is_read_once_per_arm():
    trial = simulate_trial(seed=1)
    p = trial.parameters
    reads = trial.reads
    assert set(reads["arm"]) == set(ARMS)
    reader_arm = trial.effects["reader_arm"]
    reader_site = trial.effects["reader_site"]
    assert Counter(reader_arm.values()) == {"treatment": p.n_readers // 2, "reference": p.n_readers // 2}
    # stratified by site: each site has as many readers in one arm as in the other
    for site in set(reader_site.values()):
        arms = Counter(reader_arm[r] for r, s in reader_site.items() if s == site)
        assert arms["treatment"] == arms["reference"] > 0
    for reader, arm, site in zip(reads["reader"], reads["arm"], reads["site"]):
        assert reader_arm[reader] == arm and reader_site[reader] == site
    pairs = Counter(zip(reads["case"], reads["arm"]))
    assert len(pairs) == 2 * p.n_cases and set(pairs.values()) == {1}
    workload = Counter(reads["reader"])
    assert max(workload.values()) - min(workload.values()) <= 1


def test_every_expert_scores_every_report_and_votes_on_every_case():
    trial = simulate_trial(seed=2, n_experts=5)
    scores, prefs = trial.scores, trial.preferences
    per_report = Counter(scores["read"])
    assert len(per_report) == 2 * trial.parameters.n_cases and set(per_report.values()) == {5}
    assert Counter(zip(scores["read"], scores["expert"])).most_common(1)[0][1] == 1
    assert len(set(zip(prefs["case"], prefs["expert"]))) == trial.parameters.n_cases * 5
    assert set(prefs["preferred"]) <= {"treatment", "reference", "none"}
    assert set(np.unique(scores["score"])) <= {1, 2, 3, 4, 5}
    assert set(scores["radpeer"]) <= set(RADPEER_CODES)


def test_the_same_seed_gives_the_same_trial_and_another_seed_another():
    a, b, c = simulate_trial(seed=5), simulate_trial(seed=5), simulate_trial(seed=6)
    for table in ("reads", "scores", "preferences"):
        for column, values in getattr(a, table).items():
            assert np.array_equal(values, getattr(b, table)[column])
    assert not np.array_equal(a.scores["score"], c.scores["score"])


def test_bad_designs_are_refused():
    with pytest.raises(ValueError, match="even"):
        SimulationParameters(n_readers=19)
    with pytest.raises(ValueError, match="at least 2 per site"):
        SimulationParameters(n_readers=4, n_sites=3)
    with pytest.raises(ValueError, match="site_quality_effects needs 3"):
        SimulationParameters(site_quality_effects=(0.0, 0.1))


def test_latent_quality_components_have_the_sds_we_set():
    # Many readers, cases and experts, so that each SD is estimated within a few per cent; the
    # readers' and experts' SDs are compared with the SD of the effects actually drawn, which the
    # fit can at best recover with 120 readers / 20 experts.
    trial = simulate_trial(seed=3, n_cases=2000, n_readers=120, n_experts=20, quality_effect=0.25)
    fit = fit_lmm(trial.scores, outcome="latent", random=QUALITY_RANDOM, covariates=["site"], **NEUTRAL)
    sd = {k: math.sqrt(v) for k, v in fit.variance_components.items()}
    p = trial.parameters
    drawn_reader = np.std(list(trial.effects["reader_quality"].values()), ddof=1)
    drawn_expert = np.std(list(trial.effects["expert_quality"].values()), ddof=1)
    assert sd["reader"] == pytest.approx(drawn_reader, rel=0.08)
    assert drawn_reader == pytest.approx(p.reader_sd, rel=0.25)
    assert sd["expert"] == pytest.approx(drawn_expert, rel=0.08)
    assert sd["case"] == pytest.approx(p.case_sd, rel=0.06)
    assert sd["case:arm"] == pytest.approx(p.report_sd, rel=0.06)
    assert math.sqrt(fit.residual_variance) == pytest.approx(p.residual_sd, rel=0.02)
    assert fit.estimate == pytest.approx(0.25, abs=4 * fit.se)
    assert fit.fixed_effects["siteS3"] - fit.fixed_effects["siteS2"] == pytest.approx(
        p.site_quality[2] - p.site_quality[1], abs=0.1)


def test_log_time_components_and_the_time_ratio_are_recovered():
    trial = simulate_trial(seed=4, n_cases=3000, n_readers=120, time_ratio=0.82)
    fit = fit_lmm(trial.reads, outcome="time", log=True, random=["case", "reader"], covariates=["site"], **NEUTRAL)
    p = trial.parameters
    drawn_reader = np.std(list(trial.effects["reader_time"].values()), ddof=1)
    assert math.sqrt(fit.variance_components["reader"]) == pytest.approx(drawn_reader, rel=0.08)
    assert math.sqrt(fit.variance_components["case"]) == pytest.approx(p.time_case_sd, rel=0.06)
    assert math.sqrt(fit.residual_variance) == pytest.approx(p.time_residual_sd, rel=0.05)
    assert fit.estimate == pytest.approx(math.log(0.82), abs=3 * fit.se)


def test_expected_score_difference_is_exact_where_only_cases_vary():
    # No reader or expert variation: a trial's mean difference then varies only by case, and one
    # big trial pins it to ~0.002, against the closed form from the thresholds.
    p = SimulationParameters(n_cases=100_000, n_readers=20, reader_sd=0.0, expert_sd=0.0, quality_effect=0.4)
    truth = expected_score_difference(p)
    s = simulate_trial(p, seed=7).scores
    t = s["arm"] == "treatment"
    d = s["score"][t].mean() - s["score"][~t].mean()
    se = math.sqrt(score_scale_truth(p, n_draws=500).case_difference_variance / p.n_cases)
    assert abs(d - truth) < 3 * se
    assert abs(d - 0.4) > 10 * se                     # thresholding shrinks the latent difference
    assert expected_score_difference(p, quality_effect=0.0) == 0.0


def test_expected_score_difference_matches_the_simulator_with_every_component():
    p = SimulationParameters(n_cases=2000, n_readers=200, quality_effect=0.25)
    diffs = []
    for seed in range(150):
        s = simulate_trial(p, seed=100 + seed).scores
        t = s["arm"] == "treatment"
        diffs.append(s["score"][t].mean() - s["score"][~t].mean())
    diffs = np.asarray(diffs)
    se = diffs.std(ddof=1) / math.sqrt(diffs.size)
    assert abs(diffs.mean() - expected_score_difference(p)) < 3 * se


def test_score_scale_truth_agrees_with_an_lmm_fit_of_the_scores():
    # What the power calculation takes from the truth (score_scale_truth) is what an LMM fit of the
    # Likert scores estimates: the reader variance (120 readers: ~13 % SE) and the case-level
    # variance of a case difference, 2(σ²_report + σ²_residual / E) (~3 %; thresholding adds a little
    # case × expert interaction to the fit's residual, which cancels in a case's difference).
    p = SimulationParameters(n_cases=2000, n_readers=120, quality_effect=0.25)
    truth = score_scale_truth(p)
    fit = fit_lmm(simulate_trial(p, seed=4).scores, outcome="score", random=QUALITY_RANDOM, covariates=["site"],
                  **NEUTRAL)
    vc = fit.variance_components
    assert vc["reader"] == pytest.approx(truth.reader_variance, rel=0.4)
    assert 2 * (vc["case:arm"] + fit.residual_variance / p.n_experts) == pytest.approx(
        truth.case_difference_variance, rel=0.1)
    assert fit.estimate == pytest.approx(truth.effect, abs=3 * fit.se)


def test_preference_votes_follow_the_latent_difference_of_the_two_reports():
    p = SimulationParameters(quality_effect=0.3)
    counts = Counter()
    for seed in range(200):
        counts.update(simulate_trial(p, seed=seed).preferences["preferred"].tolist())
    total = sum(counts.values())
    s = math.sqrt(2 * p.reader_sd**2 + 2 * p.report_sd**2 + p.preference_sd**2)
    expected_t = special.ndtr((p.quality_effect - p.tie_band) / s)
    expected_r = special.ndtr((-p.quality_effect - p.tie_band) / s)
    # votes are clustered in readers: per-trial shares vary by ~0.04, so 200 trials pin them to ~0.003
    assert counts["treatment"] / total == pytest.approx(expected_t, abs=0.01)
    assert counts["reference"] / total == pytest.approx(expected_r, abs=0.01)


def test_radpeer_is_another_ordinal_view_of_the_same_quality():
    s = simulate_trial(seed=9, quality_effect=0.5).scores
    rho = stats.spearmanr(s["score"], s["radpeer_rank"]).statistic
    assert rho < -0.6                                  # a better score, a less severe RADPEER code
    t = s["arm"] == "treatment"
    assert np.mean(s["radpeer"][t] == "1") > np.mean(s["radpeer"][~t] == "1")
    assert np.all(np.array(RADPEER_CODES)[s["radpeer_rank"]] == s["radpeer"])
