"""The crossed-intercept GLMMs (stats/methods/glmm.py) against clmm and glmer; their algebra, refusals and size."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit

from stats.methods import _laplace
from stats.methods._laplace_simulate import PreferenceSimulation, simulate_preference_votes
from stats.methods.glmm import fit_binomial_glmm, fit_ordinal_glmm, fit_preference_glmm
from stats.methods.lmm import grouping_codes

from .rscript import require_r_packages, run_r

ARMS = ("reference", "treatment")
QUALITY_RANDOM = ["case", "reader", "expert", "case:arm"]
CUTS = np.array([-1.6, -0.5, 0.6, 1.7])
FINDINGS = ("effusion", "nodule", "pneumothorax")
FINDING_EFFECT = {"effusion": 0.0, "nodule": -0.6, "pneumothorax": 0.4}


# --------------------------------------------------------------------------------------------
# Simulated paired-parallel trials (seeded): readers nested in arms, every case reported once per arm


def _assign_readers(rng: np.random.Generator, n_cases: int, n_readers: int) -> dict[str, np.ndarray]:
    half = n_readers // 2
    return {"reference": np.array([f"r{j:02d}" for j in rng.permutation(np.arange(n_cases) % half)]),
            "treatment": np.array([f"t{j:02d}" for j in rng.permutation(np.arange(n_cases) % half)])}


def simulate_quality(seed: int, *, n_cases: int = 120, n_readers: int = 12, n_experts: int = 4,
                     effect: float = 0.4, reader_sd: float = 0.4) -> dict[str, np.ndarray]:
    """Every expert scores every report 1–5: latent = effect·treatment + case + reader + report + expert + logistic."""
    rng = np.random.default_rng(seed)
    readers = _assign_readers(rng, n_cases, n_readers)
    reader_effect = {r: rng.normal(0, reader_sd) for rs in readers.values() for r in sorted(set(rs))}
    case_effect = rng.normal(0, 1.0, n_cases)
    expert_effect = rng.normal(0, 0.4, n_experts)
    rows: dict[str, list] = {k: [] for k in ("case", "arm", "reader", "expert", "score")}
    for c in range(n_cases):
        for arm in ARMS:
            reader = readers[arm][c]
            report = rng.normal(0, 0.6)
            for e in range(n_experts):
                latent = (effect * (arm == "treatment") + case_effect[c] + reader_effect[reader] + report
                          + expert_effect[e] + rng.logistic())
                rows["case"].append(f"c{c:03d}")
                rows["arm"].append(arm)
                rows["reader"].append(reader)
                rows["expert"].append(f"x{e}")
                rows["score"].append(int(1 + np.sum(latent > CUTS)))
    return {k: np.asarray(v) for k, v in rows.items()}


def simulate_detection(seed: int, *, n_cases: int = 150, n_readers: int = 12, log_or: float = 0.5,
                       intercept: float = 0.3, reader_sd: float = 0.5, case_sd: float = 0.8) -> dict[str, np.ndarray]:
    """Every report calls three findings: logit P(detected) = intercept + log_or·treatment + finding + case + reader."""
    rng = np.random.default_rng(seed)
    readers = _assign_readers(rng, n_cases, n_readers)
    reader_effect = {r: rng.normal(0, reader_sd) for rs in readers.values() for r in sorted(set(rs))}
    case_effect = rng.normal(0, case_sd, n_cases)
    rows: dict[str, list] = {k: [] for k in ("case", "arm", "reader", "finding", "detected")}
    for c in range(n_cases):
        for arm in ARMS:
            reader = readers[arm][c]
            for f in FINDINGS:
                eta = (intercept + log_or * (arm == "treatment") + FINDING_EFFECT[f] + case_effect[c]
                       + reader_effect[reader])
                rows["case"].append(f"c{c:03d}")
                rows["arm"].append(arm)
                rows["reader"].append(reader)
                rows["finding"].append(f)
                rows["detected"].append(int(rng.random() < expit(eta)))
    return {k: np.asarray(v) for k, v in rows.items()}


def write_csv(data: dict, path: Path) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(data))
        w.writerows(zip(*(v.tolist() for v in data.values())))
    return path


def parse_tagged(stdout: str) -> dict[str, dict[str, float]]:
    """Lines "tag.name<TAB>value" → {tag: {name: value}}."""
    out: dict[str, dict[str, float]] = {}
    for line in stdout.splitlines():
        if "\t" in line:
            key, value = line.split("\t")
            tag, name = key.split(".", 1)
            out.setdefault(tag, {})[name] = float(value)
    if not out:
        pytest.fail(f"no numbers read back from R:\n{stdout}")
    return out


_R_HEADER = r"""
out <- function(name, x) cat(sprintf("%s\t%.17g\n", name, x), sep = "")
d <- read.csv("{csv}", stringsAsFactors = FALSE)
"""

# --------------------------------------------------------------------------------------------
# R oracles

_R_CLMM = _R_HEADER + r"""
suppressPackageStartupMessages(library(ordinal))
for (v in c("case", "reader", "expert")) d[[v]] <- factor(d[[v]])
d$arm <- factor(d$arm, levels = c("reference", "treatment"))
d$score <- factor(d$score, ordered = TRUE)
m <- clmm(score ~ arm + (1 | case) + (1 | reader) + (1 | expert) + (1 | case:arm), data = d, link = "logit")
co <- coef(summary(m))
for (nm in rownames(co)) {{
  out(paste0("clmm.est.", nm), co[nm, "Estimate"])
  out(paste0("clmm.se.", nm), co[nm, "Std. Error"])
}}
out("clmm.p", co["armtreatment", "Pr(>|z|)"])
vc <- VarCorr(m)
for (nm in names(vc)) out(paste0("clmm.vc.", nm), vc[[nm]][1])
out("clmm.loglik", as.numeric(logLik(m)))
"""


@pytest.mark.r_oracle
def test_ordinal_glmm_matches_clmm_with_four_crossed_intercepts(tmp_path):
    require_r_packages("ordinal")
    data = simulate_quality(41)
    ours = fit_ordinal_glmm(data, outcome="score", random=QUALITY_RANDOM, treatment="treatment",
                            reference="reference")
    assert ours.converged
    csv_path = write_csv(data, tmp_path / "quality.csv")
    fit = parse_tagged(run_r(_R_CLMM.format(csv=csv_path.as_posix()), timeout=300))["clmm"]
    # clmm's own standard error and Wald z are ours as `ml_standard_error` and `pvalue_z` (changed on
    # purpose in issue 14: `standard_error` and `pvalue` are now the small-sample corrected ones)
    diffs = {
        "estimate": abs(ours.estimate - fit["est.armtreatment"]),
        "se": abs(ours.ml_standard_error - fit["se.armtreatment"]),
        "pvalue": abs(ours.pvalue_z - fit["p"]),
        **{f"variance {t}": abs(ours.variance_components[t] - fit[f"vc.{t}"]) for t in QUALITY_RANDOM},
        **{f"threshold {nm}": abs(v - fit[f"est.{nm}"]) for nm, v in ours.thresholds.items()},
        **{f"threshold se {nm}": abs(v - fit[f"se.{nm}"]) for nm, v in ours.thresholds_se.items()},
    }
    worst = max(diffs, key=diffs.get)
    # the goal is 1e-3; measured ≈ 2e-5, as precise as clmm's own optimum and finite-difference Hessian
    assert diffs[worst] < 1e-4, f"largest |ours − clmm| is {worst} = {diffs[worst]:.2e}"
    # ours is at least as good a maximum of the same Laplace likelihood
    assert ours.log_likelihood >= fit["loglik"] - 1e-7


_R_GLMER = _R_HEADER + r"""
suppressPackageStartupMessages(library(lme4))
if (!is.null(d$arm)) d$arm <- factor(d$arm, levels = c("reference", "treatment"))
fit <- function(tag, control) {{
  m <- glmer({formula}, data = d, family = binomial, nAGQ = 1, control = control)
  co <- coef(summary(m))
  for (nm in rownames(co)) {{
    out(paste0(tag, ".est.", nm), co[nm, "Estimate"])
    out(paste0(tag, ".se.", nm), co[nm, "Std. Error"])
    out(paste0(tag, ".p.", nm), co[nm, "Pr(>|z|)"])
  }}
  vc <- as.data.frame(VarCorr(m))
  for (i in seq_len(nrow(vc))) out(paste0(tag, ".vc.", vc$grp[i]), vc$vcov[i])
  out(paste0(tag, ".loglik"), as.numeric(logLik(m)))
}}
fit("default", glmerControl())
fit("tight", glmerControl(optimizer = "nloptwrap", tolPwrss = 1e-12,
                          optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12, ftol_rel = 1e-15,
                                         maxeval = 1e5)))
