"""The default analyses of a reader-randomized trial, as a run computes them, against R (lmerTest, ordinal, lme4).

One simulated paired-parallel trial (stats.simulate: 12 readers nested in arms within 3 sites, reader,
case, report and expert effects) is analysed by stats.analysis with the default plan's models; R
fits the same models to the same rows. R runs to its optimum (BOBYQA with tolerances of 1e-14): the
REML criterion is so flat near it that lme4's defaults, and even bobyqa with rhoend 1e-12, stop at
points whose Satterthwaite df differ from each other in the 6th digit.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from stats import analysis, dataset, simulate
from stats import plan as plan_schema
from stats.methods.lmm import fit_lmm_interaction

from .rscript import require_r_packages, run_r

T, R = "X", "Y"


@pytest.fixture(scope="module")
def trial():
    facts, rows = simulate.simulate_rows(n_readers=12, n_cases=90, n_experts=4, seed=14)
    view = dataset.coded(dataset.build_snapshot(trial=facts, rows=rows), {"X": "assisted", "Y": "standard"})
    plan = plan_schema.default_plan()
    plan.update(secondary=[], sensitivity=[{"endpoint": "quality", "test": "ordinal_glmm"}],
                exploratory=[{"endpoint": "detection", "test": "glmm"}],
                subgroups=[{"name": "site", "by": "site", "endpoints": ["quality"]},
                           {"name": "complex_reference", "by": "reference", "min_findings": 2,
                            "endpoints": ["quality"]}])
    results = analysis.run_analysis(view, plan=plan_schema.validate(plan), design="paired_parallel",
                                    findings=facts["findings"])
    site = {c["case"]: c["site"] for c in dataset.view_records(view, "cases")}
    scores = [{**q, "site": site[q["case"]]} for q in dataset.view_records(view, "quality_scores")]
    truth = {(x["case"], x["finding"]): x["truth"] for x in dataset.view_records(view, "reference_standard")}
    calls = [{**c, "truth": truth[(c["case"], c["finding"])], "correct": int(c["call"] == truth[(c["case"],
                                                                                               c["finding"])])}
             for c in dataset.view_records(view, "reader_calls")]
    positives = {}
    for (c, _), t in truth.items():
        positives[c] = positives.get(c, 0) + t
    for q in scores:
        q["complex"] = "≥ 2" if positives[q["case"]] >= 2 else "< 2"
    return {"results": results, "scores": scores, "calls": calls}


def write_csv(rows: list[dict], keys: list[str], path: Path) -> str:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(keys)
        w.writerows([[r[k] for k in keys] for r in rows])
    return path.as_posix()


def tagged(stdout: str) -> dict[str, float]:
    out = {}
    for line in stdout.splitlines():
        if "\t" in line:
            key, value = line.split("\t")
            out[key] = float(value)
    if not out:
        pytest.fail(f"no numbers read back from R:\n{stdout}")
    return out


_HEADER = r"""
out <- function(name, x) cat(sprintf("%s\t%.17g\n", name, x), sep = "")
d <- read.csv("{csv}", stringsAsFactors = FALSE, encoding = "UTF-8")
d$arm <- factor(d$arm, levels = c("Y", "X"))
for (v in intersect(c("case", "reader", "expert", "site", "finding", "complex"), names(d))) d[[v]] <- factor(d[[v]])
"""

_LMER = _HEADER + r"""
suppressPackageStartupMessages(library(lmerTest))
tight <- lmerControl(optimizer = "nloptwrap", optCtrl = list(algorithm = "NLOPT_LN_BOBYQA", xtol_abs = 1e-14,
                     ftol_abs = 1e-16, xtol_rel = 1e-14, ftol_rel = 1e-16, maxeval = 1e5))
