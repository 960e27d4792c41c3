"""Time our REML + Satterthwaite fit of the reading-time LMM against R lme4 + lmerTest on the same data; the ratio.

Run by hand from the repository root:  python bench/stats_lmm.py [--readers 20] [--cases 2000] [--repeats 7]

The trial is the paper's paired-parallel design: readers randomized 1:1 to the arms, every case read
once in each arm (readers × cases/… → 2 × cases reads), log reading time with random reader and case
intercepts: `lmer(log(time) ~ arm + (1|reader) + (1|case), REML = TRUE)`.

What is timed, on both sides, is the fit that yields the arm effect with its Satterthwaite df:
ours `fit_lmm(...)`; in R `lmerTest::lmer(...)` (lme4's fit plus lmerTest's Hessian and Jacobian)
followed by `summary()` (the Satterthwaite t-tests). R is timed inside R with `system.time`, once
cold (the first fit in the session, as a script would run it) and then warm (median of repeats),
and the whole `Rscript` run is timed from outside too (start-up, loading lme4/lmerTest, reading
the CSV included). Goal: ours/R ≤ 1.0 and estimates equal to 1e-4 relative. Agreement is shown
against lme4's defaults (what an analyst runs; its bobyqa stops a little short of the optimum, which
moves the SE, df and reader variance in the 4th digit) and against lme4 run to its optimum; the
exit status checks the latter.
"""
from __future__ import annotations

import argparse
import csv
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from stats.methods.lmm import fit_lmm  # noqa: E402

R_SCRIPT = r"""
t_load <- system.time(suppressPackageStartupMessages({ library(lme4); library(lmerTest) }))[["elapsed"]]
out <- function(name, x) cat(sprintf("%s\t%.17g\n", name, x), sep = "")
d <- read.csv("@CSV@", stringsAsFactors = FALSE)
d$arm <- factor(d$arm, levels = c("standard", "assisted"))
f <- log(time) ~ arm + (1 | reader) + (1 | case)
fit_and_test <- function() {
  t1 <- system.time(m <- lmerTest::lmer(f, data = d, REML = TRUE))[["elapsed"]]
  t2 <- system.time(s <- summary(m))[["elapsed"]]
  list(m = m, s = s, t_fit = t1, t_summary = t2)
}
cold <- fit_and_test()
warm <- replicate(@REPEATS@, { r <- fit_and_test(); c(r$t_fit, r$t_summary) })
lme4_only <- replicate(@REPEATS@, system.time(lme4::lmer(f, data = d, REML = TRUE))[["elapsed"]])
out("time.load_packages", t_load)
out("time.cold_fit", cold$t_fit)
out("time.cold_summary", cold$t_summary)
out("time.warm_fit", median(warm[1, ]))
out("time.warm_summary", median(warm[2, ]))
out("time.warm_total", median(warm[1, ] + warm[2, ]))
out("time.lme4_only", median(lme4_only))
report <- function(tag, m, s) {
  a <- coef(s)["armassisted", ]
  out(paste0(tag, ".estimate"), a[["Estimate"]])
  out(paste0(tag, ".se"), a[["Std. Error"]])
  out(paste0(tag, ".df"), a[["df"]])
  out(paste0(tag, ".statistic"), a[["t value"]])
  out(paste0(tag, ".pvalue"), a[["Pr(>|t|)"]])
  vc <- as.data.frame(VarCorr(m))
  for (i in seq_len(nrow(vc))) out(paste0(tag, ".vc_", vc$grp[i]), vc$vcov[i])
  out(paste0(tag, ".reml"), REMLcrit(m))
}
report("default", cold$m, cold$s)
# The same fit run to lme4's optimum (tight nloptwrap tolerances), for the agreement check.
tight <- lmerControl(optimizer = "nloptwrap", optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14,
                     xtol_rel = 1e-12, ftol_rel = 1e-15, maxeval = 1e5))
t_tight <- system.time({ mt <- lmerTest::lmer(f, data = d, REML = TRUE, control = tight); st <- summary(mt) })
out("time.tight_total", t_tight[["elapsed"]])
report("tight", mt, st)
"""


PY_ONE_SHOT = """
import csv, sys
import numpy as np
from stats.methods.lmm import fit_lmm
with open(sys.argv[1], newline="") as fh:
    rows = list(csv.DictReader(fh))
data = {k: np.array([r[k] for r in rows]) for k in rows[0]}
data["time"] = data["time"].astype(float)
fit_lmm(data, outcome="time", random=["reader", "case"], log=True, treatment="assisted", reference="standard")
"""