"""


def r_glmer(data: dict, formula: str, tmp_path: Path) -> dict[str, dict[str, float]]:
    require_r_packages("lme4")
    csv_path = write_csv(data, tmp_path / "glmer.csv")
    return parse_tagged(run_r(_R_GLMER.format(csv=csv_path.as_posix(), formula=formula), timeout=180))


def assert_matches_glmer(fixed: dict[str, float], fixed_se: dict[str, float], variances: dict[str, float],
                         loglik: float, r: dict[str, dict[str, float]]) -> None:
    # Run to convergence, glmer's optimum is ours (measured: ≤ 2e-5). Its default optimisers stop
    # short of it, at a log-likelihood up to ~1e-3 lower when a variance is on the boundary, and
    # their estimates then differ from the optimum's by up to ~1e-2; ours is never the worse maximum.
    for tag, tol in (("default", 1e-2), ("tight", 1e-4)):
        fit = r[tag]
        diffs = {**{f"est {nm}": abs(v - fit[f"est.{nm}"]) for nm, v in fixed.items()},
                 **{f"se {nm}": abs(v - fit[f"se.{nm}"]) for nm, v in fixed_se.items()},
                 **{f"variance {t}": abs(v - fit[f"vc.{t}"]) for t, v in variances.items()}}
        worst = max(diffs, key=diffs.get)
        assert diffs[worst] < tol, f"{tag}: largest |ours − glmer| is {worst} = {diffs[worst]:.2e}"
        assert loglik >= fit["loglik"] - 1e-6


@pytest.mark.r_oracle
def test_binomial_glmm_matches_glmer_with_crossed_intercepts_and_a_factor(tmp_path):
    data = simulate_detection(42)
    ours = fit_binomial_glmm(data, outcome="detected", random=["case", "reader"], arm="arm",
                             treatment="treatment", reference="reference", covariates=["finding"])
    assert ours.converged
    assert list(ours.fixed_effects) == ["(Intercept)", "armtreatment", "findingnodule", "findingpneumothorax"]
    r = r_glmer(data, "detected ~ arm + finding + (1 | case) + (1 | reader)", tmp_path)
    assert_matches_glmer(ours.fixed_effects, ours.fixed_effects_se, ours.variance_components,
                         ours.log_likelihood, r)
    # glmer's Wald z is ours as `pvalue_z`; `pvalue` is the small-sample corrected t (issue 14)
    assert ours.ml_standard_error == ours.fixed_effects_se["armtreatment"]
    assert ours.pvalue_z == pytest.approx(r["tight"]["p.armtreatment"], rel=1e-3)
    assert ours.standard_error >= ours.ml_standard_error and ours.pvalue >= ours.pvalue_z


@pytest.mark.r_oracle
def test_intercept_only_binomial_glmm_matches_glmer(tmp_path):
    data = simulate_detection(43)
    ours = fit_binomial_glmm(data, outcome="detected", random=["case", "reader"], arm=None,
                             treatment=None, reference=None)
    assert ours.term == "(Intercept)" and ours.estimate == ours.fixed_effects["(Intercept)"]
    r = r_glmer(data, "detected ~ 1 + (1 | case) + (1 | reader)", tmp_path)
    assert_matches_glmer(ours.fixed_effects, ours.fixed_effects_se, ours.variance_components,
                         ours.log_likelihood, r)


@pytest.mark.r_oracle
def test_preference_glmm_is_glmers_fit_of_the_decisive_votes(tmp_path):
    votes = simulate_preference_votes(PreferenceSimulation(n_cases=150, n_readers=12, n_experts=5,
                                                           reader_sd=0.4, effect=0.2), seed=44)
    ours = fit_preference_glmm(votes, treatment="treatment", reference="reference")
    assert ours.converged
    decisive = {k: v[votes["preferred"] != "none"] for k, v in votes.items()}
    decisive["y"] = (decisive["preferred"] == "treatment").astype(int)
    r = r_glmer(decisive, "y ~ 1 + (1 | case) + (1 | expert) + (1 | treatment_reader) + (1 | reference_reader)",
                tmp_path)
    assert_matches_glmer({"(Intercept)": ours.log_odds}, {"(Intercept)": ours.ml_standard_error},
                         ours.variance_components, ours.log_likelihood, r)
    assert ours.pvalue_z == pytest.approx(r["tight"]["p.(Intercept)"], rel=1e-3)


def _votes_with_two_maxima() -> dict[str, np.ndarray]:
    import csv

    with open(Path(__file__).parent / "data" / "preference_two_maxima.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


# glmer's fit of the votes, and lme4's Laplace deviance (its deviance function, PIRLS to 1e-13) at our estimates
_R_DEVIANCE_AT = _R_HEADER + r"""
suppressPackageStartupMessages(library(lme4))
f <- y ~ 1 + (1 | case) + (1 | expert) + (1 | treatment_reader) + (1 | reference_reader)
ctl <- glmerControl(optimizer = "nloptwrap", tolPwrss = 1e-13,
                    optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12, ftol_rel = 1e-15,
                                   maxeval = 1e5))
