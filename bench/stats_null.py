"""Type-I error and CI coverage of the old and new default arm analyses on seeded simulated trials with reader effects.

Run by hand from the repository root:  python bench/stats_null.py [--trials 200] [--seed 0]

Trials: stats.methods.simulation (20 readers nested in arms within 3 sites, reader SD 0.25, report SD
0.35, 5 experts, 296 cases). For each trial:
  (a) OLD default: paired t on the case means of the expert scores (scipy.stats.ttest_rel), which
      treats the readers as fixed and so ignores that they were randomized;
  (b) NEW default: fit_lmm(score ~ arm + site, random case, reader, expert, case:arm);
  (c) reading time: fit_lmm(log time, random case, reader).
First NULL trials (no arm effect): rejection rate at α = 0.05 with its Monte-Carlo SE. Then trials
with a latent quality effect of 0.25 (and a time ratio of 0.82): coverage of the 95 % CIs. The LMM
estimates the effect on the score scale, where thresholding makes the true difference not 0.25:
it is computed exactly from the thresholds (simulation.expected_score_difference: each expert's
perceived quality is normal, so E[score] = 1 + Σ_k Φ((μ_site + δ − τ_k)/SD), averaged over the
sites' fixed case shares) and checked here against a large Monte Carlo of the simulator.
Expected: old paired t ≈ 0.3+ type-I error, new LMM ≤ 0.075, coverage ≥ 0.92.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from stats.methods.lmm import fit_lmm  # noqa: E402
from stats.methods.simulation import (  # noqa: E402
    SimulationParameters,
    expected_score_difference,
    simulate_trial,
)

QUALITY_RANDOM = ["case", "reader", "expert", "case:arm"]
TIME_RANDOM = ["case", "reader"]
ARMS = {"treatment": "treatment", "reference": "reference"}


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


def analyse(trial) -> dict[str, float]:
    """The three analyses of one trial: estimates, p-values and 95 % intervals."""
    d, p_old, half = paired_t_on_case_means(trial.scores)
    q = fit_lmm(trial.scores, outcome="score", random=QUALITY_RANDOM, covariates=["site"], **ARMS)
    t = fit_lmm(trial.reads, outcome="time", log=True, random=TIME_RANDOM, **ARMS)
    q_ci, t_ci = q.confidence_interval(0.95), t.confidence_interval(0.95)
    return {"old_est": d, "old_p": p_old, "old_low": d - half, "old_high": d + half,
            "lmm_est": q.estimate, "lmm_p": q.pvalue, "lmm_low": q_ci.low, "lmm_high": q_ci.high, "lmm_df": q.df,
            "time_est": t.estimate, "time_p": t.pvalue, "time_low": t_ci.low, "time_high": t_ci.high,
            "time_df": t.df}


def run(parameters: SimulationParameters, n_trials: int, seed: int) -> dict[str, np.ndarray]:
    rows = [analyse(simulate_trial(parameters, seed=seed + i)) for i in range(n_trials)]
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
    args = ap.parse_args()
    null = SimulationParameters(quality_effect=0.0, time_ratio=1.0)
    alt = SimulationParameters(quality_effect=0.25, time_ratio=0.82)
    print(f"{args.trials} trials per set: {null.n_cases} cases, {null.n_readers} readers nested in arms "
          f"({null.n_sites} sites), {null.n_experts} experts; reader SD {null.reader_sd}, report SD "
          f"{null.report_sd}, case SD {null.case_sd}, expert SD {null.expert_sd}, residual SD {null.residual_sd}; "
          f"time: reader SD {null.time_reader_sd}, case SD {null.time_case_sd}, residual SD {null.time_residual_sd}, "
          f"site effects {null.site_time.round(3).tolist()} (log scale)")

    t0 = time.perf_counter()
    r0 = run(null, args.trials, seed=args.seed)
    t_null = time.perf_counter() - t0
    print(f"\nNULL (no arm effect), type-I error at alpha = 0.05 (± MC SE)   [{t_null:.0f} s]")
    print(f"  (a) OLD paired t on case means (ttest_rel)          {rate(r0['old_p'] < 0.05)}")
    print(f"  (b) NEW LMM score ~ arm + site, random case, reader, expert, case:arm   "
          f"{rate(r0['lmm_p'] < 0.05)}   (median Satterthwaite df {np.median(r0['lmm_df']):.1f})")
    print(f"  (c) LMM log time, random case, reader               {rate(r0['time_p'] < 0.05)}   "
          f"(median df {np.median(r0['time_df']):.1f})")

    t0 = time.perf_counter()
    r1 = run(alt, args.trials, seed=args.seed + 1_000_000)
    t_alt = time.perf_counter() - t0
    truth = expected_score_difference(alt)
    mc, mc_se = monte_carlo_score_difference(alt, 1000, seed=args.seed + 2_000_000)
    log_ratio = math.log(alt.time_ratio)
    print(f"\nEFFECT: latent quality difference {alt.quality_effect}, time ratio {alt.time_ratio}   [{t_alt:.0f} s]")
    print(f"  true expected score difference (exact, from the thresholds): {truth:.5f}; "
          f"Monte Carlo of the simulator (1,000 trials × 2,000 cases, 200 readers): {mc:.5f} ± {mc_se:.5f}")
    print("  coverage of the 95 % CI (± MC SE); mean estimate (its MC SE)")
    for name, key, target in (("(a) OLD paired t", "old", truth), ("(b) NEW LMM quality", "lmm", truth),
                              ("(c) LMM log time", "time", log_ratio)):
        covered = (r1[f"{key}_low"] <= target) & (target <= r1[f"{key}_high"])
        est = r1[f"{key}_est"]
        print(f"  {name:<22} {rate(covered)}   mean {est.mean():+.4f} ({est.std(ddof=1) / math.sqrt(est.size):.4f}) "
              f"vs truth {target:+.4f}; power {float(np.mean(r1[f'{key}_p'] < 0.05)):.3f}")
    ok = (np.mean(r0["lmm_p"] < 0.05) <= 0.075
          and np.mean((r1["lmm_low"] <= truth) & (truth <= r1["lmm_high"])) >= 0.92)
    print(f"\nNEW LMM type-I ≤ 0.075 and coverage ≥ 0.92: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