def simulate(n_readers: int, n_cases: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    readers = {"standard": [f"s{i:02d}" for i in range(n_readers // 2)],
               "assisted": [f"a{i:02d}" for i in range(n_readers - n_readers // 2)]}
    reader_effect = {r: rng.normal(0, 0.2) for rs in readers.values() for r in rs}
    case_effect = rng.normal(0, 0.35, n_cases)
    reader, case, arm, log_time = [], [], [], []
    for c in range(n_cases):
        for a in ("standard", "assisted"):
            r = str(rng.choice(readers[a]))
            reader.append(r)
            case.append(f"case{c:05d}")
            arm.append(a)
            log_time.append(4.5 - 0.25 * (a == "assisted") + reader_effect[r] + case_effect[c] + rng.normal(0, 0.3))
    return {"reader": np.array(reader), "case": np.array(case), "arm": np.array(arm),
            "time": np.exp(np.array(log_time))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=20)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=2025)
    args = parser.parse_args()
    rscript = shutil.which("Rscript")
    if rscript is None:
        print("Rscript not found: install r-base-core r-cran-lme4 r-cran-lmertest", file=sys.stderr)
        return 2

    data = simulate(args.readers, args.cases, args.seed)
    n = data["time"].size
    random = ["reader", "case"]

    start = time.perf_counter()
    ours = fit_lmm(data, outcome="time", random=random, log=True, treatment="assisted", reference="standard")
    ours_cold = time.perf_counter() - start
    warm = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        fit_lmm(data, outcome="time", random=random, log=True, treatment="assisted", reference="standard")
        warm.append(time.perf_counter() - start)
    ours_warm = statistics.median(warm)

    with tempfile.TemporaryDirectory(prefix="cxr_bench_lmm_") as tmp:
        csv_path = Path(tmp) / "reads.csv"
        with open(csv_path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(list(data))
            w.writerows(zip(*(v.tolist() for v in data.values())))
        script = Path(tmp) / "bench.R"
        script.write_text(R_SCRIPT.replace("@CSV@", csv_path.as_posix()).replace("@REPEATS@", str(args.repeats)))
        start = time.perf_counter()
        proc = subprocess.run([rscript, "--vanilla", str(script)], capture_output=True, text=True)
        r_wall = time.perf_counter() - start
        # Our side as a fresh process too: interpreter start-up, imports, reading the CSV, one fit.
        start = time.perf_counter()
        ours_proc = subprocess.run([sys.executable, "-c", PY_ONE_SHOT, str(csv_path)],
                                   capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        ours_wall = time.perf_counter() - start
    if ours_proc.returncode != 0:
        print(ours_proc.stderr, file=sys.stderr)
        return 1
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return 1
    r: dict[str, float] = {}
    for line in proc.stdout.splitlines():
        if "\t" in line:
            key, value = line.split("\t")
            r[key] = float(value)

    def pairs(tag: str) -> dict[str, tuple[float, float]]:
        return {
            "estimate": (ours.estimate, r[f"{tag}.estimate"]),
            "se": (ours.se, r[f"{tag}.se"]),
            "df": (ours.df, r[f"{tag}.df"]),
            "t": (ours.statistic, r[f"{tag}.statistic"]),
            "p": (ours.pvalue, r[f"{tag}.pvalue"]),
            "var(reader)": (ours.variance_components["reader"], r[f"{tag}.vc_reader"]),
            "var(case)": (ours.variance_components["case"], r[f"{tag}.vc_case"]),
            "var(residual)": (ours.residual_variance, r[f"{tag}.vc_Residual"]),
            "REML criterion": (ours.reml_criterion, r[f"{tag}.reml"]),
        }

    print(f"paired-parallel trial: {args.readers} readers x {args.cases} cases = {n} reads; "
          f"log(time) ~ arm + (1|reader) + (1|case), REML, Satterthwaite df")
    print(f"arm effect (ours): beta = {ours.estimate:.6f}, SE = {ours.se:.6f}, df = {ours.df:.4f}, "
          f"p = {ours.pvalue:.3g}, time ratio = {ours.ratio:.4f} ({ours.percent_reduction:.2f} % reduction)")
    print()
    print("time (s)                          ours        R")
    print(f"  fit + Satterthwaite, first     {ours_cold:8.4f}  {r['time.cold_fit'] + r['time.cold_summary']:8.4f}"
          f"   (R: lmerTest::lmer {r['time.cold_fit']:.4f} + summary {r['time.cold_summary']:.4f})")
    print(f"  fit + Satterthwaite, warm med. {ours_warm:8.4f}  {r['time.warm_total']:8.4f}"
          f"   (R: lmerTest::lmer {r['time.warm_fit']:.4f} + summary {r['time.warm_summary']:.4f})")
    print(f"  lme4::lmer alone (no df), warm           {r['time.lme4_only']:8.4f}")
    print(f"  whole Rscript run (start-up, loading lme4/lmerTest {r['time.load_packages']:.2f} s, CSV, "
          f"1 + 2x{args.repeats} fits): {r_wall:.2f}")
    print(f"  whole python run (start-up, importing numpy/scipy/ours, CSV, 1 fit): {ours_wall:.2f}")
    print(f"ratio ours/R: first {ours_cold / (r['time.cold_fit'] + r['time.cold_summary']):.3f}, "
          f"warm {ours_warm / r['time.warm_total']:.3f}; "
          f"ours/lme4-alone (warm) {ours_warm / r['time.lme4_only']:.3f}")
    print()
    print(f"  lmerTest::lmer + summary with tight optimizer tolerances   {r['time.tight_total']:8.4f}")
    worst = {}
    for tag, title in (("default", "lme4 defaults"), ("tight", "lme4 run to its optimum (tight nloptwrap tolerances)")):
        print()
        print(f"agreement with R, {title}")
        print("                    ours                 R                    rel. diff")
        worst[tag] = 0.0
        for name, (a, b) in pairs(tag).items():
            rel = abs(a - b) / abs(b) if b != 0 else abs(a - b)
            worst[tag] = max(worst[tag], rel)
            print(f"  {name:16s}  {a:<20.12g} {b:<20.12g} {rel:.2e}")
        print(f"  largest relative difference: {worst[tag]:.2e}; REML criterion ours − R: "
              f"{ours.reml_criterion - r[f'{tag}.reml']:+.2e}")
    worst = worst["tight"]
    return 0 if worst < 1e-4 and math.isfinite(ours.df) else 1


if __name__ == "__main__":
    raise SystemExit(main())