m <- glmer(f, data = d, family = binomial, control = ctl)
out("glmer.loglik", as.numeric(logLik(m)))
out("glmer.log_odds", fixef(m)[[1]])
dfun <- glmer(f, data = d, family = binomial, control = ctl, devFunOnly = TRUE)
sd <- c({sds})
out("at_ours.deviance", dfun(c(unname(sd[sub("[.].*$", "", names(getME(m, "theta")))]), {log_odds!r})))
"""


@pytest.mark.r_oracle
def test_preference_glmm_finds_the_higher_of_two_maxima(tmp_path, monkeypatch):
    """With three votes a case the likelihood can have a second, higher maximum far out in the case SD. glmer, from
    its one start, stops at the lower one here (as our fit did from its first start); the fit runs from both starts
    (BINOMIAL_START_SDS) and keeps the higher, and lme4's own deviance at our estimates says it is higher."""
    from stats.methods import glmm

    require_r_packages("lme4")
    votes = _votes_with_two_maxima()
    ours = fit_preference_glmm(votes, treatment="treatment", reference="reference")
    decisive = dict(votes, y=(votes["preferred"] == "treatment").astype(int))
    sds = ", ".join(f"{t} = {v ** 0.5!r}" for t, v in ours.variance_components.items())
    r = parse_tagged(run_r(_R_DEVIANCE_AT.format(csv=write_csv(decisive, tmp_path / "votes.csv").as_posix(), sds=sds,
                                                 log_odds=ours.log_odds), timeout=180))
    assert r["at_ours"]["deviance"] == pytest.approx(-2.0 * ours.log_likelihood, abs=1e-6)
    assert ours.log_likelihood > r["glmer"]["loglik"] + 0.5 and ours.variance_components["case"] > 150
    # from the first start alone our fit stops where glmer does
    monkeypatch.setattr(glmm, "BINOMIAL_START_SDS", (0.5,))
    lower = fit_preference_glmm(votes, treatment="treatment", reference="reference")
    assert lower.log_likelihood == pytest.approx(r["glmer"]["loglik"], abs=1e-6)
    assert lower.log_odds == pytest.approx(r["glmer"]["log_odds"], abs=1e-3)


