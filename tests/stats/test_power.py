"""Power of the paired-parallel design (stats/methods/power.py): its paired-t limit, and simulated LMM fits."""
from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.power import TTestPower

from stats.methods.lmm import fit_lmm
from stats.methods.power import (
    ArmContrastPower,
    PairedParallelPower,
    VarianceComponents,
    contrast_power,
    paired_parallel_power,
    preference_power,
    quality_power,
    time_power,
)
from stats.methods.simulation import SimulationParameters, score_scale_truth, simulate_trial

NEUTRAL = {"treatment": "treatment", "reference": "reference"}


# --------------------------------------------------------------------------------------------
# The fixed-reader limit


@pytest.mark.parametrize(
    ("effect", "n_cases", "n_experts", "report_sd", "residual_sd", "alpha"),
    [(0.25, 296, 5, 0.35, 0.6, 0.05), (0.1, 296, 5, 0.35, 0.6, 0.05), (-0.15, 120, 3, 0.5, 0.8, 0.01),
     (0.05, 1000, 1, 0.2, 0.4, 0.10)],
)
def test_quality_power_without_reader_variance_equals_the_paired_t_on_case_differences(
        effect, n_cases, n_experts, report_sd, residual_sd, alpha):
    components = VarianceComponents.from_sds(reader=0.0, case=0.5, report=report_sd, expert=0.3,
                                             residual=residual_sd)
    result = quality_power(n_cases=n_cases, readers_per_arm=10, n_experts=n_experts, components=components,
                           effect=effect, alpha=alpha)
    sd_d = math.sqrt(2 * report_sd**2 + 2 * residual_sd**2 / n_experts)
    expected = TTestPower().power(effect_size=effect / sd_d, nobs=n_cases, alpha=alpha)
    assert result.power == pytest.approx(expected, abs=1e-9, rel=0)
    assert result.df == pytest.approx(n_cases - 1, abs=1e-9)


def test_time_power_without_reader_variance_equals_the_paired_t_on_log_time_differences():
    components = VarianceComponents.from_sds(reader=0.0, case=0.35, residual=0.3)
    result = time_power(n_cases=296, readers_per_arm=10, components=components, time_ratio=0.95)
    expected = TTestPower().power(effect_size=math.log(0.95) / math.sqrt(2 * 0.3**2), nobs=296, alpha=0.05)
    assert result.power == pytest.approx(expected, abs=1e-9, rel=0)


# --------------------------------------------------------------------------------------------
# Readers, not cases


def test_readers_not_cases_drive_power_when_readers_vary():
    components = VarianceComponents.from_sds(reader=0.25, case=0.5, report=0.35, expert=0.3, residual=0.6)

    def power(n_cases, k):
        return quality_power(n_cases=n_cases, readers_per_arm=k, n_experts=5, components=components,
                             effect=0.25).power

    base = power(296, 10)
    assert power(296 * 10, 10) < power(296, 20)          # ten times the cases < twice the readers
    assert power(296 * 10, 10) - base < 0.2
    # the reader term alone caps power whatever the number of cases
    cap = contrast_power(effect=0.25, reader_variance=0.0625, case_difference_variance=1e-12, n_cases=10**9,
                         readers_per_arm=10).power
    assert power(296 * 10, 10) < cap < 0.7