m <- lmer(score ~ arm + site + (1 | case) + (1 | reader) + (1 | expert) + (1 | case:arm), data = d, control = tight)
a <- coef(summary(m))["armX", ]
out("estimate", a[["Estimate"]]); out("se", a[["Std. Error"]]); out("df", a[["df"]]); out("p", a[["Pr(>|t|)"]])
for (by in c("site", "complex")) {{
  f <- if (by == "site") score ~ arm * site + (1 | case) + (1 | reader) + (1 | expert) + (1 | case:arm)
       else score ~ arm * complex + site + (1 | case) + (1 | reader) + (1 | expert) + (1 | case:arm)
  mi <- lmer(f, data = d, control = tight)
  an <- anova(mi)
  row <- an[paste0("arm:", by), ]
  out(paste0(by, ".F"), row[["F value"]]); out(paste0(by, ".ndf"), row[["NumDF"]])
  out(paste0(by, ".ddf"), row[["DenDF"]]); out(paste0(by, ".p"), row[["Pr(>F)"]])
}}
"""


@pytest.mark.r_oracle
def test_the_default_primary_lmm_with_site_equals_lmertest(trial, tmp_path):
    require_r_packages("lme4", "lmerTest")
    a = trial["results"]["analyses"]["quality.lmm"]
    assert a["role"] == "primary" and a["status"] == "ok"
    assert a["random_terms"] == ["case", "reader", "expert", "case:arm"] and a["covariates"] == ["site"]
    path = write_csv(trial["scores"], ["score", "arm", "case", "reader", "expert", "site", "complex"],
                     tmp_path / "scores.csv")
    r = tagged(run_r(_LMER.format(csv=path), timeout=240))
    ours = a["result"]
    for key, rkey in (("estimate", "estimate"), ("se", "se"), ("df", "df"), ("pvalue", "p")):
        assert ours[key] == pytest.approx(r[rkey], rel=1e-6), key
    # the interaction F of both subgroup kinds: site (2 numerator df) and case complexity (1), as anova() gives it
    by_key = {"site": "subgroup.site.quality.interaction",
              "complex": "subgroup.complex_reference.quality.interaction"}
    for by, key in by_key.items():
        got = trial["results"]["analyses"][key]
        assert got["status"] == "ok", got.get("reason")
        res = got["result"]
        assert res["df_numerator"] == r[f"{by}.ndf"] == (2 if by == "site" else 1)
        assert res["statistic"] == pytest.approx(r[f"{by}.F"], rel=1e-6), by
        assert res["df_denominator"] == pytest.approx(r[f"{by}.ddf"], rel=1e-6), by
        assert res["pvalue"] == pytest.approx(r[f"{by}.p"], rel=1e-6), by
    # the same F from the method directly, on the same rows
    data = {k: np.array([q[k] for q in trial["scores"]]) for k in ("score", "arm", "case", "reader", "expert", "site",
                                                                   "complex")}
    direct = fit_lmm_interaction(data, outcome="score", random=["case", "reader", "expert", "case:arm"],
                                 by="complex", covariates=["site"], treatment=T, reference=R)
    assert direct.statistic == pytest.approx(r["complex.F"], rel=1e-6)
    assert direct.df_denominator == pytest.approx(r["complex.ddf"], rel=1e-6)


_CLMM = _HEADER + r"""
suppressPackageStartupMessages(library(ordinal))
d$score <- factor(d$score, ordered = TRUE)
m <- clmm(score ~ arm + site + (1 | case) + (1 | reader) + (1 | expert) + (1 | case:arm), data = d, link = "logit")
co <- coef(summary(m))
out("estimate", co["armX", "Estimate"]); out("se", co["armX", "Std. Error"]); out("p", co["armX", "Pr(>|z|)"])
vc <- VarCorr(m)
for (nm in names(vc)) out(paste0("vc.", nm), vc[[nm]][1])
out("loglik", as.numeric(logLik(m)))
"""


@pytest.mark.r_oracle
def test_the_ordinal_sensitivity_equals_clmm_with_four_crossed_intercepts_and_site(trial, tmp_path):
    require_r_packages("ordinal")
    a = trial["results"]["analyses"]["quality.ordinal_glmm"]
    assert a["status"] == "ok" and a["covariates"] == ["site"]
    path = write_csv(trial["scores"], ["score", "arm", "case", "reader", "expert", "site"], tmp_path / "scores.csv")
    r = tagged(run_r(_CLMM.format(csv=path), timeout=300))
    ours = a["result"]
    diffs = {"estimate": abs(ours["estimate"] - r["estimate"]), "se (clmm's)": abs(ours["ml_se"] - r["se"]),
             "p (clmm's z)": abs(ours["pvalue_z"] - r["p"]),
             **{f"variance {t}": abs(v - r[f"vc.{t}"]) for t, v in ours["variance_components"].items()}}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] < 1e-3, f"largest |ours − clmm| is {worst} = {diffs[worst]:.2e}"
    assert ours["log_likelihood"] >= r["loglik"] - 1e-6
    # the reported test is the small-sample corrected one: never more liberal than clmm's z
    assert ours["se"] > ours["ml_se"] and ours["pvalue"] > ours["pvalue_z"] and 2 < ours["df"] < 200


_GLMER = _HEADER + r"""
suppressPackageStartupMessages(library(lme4))
tight <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5), tolPwrss = 1e-12)
for (measure in c("sensitivity", "specificity")) {{
  s <- d[d$truth == (measure == "sensitivity"), ]
  m <- glmer(correct ~ arm + finding + (1 | case) + (1 | reader), data = s, family = binomial, control = tight)
  co <- coef(summary(m))
  out(paste0(measure, ".estimate"), co["armX", "Estimate"]); out(paste0(measure, ".se"), co["armX", "Std. Error"])
  out(paste0(measure, ".p"), co["armX", "Pr(>|z|)"])
  vc <- as.data.frame(VarCorr(m))
  for (i in seq_len(nrow(vc))) out(paste0(measure, ".vc.", vc$grp[i]), vc$vcov[i])
}}
"""


@pytest.mark.r_oracle
def test_the_detection_glmm_equals_glmer_pooled_with_a_finding_effect(trial, tmp_path):
    require_r_packages("lme4")
    a = trial["results"]["analyses"]["detection.glmm"]
    assert a["status"] == "ok" and a["random_terms"] == ["case", "reader"]
    path = write_csv(trial["calls"], ["correct", "truth", "arm", "case", "reader", "finding"], tmp_path / "calls.csv")
    r = tagged(run_r(_GLMER.format(csv=path), timeout=240))
    for measure in ("sensitivity", "specificity"):
        fit = a["result"]["pooled"][measure]
        assert fit["status"] == "ok", fit["reason"]
        ours = fit["result"]
        diffs = {"estimate": abs(ours["estimate"] - r[f"{measure}.estimate"]),
                 "se (glmer's)": abs(ours["ml_se"] - r[f"{measure}.se"]),
                 "p (glmer's z)": abs(ours["pvalue_z"] - r[f"{measure}.p"]),
                 **{f"variance {t}": abs(v - r[f"{measure}.vc.{t}"]) for t, v in ours["variance_components"].items()}}
        worst = max(diffs, key=diffs.get)
        assert diffs[worst] < 1e-3, f"{measure}: largest |ours − glmer| is {worst} = {diffs[worst]:.2e}"
        assert ours["pvalue"] >= ours["pvalue_z"]