# --------------------------------------------------------------------------------------------
# The engine: structured factorization and exact gradient


def _dense_system(re: _laplace.CrossedIntercepts, theta: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    A = np.zeros((re.n, re.q))
    for k in range(re.K):
        A[np.arange(re.n), re.idx[:, k]] += theta[k]
    return A, np.eye(re.q) + A.T @ (w[:, None] * A)


@pytest.mark.parametrize("terms", [QUALITY_RANDOM, ["case", "reader"], ["reader", "expert"]])
def test_structured_factorization_equals_the_dense_algebra(terms):
    data = simulate_quality(51, n_cases=70, n_readers=8, n_experts=3)
    n = data["score"].size
    factors = [grouping_codes(data, t, n) for t in terms]
    re = _laplace.CrossedIntercepts([c for c, _ in factors], [m for _, m in factors])
    rng = np.random.default_rng(0)
    theta = rng.uniform(0.2, 1.5, len(terms))
    w = rng.uniform(0.02, 0.3, n)
    A, H = _dense_system(re, theta, w)
    fac = re.factor(theta, w)
    assert fac.logdet == pytest.approx(np.linalg.slogdet(H)[1], rel=1e-12)
    rhs = rng.normal(size=re.q)
    np.testing.assert_allclose(fac.solve(rhs), np.linalg.solve(H, rhs), atol=1e-12)
    Hinv = np.linalg.inv(H)
    sinv = fac.selected_inverse()
    np.testing.assert_allclose(sinv[re.row_pos], Hinv[re.idx[:, :, None], re.idx[:, None, :]], atol=1e-12)


@pytest.mark.parametrize("family", ["bernoulli", "cumulative"])
def test_gradient_is_the_exact_derivative_of_the_laplace_objective(family):
    data = simulate_quality(52, n_cases=40, n_readers=6, n_experts=3)
    n = data["score"].size
    factors = [grouping_codes(data, t, n) for t in QUALITY_RANDOM]
    re = _laplace.CrossedIntercepts([c for c, _ in factors], [m for _, m in factors])
    arm = (data["arm"] == "treatment").astype(float)
    theta = np.array([0.9, 0.4, 0.3, 0.7])
    if family == "bernoulli":
        fam = _laplace.BernoulliLogit((data["score"] >= 3).astype(float), np.column_stack([np.ones(n), arm]))
        psi = np.r_[0.2, 0.3, theta]
    else:
        fam = _laplace.CumulativeLogit(data["score"] - 1, 5, arm[:, None])
        psi = np.r_[-1.5, -0.4, 0.6, 1.7, 0.3, theta]
    model = _laplace.LaplaceModel(fam, re)
    _, grad = model.evaluate(psi, gradient=True)
    h = 1e-5
    numeric = np.array([(model.evaluate(psi + e) - model.evaluate(psi - e)) / (2 * h)
                        for e in np.eye(psi.size) * h])
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Behaviour


def test_seeded_simulation_recovers_the_log_odds_ratio():
    truth = 0.8
    res = fit_binomial_glmm(simulate_detection(61, n_cases=400, n_readers=30, log_or=truth, reader_sd=0.3),
                            outcome="detected", random=["case", "reader"], arm="arm", treatment="treatment",
                            reference="reference", covariates=["finding"])
    assert res.converged
    assert abs(res.estimate - truth) < 2 * res.standard_error
    assert res.standard_error < 0.2
    low, high = res.confidence_interval()
    assert low < truth < high and res.pvalue < 1e-3
    assert res.fixed_effects["findingnodule"] == pytest.approx(FINDING_EFFECT["nodule"], abs=0.2)
    assert set(res.variance_components) == {"case", "reader"}


def test_seeded_simulation_recovers_the_ordinal_arm_effect():
    truth = 0.7
    res = fit_ordinal_glmm(simulate_quality(62, n_cases=300, n_readers=30, effect=truth, reader_sd=0.2),
                           outcome="score", random=QUALITY_RANDOM, treatment="treatment", reference="reference")
    assert res.converged
    assert abs(res.estimate - truth) < 2 * res.standard_error
    # the thresholds' location absorbs the realized mean of the few expert and reader effects; their gaps do not
    np.testing.assert_allclose(np.diff(list(res.thresholds.values())), np.diff(CUTS), atol=0.2)
    assert res.variance_components["case"] == pytest.approx(1.0, abs=0.35)


def test_reversing_the_scale_flips_the_ordinal_effect():
    data = simulate_quality(63, n_cases=60, n_readers=6, n_experts=3)
    kw = dict(outcome="score", random=QUALITY_RANDOM, treatment="treatment", reference="reference")
    up = fit_ordinal_glmm(data, levels=[1, 2, 3, 4, 5], **kw)
    down = fit_ordinal_glmm(data, levels=[5, 4, 3, 2, 1], **kw)
    assert down.estimate == pytest.approx(-up.estimate, abs=1e-6)
    assert down.standard_error == pytest.approx(up.standard_error, rel=1e-4)
    for t in QUALITY_RANDOM:
        assert down.variance_components[t] == pytest.approx(up.variance_components[t], abs=1e-6)
    assert list(down.thresholds) == ["5|4", "4|3", "3|2", "2|1"]


def test_swapping_the_arms_flips_the_preference():
    votes = simulate_preference_votes(PreferenceSimulation(n_cases=100, n_readers=8, effect=0.3), seed=64)
    res = fit_preference_glmm(votes, treatment="treatment", reference="reference")
    swapped = dict(votes, treatment_reader=votes["reference_reader"], reference_reader=votes["treatment_reader"])
    other = fit_preference_glmm(swapped, treatment="reference", reference="treatment")
    assert other.log_odds == pytest.approx(-res.log_odds, abs=1e-6)
    assert other.estimate == pytest.approx(1 - res.estimate, abs=1e-6)
    assert other.standard_error == pytest.approx(res.standard_error, rel=1e-4)
    assert other.df == pytest.approx(res.df, rel=1e-3)
    assert other.pvalue == pytest.approx(res.pvalue, rel=1e-3)


def test_ties_are_counted_and_left_out():
    votes = simulate_preference_votes(PreferenceSimulation(n_cases=80, n_readers=8, tie_band=0.3), seed=65)
    res = fit_preference_glmm(votes, treatment="treatment", reference="reference")
    n_ties = int(np.sum(votes["preferred"] == "none"))
    assert n_ties > 0 and res.n_ties == n_ties
    assert res.n_votes == votes["preferred"].size - n_ties == res.n_treatment + res.n_reference
    decisive = {k: v[votes["preferred"] != "none"] for k, v in votes.items()}
    again = fit_preference_glmm(decisive, treatment="treatment", reference="reference")
    assert again.n_ties == 0 and again.log_odds == pytest.approx(res.log_odds, abs=1e-9)
    # a second tie label is also left out
    relabelled = dict(votes, preferred=np.where(votes["preferred"] == "none", "both bad", votes["preferred"]))
    alt = fit_preference_glmm(relabelled, treatment="treatment", reference="reference", tie=("none", "both bad"))
    assert alt.n_ties == n_ties and alt.log_odds == pytest.approx(res.log_odds, abs=1e-9)


def test_preference_interval_and_test_speak_of_the_same_probability():
    votes = simulate_preference_votes(PreferenceSimulation(n_cases=120, n_readers=10, effect=0.4), seed=66)
    res = fit_preference_glmm(votes, treatment="treatment", reference="reference")
    assert res.estimate == pytest.approx(expit(res.log_odds))
    q = stats.t.ppf(0.95, res.df)
    low, high = res.confidence_interval(0.9)
    assert (low, high) == pytest.approx((expit(res.log_odds - q * res.se), expit(res.log_odds + q * res.se)))
    assert res.pvalue == pytest.approx(2 * stats.t.sf(abs(res.log_odds / res.standard_error), res.df))
    # the small-sample test is never more liberal than glmer's z
    assert res.standard_error >= res.ml_standard_error and res.pvalue >= res.pvalue_z
    assert 1 < res.df < 1000
    # 0.5 lies outside the 1 − p interval's interior exactly at the test's p-value
    edge = res.confidence_interval(1 - res.pvalue)
    assert min(abs(edge.low - 0.5), abs(edge.high - 0.5)) < 1e-6
    d = json.loads(json.dumps(res.to_dict(0.9)))
    assert d["n_ties"] == res.n_ties and d["confidence_interval"] == pytest.approx([low, high])
    assert set(d["variance_components"]) == {"case", "expert", "treatment_reader", "reference_reader"}


def test_results_serialise_and_report_odds_ratios():
    res = fit_binomial_glmm(simulate_detection(67, n_cases=60, n_readers=6), outcome="detected",
                            random=["case", "reader"], arm="arm", treatment="treatment", reference="reference")
    low, high = res.confidence_interval(0.9)
    q = stats.t.ppf(0.95, res.df)             # t on the Satterthwaite df, corrected SE (issue 14; was a z interval)
    assert (low, high) == pytest.approx((res.estimate - q * res.se, res.estimate + q * res.se))
    assert res.odds_ratio_confidence_interval(0.9) == pytest.approx((math.exp(low), math.exp(high)))
    assert res.deviance == pytest.approx(-2 * res.log_likelihood)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["term"] == "armtreatment" and d["n_obs"] == 360 and d["n_groups"] == {"case": 60, "reader": 6}
    o = fit_ordinal_glmm(simulate_quality(67, n_cases=40, n_readers=6, n_experts=3), outcome="score",
                         random=QUALITY_RANDOM, treatment="treatment", reference="reference")
    d = json.loads(json.dumps(o.to_dict()))
    assert d["thresholds"].keys() == {"1|2", "2|3", "3|4", "4|5"} and d["n_obs"] == 240
    assert d["se"] == o.standard_error and d["ml_se"] == o.ml_standard_error and d["df"] == o.df
    # no key names an arm: masking needs no rewriting ("standard" is an arm, so not "standard_error")
    assert "standard" not in json.dumps(d) and "standard" not in json.dumps(res.to_dict())
    assert o.odds_ratio == pytest.approx(math.exp(o.estimate))


# --------------------------------------------------------------------------------------------
# Refusals


def test_refuses_a_single_arm():
    data = simulate_detection(71, n_cases=30, n_readers=6)
    one = {k: v[data["arm"] == "treatment"] for k, v in data.items()}
    with pytest.raises(ValueError, match="exactly the two arms"):
        fit_binomial_glmm(one, outcome="detected", random=["case", "reader"], arm="arm",
                          treatment="treatment", reference="reference")
    quality = simulate_quality(71, n_cases=30, n_readers=6, n_experts=2)
    with pytest.raises(ValueError, match="exactly the two arms"):
        fit_ordinal_glmm(quality, outcome="score", random=["case", "reader"], treatment="assisted",
                         reference="reference")


def test_refuses_outcomes_out_of_range():
    data = simulate_detection(72, n_cases=30, n_readers=6)
    bad = dict(data, detected=np.where(np.arange(data["detected"].size) == 5, 2, data["detected"]))
    with pytest.raises(ValueError, match="must be 0 or 1"):
        fit_binomial_glmm(bad, outcome="detected", random=["case", "reader"], arm="arm",
                          treatment="treatment", reference="reference")
    with pytest.raises(ValueError, match="0/1"):
        fit_binomial_glmm(dict(data, detected=data["arm"]), outcome="detected", random=["case"], arm=None,
                          treatment=None, reference=None)
    quality = simulate_quality(72, n_cases=30, n_readers=6, n_experts=2)
    with pytest.raises(ValueError, match="outside `levels`"):
        fit_ordinal_glmm(quality, outcome="score", random=["case"], treatment="treatment",
                         reference="reference", levels=[1, 2, 3])
    flat = dict(quality, score=np.full(quality["score"].size, 3))
    with pytest.raises(ValueError, match="at least two observed categories"):
        fit_ordinal_glmm(flat, outcome="score", random=["case"], treatment="treatment", reference="reference")
    votes = simulate_preference_votes(PreferenceSimulation(n_cases=30, n_readers=4), seed=72)
    odd = dict(votes, preferred=np.where(np.arange(votes["preferred"].size) == 3, "left", votes["preferred"]))
    with pytest.raises(ValueError, match="a tie"):
        fit_preference_glmm(odd, treatment="treatment", reference="reference")
    with pytest.raises(ValueError, match="every vote is a tie"):
        fit_preference_glmm(dict(votes, preferred=np.full(votes["preferred"].size, "none")),
                            treatment="treatment", reference="reference")


def test_refuses_missing_values():
    import pandas as pd

    data = simulate_detection(73, n_cases=30, n_readers=6)
    y = data["detected"].astype(float)
    y[7] = np.nan
    with pytest.raises(ValueError, match="'detected' has 1 missing value"):
        fit_binomial_glmm(dict(data, detected=y), outcome="detected", random=["case", "reader"], arm="arm",
                          treatment="treatment", reference="reference")
    readers = data["reader"].astype(object)
    readers[3] = None
    with pytest.raises(ValueError, match="'reader' has 1 missing value"):
        fit_binomial_glmm(dict(data, reader=readers), outcome="detected", random=["case", "reader"], arm="arm",
                          treatment="treatment", reference="reference")
    frame = pd.DataFrame(data)
    frame.loc[4, "case"] = np.nan            # pandas' missing text: a float NaN in an object column
    quality_like = frame.assign(score=1 + frame["detected"] * 2)
    with pytest.raises(ValueError, match="'case' has 1 missing value"):
        fit_ordinal_glmm(quality_like, outcome="score", random=["case", "reader"], treatment="treatment",
                         reference="reference")
    votes = pd.DataFrame(simulate_preference_votes(PreferenceSimulation(n_cases=30, n_readers=4), seed=73))
    votes.loc[2, "expert"] = pd.NA
    with pytest.raises(ValueError, match="'expert' has 1 missing value"):
        fit_preference_glmm(votes, treatment="treatment", reference="reference")


def test_arm_names_are_required_and_neutral():
    data = simulate_detection(74, n_cases=30, n_readers=6)
    with pytest.raises(TypeError):
        fit_binomial_glmm(data, outcome="detected", random=["case", "reader"], arm="arm")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        fit_ordinal_glmm(simulate_quality(74, n_cases=20, n_readers=4, n_experts=2), outcome="score",
                         random=["case"])  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="name both arms"):
        fit_binomial_glmm(data, outcome="detected", random=["case", "reader"], arm="arm", treatment="treatment",
                          reference=None)
    with pytest.raises(ValueError, match="give arm"):
        fit_binomial_glmm(data, outcome="detected", random=["case", "reader"], arm=None, treatment="treatment",
                          reference="reference")
    with pytest.raises(ValueError, match="different arms"):
        fit_preference_glmm(simulate_preference_votes(PreferenceSimulation(n_cases=20, n_readers=4), seed=74),
                            treatment="treatment", reference="treatment")


