"""The arm-effect LMM (stats/methods/lmm.py) against lme4 + lmerTest, statsmodels, a brute-force REML and simulation."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from stats.methods import lmm as lmm_module
from stats.methods.lmm import fit_lmm

from .rscript import require_r_packages, run_r

ARMS = ("standard", "assisted")

NEUTRAL_ARMS = {"treatment": "assisted", "reference": "standard"}


# --------------------------------------------------------------------------------------------
# Simulated trials (seeded)


def simulate_paired_parallel(seed: int, *, n_readers: int = 6, n_cases: int = 60, n_experts: int = 3,
                             log_effect: float = -0.2, quality_effect: float = 0.3,
                             sd_reader: float = 0.2, sd_case: float = 0.3, sd_resid: float = 0.25) -> dict:
    """Readers nested in arms (half each); every case read once per arm by a reader of that arm.

    Reading time is log-normal with random reader and case effects; each report gets a quality
    score from each of `n_experts` experts (a continuous 1–5 score with expert, reader and case effects).
    """
    rng = np.random.default_rng(seed)
    readers = {arm: [f"{arm[0]}{i}" for i in range(n_readers // 2)] for arm in ARMS}
    reader_effect = {r: rng.normal(0, sd_reader) for rs in readers.values() for r in rs}
    reader_quality = {r: rng.normal(0, 0.2) for rs in readers.values() for r in rs}
    case_effect = rng.normal(0, sd_case, n_cases)
    case_quality = rng.normal(0, 0.4, n_cases)
    expert_effect = rng.normal(0, 0.3, n_experts)
    rows: dict[str, list] = {k: [] for k in ("reader", "case", "arm", "expert", "time", "quality")}
    for c in range(n_cases):
        for arm in ARMS:
            reader = str(rng.choice(readers[arm]))
            assisted = arm == "assisted"
            log_t = 4.0 + log_effect * assisted + reader_effect[reader] + case_effect[c] + rng.normal(0, sd_resid)
            for e in range(n_experts):
                rows["reader"].append(reader)
                rows["case"].append(f"c{c:03d}")
                rows["arm"].append(arm)
                rows["expert"].append(f"x{e}")
                rows["time"].append(math.exp(log_t))
                rows["quality"].append(3.5 + quality_effect * assisted + reader_quality[reader]
                                       + case_quality[c] + expert_effect[e] + rng.normal(0, 0.5))
    return {k: np.asarray(v) for k, v in rows.items()}


def one_read_per_row(data: dict) -> dict:
    """The reads only (time is per read; the quality rows repeat it once per expert)."""
    keep = data["expert"] == "x0"
    return {k: v[keep] for k, v in data.items() if k not in ("expert", "quality")}


def simulate_crossover(seed: int, *, n_readers: int = 6, n_cases: int = 40, log_effect: float = -0.2) -> dict:
    """Fully crossed: every reader reads every case in both arms, in a random order (period 0/1)."""
    rng = np.random.default_rng(seed)
    reader_effect = rng.normal(0, 0.2, n_readers)
    case_effect = rng.normal(0, 0.3, n_cases)
    reader_arm = rng.normal(0, 0.12, (n_readers, 2))
    case_arm = rng.normal(0, 0.15, (n_cases, 2))
    rows: dict[str, list] = {k: [] for k in ("reader", "case", "arm", "period", "time")}
    for r in range(n_readers):
        for c in range(n_cases):
            first = rng.integers(2)
            for a, arm in enumerate(ARMS):
                period = int(a == first)
                log_t = (4.0 + log_effect * a + 0.05 * period + reader_effect[r] + case_effect[c]
                         + reader_arm[r, a] + case_arm[c, a] + rng.normal(0, 0.2))
                rows["reader"].append(f"r{r}")
                rows["case"].append(f"c{c:03d}")
                rows["arm"].append(arm)
                rows["period"].append(period)
                rows["time"].append(math.exp(log_t))
    return {k: np.asarray(v) for k, v in rows.items()}


def write_csv(data: dict, path: Path) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(data))
        w.writerows(zip(*(v.tolist() for v in data.values())))
    return path


# --------------------------------------------------------------------------------------------
# R side: lme4 + lmerTest, printing "name<TAB>value" lines.

_R_LMM = r"""
suppressPackageStartupMessages({{ library(lme4); library(lmerTest) }})
out <- function(name, x) cat(sprintf("%s\t%.17g\n", name, x), sep = "")
d <- read.csv("{csv}", stringsAsFactors = FALSE)
d$arm <- factor(d$arm, levels = c("standard", "assisted"))
tight <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12,
                                    ftol_rel = 1e-15, maxeval = 1e5))
