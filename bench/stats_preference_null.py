"""Type-I error of the expert-preference GLMM test on simulated null trials with randomized readers; prints its figures.

Run by hand from the repository root:  python bench/stats_preference_null.py [--trials 500] [--seed 0]

Trials: stats.methods._laplace_simulate (20 readers split between the arms, reader SD 0.25 on the
latent quality scale that drives the preference, case and report effects, 5 experts with their own
perception noise, discrimination and side bias, a tie band; 296 cases), no arm effect. Each trial is
analysed by:
  (a) fit_preference_glmm: logistic GLMM on the decisive votes with random case, expert and both
      readers; t test with the small-sample corrected SE and the Satterthwaite df (ours, the default);
  (b) the same fit with glmer's Wald z (its own SE on N(0, 1): `pvalue_z`);
  (c) an exact binomial test of the case majorities (wins against losses), which ignores the readers.
The rejection rate at α = 0.05 is printed with its Monte-Carlo standard error, with the coverage of
(a)'s 95 % interval of the preference probability (truth ½), the df, fit times and convergence.
Goal: (a) ≤ 0.075. The exit status is 1 when (a) exceeds it. `--effect` runs non-null trials instead
(a power figure; the goal is then not checked).
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from stats.methods._laplace_simulate import PreferenceSimulation, simulate_preference_votes  # noqa: E402
from stats.methods.glmm import fit_preference_glmm  # noqa: E402

GOAL = 0.075


def case_majority_pvalue(votes: dict[str, np.ndarray]) -> float:
    """Exact binomial test of the cases whose experts' strict majority preferred one report."""
    wins = losses = 0
    for case in np.unique(votes["case"]):
        v = votes["preferred"][votes["case"] == case]
        t, r = int(np.sum(v == "treatment")), int(np.sum(v == "reference"))
        half = v.size / 2
        wins += t > half
        losses += r > half
    return float(stats.binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else 1.0


def rate(pvalues: list[float], alpha: float = 0.05) -> tuple[float, float]:
    p = float(np.mean(np.asarray(pvalues) < alpha))
    return p, math.sqrt(p * (1 - p) / len(pvalues))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0, help="first seed; trial i uses seed + i")
    ap.add_argument("--readers", type=int, default=20)
    ap.add_argument("--cases", type=int, default=296)
    ap.add_argument("--experts", type=int, default=5)
    ap.add_argument("--reader-sd", type=float, default=0.25)
    ap.add_argument("--effect", type=float, default=0.0, help="latent quality effect (0: null trials)")
    args = ap.parse_args(argv)
    sim = PreferenceSimulation(n_cases=args.cases, n_readers=args.readers, n_experts=args.experts,
                               reader_sd=args.reader_sd, effect=args.effect)
    print(f"simulation: {sim}")
    print(f"{args.trials} trials, seeds {args.seed}…{args.seed + args.trials - 1}")
    ours, glmer_z, majority, covered, dfs, times, ties, est = [], [], [], [], [], [], [], []
    not_converged = 0
    for i in range(args.trials):
        votes = simulate_preference_votes(sim, args.seed + i)
        t0 = time.perf_counter()
        res = fit_preference_glmm(votes, treatment="treatment", reference="reference")
        times.append(time.perf_counter() - t0)
        not_converged += not res.converged
        ours.append(res.pvalue)
        glmer_z.append(res.pvalue_z)
        majority.append(case_majority_pvalue(votes))
        low, high = res.confidence_interval(0.95)
        covered.append(low <= 0.5 <= high)
        dfs.append(res.df)
        ties.append(res.n_ties / (res.n_votes + res.n_ties))
        est.append(res.log_odds)
    label = "type-I error" if args.effect == 0 else f"power at effect {args.effect}"
    print(f"\nrejection rate at alpha = 0.05 ({label}), ± Monte-Carlo SE:")
    for name, p in (("(a) GLMM, t with corrected SE and Satterthwaite df [default]", ours),
                    ("(b) GLMM, glmer's Wald z", glmer_z),
                    ("(c) binomial test of case majorities (fixed readers)", majority)):
        r, se = rate(p)
        print(f"  {name:62s} {r:.3f} ± {se:.3f}")
    if args.effect == 0:
        print(f"coverage of (a)'s 95 % CI of P(prefers treatment) = 0.5: {np.mean(covered):.3f}")
    print(f"Satterthwaite df: median {statistics.median(dfs):.1f}, 10th–90th percentile "
          f"{np.quantile(dfs, 0.1):.1f}–{np.quantile(dfs, 0.9):.1f}")
    print(f"log odds: mean {np.mean(est):+.3f}, SD {np.std(est):.3f}; ties {100 * np.mean(ties):.1f} % of votes")
    print(f"fit time: median {1000 * statistics.median(times):.0f} ms, max {1000 * max(times):.0f} ms; "
          f"not converged: {not_converged}")
    if args.effect == 0:
        r, _ = rate(ours)
        ok = r <= GOAL
        print(f"\ngoal (a) <= {GOAL}: {'met' if ok else 'NOT met'}")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