def test_refuses_unidentifiable_grouping_terms():
    data = simulate_detection(75, n_cases=30, n_readers=6)
    with pytest.raises(ValueError, match="single level"):
        fit_binomial_glmm(dict(data, site=np.full(data["case"].size, "A")), outcome="detected",
                          random=["case", "site"], arm="arm", treatment="treatment", reference="reference")
    row = np.array([f"row{i}" for i in range(data["case"].size)])
    with pytest.raises(ValueError, match="not identifiable"):
        fit_binomial_glmm(dict(data, row=row), outcome="detected", random=["row"], arm="arm",
                          treatment="treatment", reference="reference")
    with pytest.raises(ValueError, match="no column 'site'"):
        fit_binomial_glmm(data, outcome="detected", random=["case", "site"], arm="arm",
                          treatment="treatment", reference="reference")


# --------------------------------------------------------------------------------------------
# Size under randomized readers (the full check with ≥ 200 trials: bench/stats_preference_null.py)


def test_preference_test_holds_its_size_when_readers_are_randomized():
    """Null trials with reader effects (20 readers, SD 0.25, 296 cases, 5 experts): the paper's design."""
    sim = PreferenceSimulation()
    n_trials = 100
    ours, z = [], []
    for i in range(n_trials):
        res = fit_preference_glmm(simulate_preference_votes(sim, seed=2_000 + i), treatment="treatment",
                                  reference="reference")
        assert res.converged
        ours.append(res.pvalue)
        z.append(res.pvalue_z)
    rejected = int(np.sum(np.asarray(ours) < 0.05))
    # 100 trials cannot pin a 5 % rate down (the bench runs 500: 0.054 ± 0.010); ≤ 11 rejections still
    # catches a test that ignores the readers (a binomial test of case majorities rejects ~44 % of these)
    assert rejected <= 11, f"{rejected}/{n_trials} null trials rejected at α = 0.05"
    assert all(p >= q for p, q in zip(ours, z))