def test_readers_for_power_is_the_smallest_number_that_reaches_the_target():
    components = VarianceComponents.from_sds(reader=0.2, case=0.35, residual=0.3)
    result = time_power(n_cases=296, readers_per_arm=10, components=components, time_ratio=0.82)
    for target, needed in ((0.8, result.readers_for_80), (0.9, result.readers_for_90)):
        assert needed is not None and needed % 2 == 0
        assert result.at_readers(needed // 2).power >= target
        assert result.at_readers(needed // 2 - 1).power < target
    assert result.readers_for_90 > result.readers_for_80 > result.n_readers


def test_readers_for_power_is_none_when_the_cases_alone_cannot_reach_it():
    # 20 cases with noisy reports: even infinitely many readers leave the case term's power < 80 %
    result = contrast_power(effect=0.2, reader_variance=0.05, case_difference_variance=1.0, n_cases=20,
                            readers_per_arm=5)
    assert result.readers_for_power(0.8) is None
    assert result.readers_for_power(0.05) == 4


def test_bad_inputs_are_refused():
    components = VarianceComponents(reader=0.04, residual=0.09)
    with pytest.raises(ValueError, match="readers_per_arm must be at least 2"):
        time_power(n_cases=296, readers_per_arm=1, components=components, time_ratio=0.8)
    with pytest.raises(ValueError, match="alpha"):
        time_power(n_cases=296, readers_per_arm=10, components=components, time_ratio=0.8, alpha=1.5)
    with pytest.raises(ValueError, match="time_ratio"):
        time_power(n_cases=296, readers_per_arm=10, components=components, time_ratio=0.0)
    with pytest.raises(ValueError, match="'reader' must be finite"):
        VarianceComponents(reader=-0.1)


def test_components_from_a_pilot_fit():
    trial = simulate_trial(seed=11)
    fit = fit_lmm(trial.scores, outcome="score", random=["case", "reader", "expert", "case:arm"],
                  covariates=["site"], **NEUTRAL)
    c = VarianceComponents.from_fit(fit)
    assert c.reader == fit.variance_components["reader"]
    assert c.report == fit.variance_components["case:arm"]
    assert c.residual == fit.residual_variance


def test_one_call_gives_all_three_endpoints_and_the_readers_they_need():
    quality = VarianceComponents.from_sds(reader=0.25, case=0.5, report=0.35, expert=0.3, residual=0.6)
    time = VarianceComponents.from_sds(reader=0.2, case=0.35, residual=0.3)
    result = paired_parallel_power(n_cases=296, readers_per_arm=10, n_experts=5, quality_components=quality,
                                   quality_effect=0.25, time_components=time, time_ratio=0.82, vote_sd=0.5,
                                   tie_band=0.25, n_sites=3)
    assert isinstance(result, PairedParallelPower) and isinstance(result.quality, ArmContrastPower)
    needed = result.readers_needed()
    assert set(needed) == {"quality", "time", "preference"}
    for name, by_target in needed.items():
        assert by_target["80%"] <= by_target["90%"]
        assert getattr(result, name).at_readers(by_target["80%"] // 2).power >= 0.8
    with pytest.raises(AttributeError):
        result.quality.power = 1.0                        # frozen, as scipy's result objects are


# --------------------------------------------------------------------------------------------
# Against simulated trials fitted with our own estimator (bench/stats_power.py runs 500 of each)


def _mc_check(rejections: list[bool], power: float) -> tuple[float, float]:
    simulated = float(np.mean(rejections))
    return simulated, math.sqrt(power * (1 - power) / len(rejections))


def test_time_power_matches_simulated_lmm_fits():
    # Parameters where power is mid-range (~0.53), so that a wrong variance moves it visibly: with
    # the readers ignored the analytic power would be ~1, with a z instead of t a few points higher.
    # Site differences are set to 0 because the time model prescribed has no site term (with them
    # the reader variance absorbs the sites and the test is conservative: bench/stats_power.py).
    p = SimulationParameters(time_ratio=0.82, time_reader_sd=0.2, time_case_sd=0.35, time_residual_sd=0.3,
                             site_time_effects=(0.0, 0.0, 0.0))
    analytic = time_power(n_cases=p.n_cases, readers_per_arm=p.n_readers // 2, time_ratio=p.time_ratio,
                          components=VarianceComponents.from_sds(reader=0.2, case=0.35, residual=0.3))
    assert 0.4 < analytic.power < 0.9
    rejections, estimates = [], []
    for seed in range(400):
        fit = fit_lmm(simulate_trial(p, seed=50_000 + seed).reads, outcome="time", log=True,
                      random=["case", "reader"], **NEUTRAL)
        rejections.append(fit.pvalue < 0.05)
        estimates.append(fit.estimate)
    simulated, mc_se = _mc_check(rejections, analytic.power)
    assert abs(simulated - analytic.power) < 3 * mc_se, (simulated, analytic.power, mc_se)
    # the analytic SE against the spread of the estimates (SE of an SD from 400 draws: 3.5 %)
    assert np.std(estimates, ddof=1) == pytest.approx(analytic.se, rel=0.11)


def test_quality_power_matches_simulated_lmm_fits_of_likert_scores():
    # Likert scores: the analytic power takes its score-scale inputs from the truth
    # (score_scale_truth), as it would take them from a pilot fit.
    p = SimulationParameters(quality_effect=0.25)
    truth = score_scale_truth(p)
    analytic = contrast_power(effect=truth.effect, reader_variance=truth.reader_variance,
                              case_difference_variance=truth.case_difference_variance, n_cases=p.n_cases,
                              readers_per_arm=p.n_readers // 2)
    assert 0.4 < analytic.power < 0.9
    rejections, ses = [], []
    for seed in range(100):
        fit = fit_lmm(simulate_trial(p, seed=60_000 + seed).scores, outcome="score",
                      random=["case", "reader", "expert", "case:arm"], covariates=["site"], **NEUTRAL)
        rejections.append(fit.pvalue < 0.05)
        ses.append(fit.se)
    simulated, mc_se = _mc_check(rejections, analytic.power)
    assert abs(simulated - analytic.power) < 3 * mc_se, (simulated, analytic.power, mc_se)
    # the fits' SEs against the analytic one: their RMS varies by ~2 % over 100 fits
    assert math.sqrt(np.mean(np.square(ses))) == pytest.approx(analytic.se, rel=0.08)


def test_preference_share_and_its_se_match_simulated_votes():
    p = SimulationParameters(quality_effect=0.25)
    analytic = preference_power(n_cases=p.n_cases, readers_per_arm=p.n_readers // 2, n_experts=p.n_experts,
                                components=VarianceComponents.from_sds(reader=p.reader_sd, report=p.report_sd),
                                effect=p.quality_effect, vote_sd=p.preference_sd, tie_band=p.tie_band,
                                n_sites=p.n_sites)
    shares = []
    for seed in range(1500):
        v = simulate_trial(p, seed=70_000 + seed).preferences["preferred"]
        shares.append(np.sum(v == "treatment") / np.sum(v != "none"))
    shares = np.asarray(shares)
    sd = shares.std(ddof=1)
    assert shares.mean() == pytest.approx(analytic.decisive_share, abs=3 * sd / math.sqrt(shares.size))
    # SE of an SD from 1,500 trials: 1.8 %; the delta method and the pair counts are approximations
    assert sd == pytest.approx(analytic.se, rel=0.08)
    # and the readers matter: the same votes as if independent would give a far smaller SE
    independent = math.sqrt(analytic.decisive_share * (1 - analytic.decisive_share)
                            / (p.n_cases * p.n_experts * (1 - analytic.p_none)))
    assert analytic.se > 2 * independent