fit <- function(tag, control) {{
  m <- lmerTest::lmer({formula}, data = d, REML = TRUE, control = control)
  co <- coef(summary(m))
  a <- co["armassisted", ]
  out(paste0(tag, ".estimate"), a[["Estimate"]])
  out(paste0(tag, ".se"), a[["Std. Error"]])
  out(paste0(tag, ".df"), a[["df"]])
  out(paste0(tag, ".statistic"), a[["t value"]])
  out(paste0(tag, ".pvalue"), a[["Pr(>|t|)"]])
  q <- qt(0.975, a[["df"]])
  out(paste0(tag, ".ci_low"), a[["Estimate"]] - q * a[["Std. Error"]])
  out(paste0(tag, ".ci_high"), a[["Estimate"]] + q * a[["Std. Error"]])
  for (nm in rownames(co)) out(paste0(tag, ".fixef.", nm), co[nm, "Estimate"])
  for (nm in rownames(co)) out(paste0(tag, ".fixef_se.", nm), co[nm, "Std. Error"])
  vc <- as.data.frame(VarCorr(m))
  for (i in seq_len(nrow(vc))) out(paste0(tag, ".vc.", vc$grp[i]), vc$vcov[i])
  ng <- ngrps(m)
  for (nm in names(ng)) out(paste0(tag, ".ngroups.", nm), ng[[nm]])
  out(paste0(tag, ".reml"), REMLcrit(m))
}}
fit("tight", tight)
fit("default", lmerControl())
"""


def r_lmm(data: dict, formula: str, tmp_path: Path) -> dict[str, dict[str, float]]:
    require_r_packages("lme4", "lmerTest")
    csv_path = write_csv(data, tmp_path / "trial.csv")
    stdout = run_r(_R_LMM.format(csv=csv_path.as_posix(), formula=formula), timeout=180)
    fits: dict[str, dict[str, float]] = {"tight": {}, "default": {}}
    for line in stdout.splitlines():
        if "\t" not in line:
            continue
        key, value = line.split("\t")
        tag, name = key.split(".", 1)
        fits[tag][name] = float(value)
    if not fits["tight"]:
        pytest.fail(f"no numbers read back from R:\n{stdout}")
    return fits


def relative_differences(ours: lmm_module.LMMResult, r: dict[str, float]) -> dict[str, float]:
    low, high = ours.confidence_interval(0.95)
    pairs = {
        "estimate": (ours.estimate, r["estimate"]),
        "se": (ours.se, r["se"]),
        "df": (ours.df, r["df"]),
        "statistic": (ours.statistic, r["statistic"]),
        "pvalue": (ours.pvalue, r["pvalue"]),
        "ci_low": (low, r["ci_low"]),
        "ci_high": (high, r["ci_high"]),
        "residual": (ours.residual_variance, r["vc.Residual"]),
        "reml": (ours.reml_criterion, r["reml"]),
    }
    for name, value in ours.fixed_effects.items():
        pairs[f"fixef.{name}"] = (value, r[f"fixef.{name}"])
        pairs[f"fixef_se.{name}"] = (ours.fixed_effects_se[name], r[f"fixef_se.{name}"])
    for term, value in ours.variance_components.items():
        pairs[f"vc.{term}"] = (value, r[f"vc.{term}"])
    out = {}
    for name, (a, b) in pairs.items():
        # a variance component at the boundary is 0 in both: compare on the residual's scale there
        scale = max(abs(b), 1e-6 * r["vc.Residual"]) if name.startswith("vc.") else abs(b)
        out[name] = abs(a - b) / scale
    return out


def assert_matches_lmertest(ours: lmm_module.LMMResult, fits: dict[str, dict[str, float]]) -> None:
    tight = fits["tight"]
    for term, m in ours.n_groups.items():
        assert tight[f"ngroups.{term}"] == m
    diffs = relative_differences(ours, tight)
    worst = max(diffs, key=diffs.get)
    # lme4 run to its optimum (tight nloptwrap tolerances): agreement well beyond 4 digits.
    assert diffs[worst] < 1e-5, f"largest relative difference from lmerTest: {worst} = {diffs[worst]:.2e}"
    # With lme4's defaults bobyqa stops early (its REML criterion is slightly higher than ours),
    # which moves the df and variance components in the 4th–5th digit; ours is never the worse fit.
    default = fits["default"]
    assert ours.reml_criterion <= default["reml"] + 1e-9
    loose = relative_differences(ours, default)
    assert max(loose.values()) < 1e-3, loose


# --------------------------------------------------------------------------------------------
# R oracle


@pytest.mark.r_oracle
def test_paired_parallel_log_time_matches_lmertest(tmp_path):
    data = one_read_per_row(simulate_paired_parallel(11))
    ours = fit_lmm(data, outcome="time", random=["reader", "case"], log=True, **NEUTRAL_ARMS)
    fits = r_lmm(data, "log(time) ~ arm + (1 | reader) + (1 | case)", tmp_path)
    assert_matches_lmertest(ours, fits)
    # readers are nested in arms: the arm effect is between readers, df near readers − 2
    assert 1.0 < ours.df < 10.0


@pytest.mark.r_oracle
def test_paired_parallel_quality_with_expert_effect_matches_lmertest(tmp_path):
    data = simulate_paired_parallel(12)
    ours = fit_lmm(data, outcome="quality", random=["reader", "case", "expert"], **NEUTRAL_ARMS)
    fits = r_lmm(data, "quality ~ arm + (1 | reader) + (1 | case) + (1 | expert)", tmp_path)
    assert_matches_lmertest(ours, fits)


@pytest.mark.r_oracle
def test_crossover_with_interaction_terms_and_covariate_matches_lmertest(tmp_path):
    data = simulate_crossover(13)
    ours = fit_lmm(data, outcome="time", random=["reader", "case", "reader:arm", "case:arm"],
                   covariates=["period"], log=True, treatment="assisted", reference="standard")
    fits = r_lmm(
        data,
        "log(time) ~ arm + period + (1 | reader) + (1 | case) + (1 | reader:arm) + (1 | case:arm)",
        tmp_path,
    )
    assert_matches_lmertest(ours, fits)


@pytest.mark.r_oracle
def test_boundary_fit_with_zero_reader_variance_matches_lmertest(tmp_path):
    data = one_read_per_row(simulate_paired_parallel(2, sd_reader=0.0))
    ours = fit_lmm(data, outcome="time", random=["reader", "case"], log=True, **NEUTRAL_ARMS)
    fits = r_lmm(data, "log(time) ~ arm + (1 | reader) + (1 | case)", tmp_path)
    assert fits["tight"]["vc.reader"] < 1e-12, "the fixture should give a singular (boundary) fit"
    assert ours.variance_components["reader"] == 0.0
    assert_matches_lmertest(ours, fits)


# --------------------------------------------------------------------------------------------
# Exactness of the Schur-complement evaluation


def brute_force_reml(data: dict, outcome: str, random: list[str], theta: np.ndarray, log: bool) -> float:
    """d_R(θ) from the n × n marginal covariance V_θ = I + Σ θₖ² Zₖ Zₖᵀ, no structure used."""
    y = np.asarray(data[outcome], dtype=float)
    y = np.log(y) if log else y
    n = y.size
    X, _ = lmm_module.design_columns(data, arm="arm", covariates=[c for c in ("period",) if c in data],
                                     treatment="assisted", reference="standard", n=n)
    V = np.eye(n)
    for t, term in zip(theta, random):
        codes, m = lmm_module.grouping_codes(data, term, n)
        Z = np.zeros((n, m))
        Z[np.arange(n), codes] = 1.0
        V += t * t * Z @ Z.T
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    beta = np.linalg.solve(XtViX, X.T @ Vi @ y)
    r = y - X @ beta
    nu = n - X.shape[1]
    r2 = float(r @ Vi @ r)
    return (np.linalg.slogdet(V)[1] + np.linalg.slogdet(XtViX)[1]
            + nu * (1.0 + math.log(2.0 * math.pi * r2 / nu)))


@pytest.mark.parametrize("dense_max", [1500, 3], ids=["dense", "sparse-lu"])
def test_schur_complement_criterion_equals_brute_force(monkeypatch, dense_max):
    monkeypatch.setattr(lmm_module, "_DENSE_MAX", dense_max)
    data = simulate_crossover(5, n_readers=4, n_cases=12)
    random = ["reader", "case", "reader:arm", "case:arm"]
    n = data["time"].size
    X, _ = lmm_module.design_columns(data, arm="arm", covariates=["period"], treatment="assisted",
                                     reference="standard", n=n)
    problem = lmm_module._REML(np.log(data["time"]), X, [lmm_module.grouping_codes(data, t, n) for t in random])
    # case:arm and then case are eliminated exactly; reader and reader:arm stay
    assert [random[s.factor] for s in problem.stages] == ["case:arm", "case"]
    for theta in ([1.0, 1.0, 1.0, 1.0], [0.3, 1.7, 0.0, 0.6], [2.0, 0.1, 0.9, 0.0]):
        theta = np.asarray(theta)
        assert problem.profiled_deviance(theta) == pytest.approx(
            brute_force_reml(data, "time", random, theta, log=True), rel=1e-11
        )


# --------------------------------------------------------------------------------------------
# Secondary check: statsmodels MixedLM (crossed effects as variance components of one group)


def test_agrees_with_statsmodels_mixedlm():
    import pandas as pd
    import statsmodels.formula.api as smf

    data = one_read_per_row(simulate_paired_parallel(21))
    ours = fit_lmm(data, outcome="time", random=["reader", "case"], log=True, **NEUTRAL_ARMS)
    frame = pd.DataFrame({k: v for k, v in data.items()})
    frame["log_time"] = np.log(frame["time"])
    frame["assisted"] = (frame["arm"] == "assisted").astype(float)
    frame["one"] = 1
    sm = smf.mixedlm("log_time ~ assisted", frame, groups="one", re_formula="0",
                     vc_formula={"reader": "0 + C(reader)", "case": "0 + C(case)"}).fit(reml=True)
    assert ours.estimate == pytest.approx(sm.params["assisted"], rel=1e-3)
    assert ours.se == pytest.approx(sm.bse["assisted"], rel=1e-3)
    assert ours.residual_variance == pytest.approx(sm.scale, rel=1e-3)
    vcomp = dict(zip(sm.model.exog_vc.names, sm.vcomp))
    for term in ("reader", "case"):
        assert ours.variance_components[term] == pytest.approx(vcomp[term], rel=5e-3)


# --------------------------------------------------------------------------------------------
# Simulation: the Satterthwaite t interval holds its level with 6 readers nested in arms


def test_interval_covers_the_true_effect_and_the_test_holds_its_size():
    n_sim = 200
    covered = rejected = 0
    for i in range(n_sim):
        with_effect = one_read_per_row(simulate_paired_parallel(1000 + i, n_cases=30, log_effect=-0.2))
        fit = fit_lmm(with_effect, outcome="time", random=["reader", "case"], log=True, **NEUTRAL_ARMS)
        low, high = fit.confidence_interval()
        covered += low <= -0.2 <= high
        no_effect = one_read_per_row(simulate_paired_parallel(5000 + i, n_cases=30, log_effect=0.0))
        fit = fit_lmm(no_effect, outcome="time", random=["reader", "case"], log=True, **NEUTRAL_ARMS)
        rejected += fit.pvalue < 0.05
    coverage, size = covered / n_sim, rejected / n_sim
    # binomial SD at 200 trials is ≈ 0.015: these bounds are ± 3 SD around the nominal 0.95 / 0.05
    assert 0.90 <= coverage <= 0.995, coverage
    assert size <= 0.10, size


# --------------------------------------------------------------------------------------------
# Result object and refusals


def test_log_fit_reports_ratio_of_geometric_means_and_percent_reduction():
    data = one_read_per_row(simulate_paired_parallel(3))
    res = fit_lmm(data, outcome="time", random=["reader", "case"], log=True, treatment="assisted", reference="standard")
    low, high = res.confidence_interval(0.9)
    assert res.ratio == pytest.approx(math.exp(res.estimate))
    assert res.ratio_confidence_interval(0.9) == pytest.approx((math.exp(low), math.exp(high)))
    assert res.percent_reduction == pytest.approx(100 * (1 - res.ratio))
    pr_low, pr_high = res.percent_reduction_confidence_interval(0.9)
    assert pr_low == pytest.approx(100 * (1 - math.exp(high)))
    assert pr_high == pytest.approx(100 * (1 - math.exp(low)))
    assert pr_low < res.percent_reduction < pr_high
    round_trip = json.loads(json.dumps(res.to_dict(0.9)))
    assert round_trip["percent_reduction_confidence_interval"] == pytest.approx([pr_low, pr_high])
    assert round_trip["n_groups"] == {"reader": 6, "case": 60}


def test_interval_uses_t_with_satterthwaite_df():
    from scipy import stats

    res = fit_lmm(one_read_per_row(simulate_paired_parallel(4)), outcome="time", random=["reader", "case"], log=True,
                  **NEUTRAL_ARMS)
    q = stats.t.ppf(0.975, res.df)
    assert res.confidence_interval() == pytest.approx((res.estimate - q * res.se, res.estimate + q * res.se))
    assert res.pvalue == pytest.approx(2 * stats.t.sf(abs(res.statistic), res.df))


def test_ratio_needs_a_log_fit():
    res = fit_lmm(simulate_paired_parallel(5), outcome="quality", random=["reader", "case"], **NEUTRAL_ARMS)
    with pytest.raises(ValueError, match="log=True"):
        _ = res.ratio
    assert "ratio" not in res.to_dict()


def test_unknown_arm_label_is_refused():
    data = one_read_per_row(simulate_paired_parallel(6))
    data["arm"] = np.where(data["arm"] == "assisted", "ai", "standard")
    with pytest.raises(ValueError, match="exactly the two arms"):
        fit_lmm(data, outcome="time", random=["reader", "case"], log=True, treatment="assisted", reference="standard")


def test_non_positive_time_is_refused_on_the_log_scale():
    data = one_read_per_row(simulate_paired_parallel(7))
    data["time"][3] = 0.0
    with pytest.raises(ValueError, match="must be > 0"):
        fit_lmm(data, outcome="time", random=["reader", "case"], log=True, treatment="assisted", reference="standard")


def test_missing_column_and_missing_values_are_refused():
    data = one_read_per_row(simulate_paired_parallel(8))
    with pytest.raises(ValueError, match="no column 'site'"):
        fit_lmm(data, outcome="time", random=["reader", "site"], log=True, treatment="assisted", reference="standard")
    data["time"][0] = np.nan
    with pytest.raises(ValueError, match="missing"):
        fit_lmm(data, outcome="time", random=["reader", "case"], treatment="assisted", reference="standard")
    with pytest.raises(ValueError, match="at least one"):
        fit_lmm(data, outcome="time", random=[], treatment="assisted", reference="standard")
