"""Type-I error and CI coverage of the default and the fixed-reader arm analyses on simulated trials with readers.

Run by hand from the repository root:  python bench/stats_null.py [--trials 200] [--seed 0] [--workers 2]

Trials: stats.methods.simulation (20 readers nested in arms within 3 sites, reader SD 0.25, report SD
0.35, 5 experts, 296 cases). Each trial is analysed by the default plan's models (random terms and
covariates read from stats.plan.default_plan("paired_parallel")) and by the fixed-reader analyses
they replaced:
  (a) OLD primary: paired t on the case means of the expert scores (scipy.stats.ttest_rel), which
      treats the readers as fixed and so ignores that they were randomized;
  (b) DEFAULT primary: fit_lmm(score ~ arm + site, random case, reader, expert, case:arm);
  (c) reading time: fit_lmm(log time ~ arm + site, random case, reader);
  (d) ordinal sensitivity: fit_ordinal_glmm (the same terms and covariate), small-sample corrected t,
      with clmm's own Wald z beside (d');
  (e) preference: fit_preference_glmm (random case, expert, both readers), corrected t, and glmer's z (e');
  (f) OLD preference: exact binomial test of case majorities (≥ 3 votes), fixed readers.
First NULL trials (no arm effect): rejection rate at α = 0.05 with its Monte-Carlo SE. Then trials
with a latent quality effect of 0.25 (and a time ratio of 0.82): coverage of the 95 % CIs, and power.
The LMM estimates the effect on the score scale, where thresholding makes the true difference not
0.25: it is computed exactly from the thresholds (simulation.expected_score_difference: each expert's
perceived quality is normal, so E[score] = 1 + Σ_k Φ((μ_site + δ − τ_k)/SD), averaged over the sites'
fixed case shares) and checked here against a large Monte Carlo of the simulator. Goals (issue 14):
(b), (d), (e) ≤ 0.075 and coverage of (b) ≥ 0.92; the exit status is 1 when one is missed.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from stats.methods.glmm import fit_ordinal_glmm, fit_preference_glmm  # noqa: E402
from stats.methods.lmm import fit_lmm  # noqa: E402
from stats.methods.preference import analyse_preference  # noqa: E402
from stats.methods.simulation import (  # noqa: E402
    SimulationParameters,
    expected_score_difference,
    simulate_trial,
)
from stats.plan import default_plan  # noqa: E402

PLAN = default_plan("paired_parallel")
QUALITY = {"random": PLAN["random_effects"]["quality"], "covariates": PLAN["covariates"]["quality"]}
TIME = {"random": PLAN["random_effects"]["reading_time"], "covariates": PLAN["covariates"]["reading_time"]}
ARMS = {"treatment": "treatment", "reference": "reference"}
GOAL_SIZE, GOAL_COVERAGE = 0.075, 0.92


def paired_t_on_case_means(scores: dict) -> tuple[float, float, float]:
    """(estimate, p-value, half-width of the 95 % CI) of the paired t on per-case expert-mean scores."""
    case = scores["case"]
    levels, code = np.unique(case, return_inverse=True)
    treated = scores["arm"] == "treatment"
    s = scores["score"].astype(float)
    mean_t = np.bincount(code[treated], s[treated], levels.size) / np.bincount(code[treated], minlength=levels.size)
    mean_r = np.bincount(code[~treated], s[~treated], levels.size) / np.bincount(code[~treated], minlength=levels.size)
    res = stats.ttest_rel(mean_t, mean_r)
    ci = res.confidence_interval(0.95)
    d = float(np.mean(mean_t - mean_r))
    return d, float(res.pvalue), float(ci.high - d)


def analyse(job: tuple[SimulationParameters, int]) -> dict[str, float]:
    """Every analysis of one trial: estimates, p-values and 95 % intervals."""
    parameters, seed = job
    trial = simulate_trial(parameters, seed=seed)
    d, p_old, half = paired_t_on_case_means(trial.scores)
    q = fit_lmm(trial.scores, outcome="score", **QUALITY, **ARMS)
    t = fit_lmm(trial.reads, outcome="time", log=True, **TIME, **ARMS)
    o = fit_ordinal_glmm(trial.scores, outcome="score", **QUALITY, **ARMS)
    g = fit_preference_glmm(trial.preferences, **ARMS)
    p = trial.preferences
    majority = analyse_preference(case=p["case"], expert=p["expert"], choice=p["preferred"],
                                  min_votes=PLAN["preference_min_votes"], **ARMS)
    q_ci, t_ci = q.confidence_interval(0.95), t.confidence_interval(0.95)
    return {"old_est": d, "old_p": p_old, "old_low": d - half, "old_high": d + half,
            "lmm_est": q.estimate, "lmm_p": q.pvalue, "lmm_low": q_ci.low, "lmm_high": q_ci.high, "lmm_df": q.df,
            "time_est": t.estimate, "time_p": t.pvalue, "time_low": t_ci.low, "time_high": t_ci.high,
            "time_df": t.df, "ord_p": o.pvalue, "ord_z": o.pvalue_z, "ord_df": o.df,
            "ord_ratio": o.standard_error / o.ml_standard_error, "pref_p": g.pvalue, "pref_z": g.pvalue_z,
            "pref_df": g.df, "pref_low": g.confidence_interval(0.95).low, "pref_high": g.confidence_interval(0.95).high,
            "major_p": majority.pvalue,
            "converged": float(q.converged and t.converged and o.converged and g.converged)}


def run(parameters: SimulationParameters, n_trials: int, seed: int, workers: int) -> dict[str, np.ndarray]:
    jobs = [(parameters, seed + i) for i in range(n_trials)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            rows = list(pool.map(analyse, jobs, chunksize=4))
    else:
        rows = [analyse(j) for j in jobs]
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def rate(flags: np.ndarray) -> str:
    p = float(np.mean(flags))
    return f"{p:.3f} ± {math.sqrt(p * (1 - p) / flags.size):.3f}"


def monte_carlo_score_difference(parameters: SimulationParameters, n_trials: int, seed: int) -> tuple[float, float]:
    """Mean over many big simulated trials of (mean treatment score − mean reference score), with its SE."""
    # Many trials of many readers: a trial's difference varies with its readers (2σ²/k) and, the
    # thresholds being nonlinear, with its panel of experts too, so both must be averaged over.
    big = dataclasses.replace(parameters, n_cases=2_000, n_readers=200)
    diffs = []
    for i in range(n_trials):
        s = simulate_trial(big, seed=seed + i).scores
        t = s["arm"] == "treatment"
        diffs.append(s["score"][t].mean() - s["score"][~t].mean())
    diffs = np.asarray(diffs)
    return float(diffs.mean()), float(diffs.std(ddof=1) / math.sqrt(diffs.size))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mc-trials", type=int, default=1000, help="big trials for the Monte Carlo of the truth")
    args = ap.parse_args()
    null = SimulationParameters(quality_effect=0.0, time_ratio=1.0)
    alt = SimulationParameters(quality_effect=0.25, time_ratio=0.82)
    print(f"{args.trials} trials per set: {null.n_cases} cases, {null.n_readers} readers nested in arms "
          f"({null.n_sites} sites), {null.n_experts} experts; reader SD {null.reader_sd}, report SD "
          f"{null.report_sd}, case SD {null.case_sd}, expert SD {null.expert_sd}, residual SD {null.residual_sd}; "
          f"time: reader SD {null.time_reader_sd}, case SD {null.time_case_sd}, residual SD {null.time_residual_sd}, "
          f"site effects {null.site_time.round(3).tolist()} (log scale)")
    print(f"default plan: quality random {QUALITY['random']}, covariates {QUALITY['covariates']}; time random "
          f"{TIME['random']}, covariates {TIME['covariates']}; "
          f"case majority from ≥ {PLAN['preference_min_votes']} votes")

    t0 = time.perf_counter()
    r0 = run(null, args.trials, args.seed, args.workers)
    t_null = time.perf_counter() - t0
    print(f"\nNULL (no arm effect), type-I error at alpha = 0.05 (± MC SE)   [{t_null:.0f} s; "
          f"not converged: {int(np.sum(r0['converged'] == 0))}]")
    print(f"  (a)  OLD paired t on case means (fixed readers)          {rate(r0['old_p'] < 0.05)}")
    print(f"  (b)  DEFAULT primary: LMM score ~ arm + site, random case, reader, expert, case:arm   "
          f"{rate(r0['lmm_p'] < 0.05)}   (median Satterthwaite df {np.median(r0['lmm_df']):.1f})")
    print(f"  (c)  LMM log time ~ arm + site, random case, reader      {rate(r0['time_p'] < 0.05)}   "
          f"(median df {np.median(r0['time_df']):.1f})")
    print(f"  (d)  ordinal GLMM, corrected t [default sensitivity]     {rate(r0['ord_p'] < 0.05)}   "
          f"(median df {np.median(r0['ord_df']):.1f}, median SE ratio {np.median(r0['ord_ratio']):.3f})")
    print(f"  (d') ordinal GLMM, clmm's Wald z                         {rate(r0['ord_z'] < 0.05)}")
    print(f"  (e)  preference GLMM, corrected t [default]              {rate(r0['pref_p'] < 0.05)}   "
          f"(median df {np.median(r0['pref_df']):.1f}; CI of P(prefers treatment) covers ½: "
          f"{rate((r0['pref_low'] <= 0.5) & (0.5 <= r0['pref_high']))})")
    print(f"  (e') preference GLMM, glmer's Wald z                     {rate(r0['pref_z'] < 0.05)}")
    print(f"  (f)  OLD binomial test of case majorities (fixed readers) {rate(r0['major_p'] < 0.05)}")

    t0 = time.perf_counter()
    r1 = run(alt, args.trials, args.seed + 1_000_000, args.workers)
    t_alt = time.perf_counter() - t0
    truth = expected_score_difference(alt)
    mc, mc_se = monte_carlo_score_difference(alt, args.mc_trials, seed=args.seed + 2_000_000)
    log_ratio = math.log(alt.time_ratio)
    print(f"\nEFFECT: latent quality difference {alt.quality_effect}, time ratio {alt.time_ratio}   [{t_alt:.0f} s]")
    print(f"  true expected score difference (exact, from the thresholds): {truth:.5f}; "
          f"Monte Carlo of the simulator ({args.mc_trials:,} trials × 2,000 cases, 200 readers): "
          f"{mc:.5f} ± {mc_se:.5f}")
    print("  coverage of the 95 % CI (± MC SE); mean estimate (its MC SE); power at alpha = 0.05")
    for name, key, target in (("(a) OLD paired t", "old", truth), ("(b) DEFAULT LMM quality", "lmm", truth),
                              ("(c) LMM log time", "time", log_ratio)):
        covered = (r1[f"{key}_low"] <= target) & (target <= r1[f"{key}_high"])
        est = r1[f"{key}_est"]
        print(f"  {name:<24} {rate(covered)}   mean {est.mean():+.4f} ({est.std(ddof=1) / math.sqrt(est.size):.4f}) "
              f"vs truth {target:+.4f}; power {float(np.mean(r1[f'{key}_p'] < 0.05)):.3f}")
    print(f"  power of (d) ordinal GLMM {np.mean(r1['ord_p'] < 0.05):.3f}, (e) preference GLMM "
          f"{np.mean(r1['pref_p'] < 0.05):.3f}, (f) case majorities {np.mean(r1['major_p'] < 0.05):.3f}")
    sizes = {name: float(np.mean(r0[k] < 0.05)) for name, k in (("primary LMM", "lmm_p"), ("ordinal GLMM", "ord_p"),
                                                               ("preference GLMM", "pref_p"))}
    coverage = float(np.mean((r1["lmm_low"] <= truth) & (truth <= r1["lmm_high"])))
    ok = all(v <= GOAL_SIZE for v in sizes.values()) and coverage >= GOAL_COVERAGE
    print(f"\ntype-I ≤ {GOAL_SIZE} ({', '.join(f'{k} {v:.3f}' for k, v in sizes.items())}) and coverage of the "
          f"primary ≥ {GOAL_COVERAGE} ({coverage:.3f}): {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
