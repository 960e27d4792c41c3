"""Analytic power of the paired-parallel design (stats/methods/power.py) against simulated trials fitted with our LMM.

Run by hand from the repository root:  python bench/stats_power.py [--replicates 500] [--seed 0]

Each replicate is a trial drawn by stats.methods.simulation (296 cases, 20 readers nested in arms
within 3 sites, 5 experts) and fitted with stats.methods.lmm.fit_lmm, the estimator the trial
reports; the simulated power is its rejection rate at α = 0.05, with the Monte-Carlo SE
√(p(1 − p)/replicates) of the analytic p. Printed for:

- reading time: ratio 0.82, reader SD 0.2, case SD 0.35, residual SD 0.3 (log scale), no site
  differences (the prescribed time model has no site term; a second line shows what site differences
  do to it: absorbed by the reader variance, they make the test conservative);
  fit_lmm(log time, random case, reader);
- quality: latent effect 0.25, reader SD 0.25, report SD 0.35 (simulation defaults), Likert scores;
  fit_lmm(score ~ arm + site, random case, reader, expert, case:arm). The analytic power takes its
  score-scale inputs from the truth (simulation.score_scale_truth: the exact expected score
  difference, the reader variance of expected scores by quadrature, the case-difference variance
  by Monte Carlo), as a pilot study's estimates would supply them;
- preference: analytic vs simulated SD of the decisive share (no fit needed);
- readers needed for 80 % and 90 % power at these settings.
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

from stats.methods.lmm import fit_lmm  # noqa: E402
from stats.methods.power import (  # noqa: E402
    VarianceComponents,
    contrast_power,
    preference_power,
    time_power,
)
from stats.methods.simulation import SimulationParameters, score_scale_truth, simulate_trial  # noqa: E402

ARMS = {"treatment": "treatment", "reference": "reference"}
TIME = SimulationParameters(time_ratio=0.82, time_reader_sd=0.2, time_case_sd=0.35, time_residual_sd=0.3,
                            site_time_effects=(0.0, 0.0, 0.0))
QUALITY = SimulationParameters(quality_effect=0.25)


def simulated_time_fits(parameters: SimulationParameters, replicates: int, seed: int) -> dict[str, np.ndarray]:
    rows = []
    for i in range(replicates):
        fit = fit_lmm(simulate_trial(parameters, seed=seed + i).reads, outcome="time", log=True,
                      random=["case", "reader"], **ARMS)
        rows.append((fit.pvalue, fit.estimate, fit.se, fit.df))
    a = np.array(rows)
    return {"p": a[:, 0], "estimate": a[:, 1], "se": a[:, 2], "df": a[:, 3]}


def simulated_quality_fits(parameters: SimulationParameters, replicates: int, seed: int) -> dict[str, np.ndarray]:
    rows = []
    for i in range(replicates):
        fit = fit_lmm(simulate_trial(parameters, seed=seed + i).scores, outcome="score",
                      random=["case", "reader", "expert", "case:arm"], covariates=["site"], **ARMS)
        rows.append((fit.pvalue, fit.estimate, fit.se, fit.df))
    a = np.array(rows)
    return {"p": a[:, 0], "estimate": a[:, 1], "se": a[:, 2], "df": a[:, 3]}


def compare(name: str, analytic, sims: dict[str, np.ndarray], seconds: float) -> bool:
    n = sims["p"].size
    simulated = float(np.mean(sims["p"] < 0.05))
    mc_se = math.sqrt(analytic.power * (1 - analytic.power) / n)
    z = (simulated - analytic.power) / mc_se
    print(f"{name}: analytic power {analytic.power:.4f}, simulated {simulated:.4f} ({n} fits, {seconds:.0f} s); "
          f"MC SE {mc_se:.4f}; difference {z:+.2f} MC SE")
    print(f"    SE of the effect: analytic {analytic.se:.5f}, "
          f"SD of the estimates {np.std(sims['estimate'], ddof=1):.5f}, "
          f"RMS of the fitted SEs {math.sqrt(np.mean(sims['se'] ** 2)):.5f}; df: Welch–Satterthwaite "
          f"{analytic.df:.1f}, median Satterthwaite of the fits {np.median(sims['df']):.1f}")
    return abs(z) <= 3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    k = TIME.n_readers // 2
    ok = True

    tc = VarianceComponents.from_sds(reader=TIME.time_reader_sd, case=TIME.time_case_sd,
                                     residual=TIME.time_residual_sd)
    t_power = time_power(n_cases=TIME.n_cases, readers_per_arm=k, components=tc, time_ratio=TIME.time_ratio)
    t0 = time.perf_counter()
    sims = simulated_time_fits(TIME, args.replicates, args.seed)
    ok &= compare("reading time (ratio 0.82)", t_power, sims, time.perf_counter() - t0)
    with_sites = dataclasses.replace(TIME, site_time_effects=None)
    t0 = time.perf_counter()
    sims = simulated_time_fits(with_sites, args.replicates, args.seed)
    n = sims["p"].size
    print(f"    with site differences {with_sites.site_time.tolist()} on log time and no site term in the model: "
          f"simulated {np.mean(sims['p'] < 0.05):.4f} ({n} fits, {time.perf_counter() - t0:.0f} s), "
          f"RMS fitted SE {math.sqrt(np.mean(sims['se'] ** 2)):.5f}")

    truth = score_scale_truth(QUALITY)
    q_power = contrast_power(effect=truth.effect, reader_variance=truth.reader_variance,
                             case_difference_variance=truth.case_difference_variance, n_cases=QUALITY.n_cases,
                             readers_per_arm=k, endpoint="quality")
    print(f"\nscore-scale truth of the quality effect 0.25 (latent): {truth}")
    t0 = time.perf_counter()
    sims = simulated_quality_fits(QUALITY, args.replicates, args.seed + 1_000_000)
    ok &= compare("quality (Likert scores)", q_power, sims, time.perf_counter() - t0)

    qc = VarianceComponents.from_sds(reader=QUALITY.reader_sd, report=QUALITY.report_sd)
    pref = preference_power(n_cases=QUALITY.n_cases, readers_per_arm=k, n_experts=QUALITY.n_experts, components=qc,
                            effect=QUALITY.quality_effect, vote_sd=QUALITY.preference_sd, tie_band=QUALITY.tie_band,
                            n_sites=QUALITY.n_sites)
    shares = []
    for i in range(20 * args.replicates):
        v = simulate_trial(QUALITY, seed=args.seed + 2_000_000 + i).preferences["preferred"]
        w, l_ = int(np.sum(v == "treatment")), int(np.sum(v == "reference"))
        shares.append(w / (w + l_))
    shares = np.asarray(shares)
    m = shares.size
    sd = shares.std(ddof=1)
    print(f"\npreference (decisive share, latent effect 0.25): analytic p {pref.decisive_share:.4f}, simulated mean "
          f"{shares.mean():.4f} ± {sd / math.sqrt(m):.4f}; analytic SE {pref.se:.5f}, simulated SD {sd:.5f} "
          f"± {sd / math.sqrt(2 * (m - 1)):.5f} ({m} trials); analytic power {pref.power:.3f} (df {pref.df:.1f})")

    print("\nreaders needed (total, both arms; 296 cases, α = 0.05):")
    for name, result in (("reading time, ratio 0.82", t_power), ("quality, score-scale Δ", q_power),
                         ("preference, decisive share", pref)):
        print(f"  {name:<28} power at 20 readers {result.power:.3f}; 80 %: {result.readers_for_80}; "
              f"90 %: {result.readers_for_90}")
    print(f"\nanalytic within 3 MC SE of simulated (time and quality): {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
