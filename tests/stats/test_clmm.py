"""The cumulative-logit mixed model (stats/methods/clmm.py) against ordinal::clmm, and its own invariants."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from stats.methods import clmm as clmm_module
from stats.methods.clmm import fit_clmm
from stats.methods.lmm import design_columns, grouping_codes

from .rscript import require_r_packages, run_r

ARMS = ("standard", "assisted")
CUTS = np.array([-2.0, -0.7, 0.6, 1.8])


def simulate_quality(seed: int, *, n_cases: int = 60, n_experts: int = 3, effect: float = 0.5,
                     sd_case: float = 1.0) -> dict:
    """Paired design: each case's two reports (one per arm) scored 1–5 by every expert.

    Latent score = effect·assisted + case effect + expert effect + logistic noise, cut at CUTS.
    """
    rng = np.random.default_rng(seed)
    case_effect = rng.normal(0, sd_case, n_cases)
    expert_effect = rng.normal(0, 0.3, n_experts)
    rows: dict[str, list] = {k: [] for k in ("case", "arm", "expert", "score")}
    for c in range(n_cases):
        for arm in ARMS:
            for e in range(n_experts):
                latent = effect * (arm == "assisted") + case_effect[c] + expert_effect[e] + rng.logistic()
                rows["case"].append(f"c{c:03d}")
                rows["arm"].append(arm)
                rows["expert"].append(f"x{e}")
                rows["score"].append(int(1 + np.sum(latent > CUTS)))
    return {k: np.asarray(v) for k, v in rows.items()}


def write_csv(data: dict, path: Path) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(data))
        w.writerows(zip(*(v.tolist() for v in data.values())))
    return path


_R_CLMM = r"""
suppressPackageStartupMessages(library(ordinal))
out <- function(name, x) cat(sprintf("%s\t%.17g\n", name, x), sep = "")
d <- read.csv("{csv}", stringsAsFactors = FALSE)
d$arm <- factor(d$arm, levels = c("standard", "assisted"))
d$score <- factor(d$score, ordered = TRUE)
d$case <- factor(d$case)
fit <- function(tag, control) {{
  m <- clmm({formula}, data = d, nAGQ = {n_agq}, control = control)
  co <- coef(summary(m))
  for (nm in rownames(co)) {{
    out(paste0(tag, ".est.", nm), co[nm, "Estimate"])
    out(paste0(tag, ".se.", nm), co[nm, "Std. Error"])
    out(paste0(tag, ".z.", nm), co[nm, "z value"])
    out(paste0(tag, ".p.", nm), co[nm, "Pr(>|z|)"])
  }}
  out(paste0(tag, ".sd"), attr(VarCorr(m)$case, "stddev"))
  out(paste0(tag, ".loglik"), as.numeric(logLik(m)))
}}
fit("tight", clmm.control(rel.tol = 1e-13, x.tol = 1e-12))
fit("default", clmm.control())
"""


def r_clmm(data: dict, formula: str, n_agq: int, tmp_path: Path) -> dict[str, dict[str, float]]:
    require_r_packages("ordinal")
    csv_path = write_csv(data, tmp_path / "quality.csv")
    stdout = run_r(_R_CLMM.format(csv=csv_path.as_posix(), formula=formula, n_agq=n_agq), timeout=180)
    fits: dict[str, dict[str, float]] = {"tight": {}, "default": {}}
    for line in stdout.splitlines():
        if "\t" in line:
            key, value = line.split("\t")
            tag, name = key.split(".", 1)
            fits[tag][name] = float(value)
    if not fits["tight"]:
        pytest.fail(f"no numbers read back from R:\n{stdout}")
    return fits


def relative_differences(ours: clmm_module.CLMMResult, r: dict[str, float]) -> dict[str, float]:
    """|ours − R| / |R|; a coefficient near 0 is compared on its standard error's scale instead."""
    out = {}
    coefs = {**ours.thresholds, **ours.fixed_effects}
    ses = {**ours.thresholds_se, **ours.fixed_effects_se}
    for name, value in coefs.items():
        out[f"est.{name}"] = abs(value - r[f"est.{name}"]) / max(abs(r[f"est.{name}"]), r[f"se.{name}"])
        out[f"se.{name}"] = abs(ses[name] - r[f"se.{name}"]) / r[f"se.{name}"]
    arm = next(iter(ours.fixed_effects))
    out["statistic"] = abs(ours.statistic - r[f"z.{arm}"]) / abs(r[f"z.{arm}"])
    out["pvalue"] = abs(ours.pvalue - r[f"p.{arm}"]) / r[f"p.{arm}"]
    out["random_sd"] = abs(ours.random_sd - r["sd"]) / r["sd"]
    out["loglik"] = abs(ours.log_likelihood - r["loglik"]) / abs(r["loglik"])
    return out


@pytest.mark.r_oracle
@pytest.mark.parametrize(
    ("covariates", "n_agq"),
    [((), 10), (("expert",), 20)],
    ids=["arm-only-10-nodes", "expert-covariate-20-nodes"],
)
def test_matches_ordinal_clmm(tmp_path, covariates, n_agq):
    data = simulate_quality(31)
    ours = fit_clmm(data, outcome="score", group="case", covariates=covariates, n_agq=n_agq, treatment="assisted",
                    reference="standard")
    assert ours.converged
    formula = "score ~ arm" + "".join(f" + {c}" for c in covariates) + " + (1 | case)"
    fits = r_clmm(data, formula, n_agq, tmp_path)
    tight = relative_differences(ours, fits["tight"])
    worst = max(tight, key=tight.get)
    # ordinal's own optimum is only as precise as its finite-difference gradient (≈1e-5 relative):
    # four significant digits is the claim, and it holds with a wide margin.
    assert tight[worst] < 1e-4, f"largest relative difference from ordinal::clmm: {worst} = {tight[worst]:.2e}"
    assert tight["loglik"] < 1e-9
    default = relative_differences(ours, fits["default"])
    assert max(default.values()) < 5e-4, default
    # ours is at least as good a maximum of the same AGQ likelihood
    assert ours.log_likelihood >= max(fits["tight"]["loglik"], fits["default"]["loglik"]) - 1e-7


def test_gradient_is_the_exact_derivative_of_the_agq_likelihood():
    data = simulate_quality(32, n_cases=25)
    y = data["score"] - 1
    X, _ = design_columns(data, arm="arm", covariates=(), treatment="assisted", reference="standard",
                          n=y.size, intercept=False)
    g, n_groups = grouping_codes(data, "case", y.size)
    model = clmm_module._CLMM(y, 5, X, g, n_groups, 10)
    par = np.array([-1.6, -0.4, 0.9, 2.1, 0.4, math.log(0.8)])
    _, grad = model.nll(par, gradient=True)
    from stats.methods.lmm import richardson_gradient

    numeric = richardson_gradient(model.nll, par, d=1e-3, r=3)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)


def test_adaptive_quadrature_is_converged_at_ten_nodes():
    data = simulate_quality(33)
    ten = fit_clmm(data, outcome="score", n_agq=10, treatment="assisted", reference="standard")
    many = fit_clmm(data, outcome="score", n_agq=40, treatment="assisted", reference="standard")
    assert ten.log_likelihood == pytest.approx(many.log_likelihood, rel=1e-7)
    assert ten.estimate == pytest.approx(many.estimate, rel=1e-4)
    assert ten.random_sd == pytest.approx(many.random_sd, rel=1e-4)


def test_reversing_the_scale_flips_the_arm_effect():
    data = simulate_quality(34)
    up = fit_clmm(data, outcome="score", levels=[1, 2, 3, 4, 5], treatment="assisted", reference="standard")
    down = fit_clmm(data, outcome="score", levels=[5, 4, 3, 2, 1], treatment="assisted", reference="standard")
    assert down.estimate == pytest.approx(-up.estimate, rel=1e-6)
    assert down.se == pytest.approx(up.se, rel=1e-5)
    assert down.random_sd == pytest.approx(up.random_sd, rel=1e-6)
    assert list(down.thresholds) == ["5|4", "4|3", "3|2", "2|1"]
    np.testing.assert_allclose(list(down.thresholds.values()), [-t for t in reversed(list(up.thresholds.values()))],
                               rtol=1e-6)


def test_result_reports_odds_ratio_and_serialises():
    from scipy import stats

    res = fit_clmm(simulate_quality(35), outcome="score", treatment="assisted", reference="standard")
    low, high = res.confidence_interval(0.9)
    q = stats.norm.ppf(0.95)
    assert (low, high) == pytest.approx((res.estimate - q * res.se, res.estimate + q * res.se))
    assert res.odds_ratio_confidence_interval(0.9) == pytest.approx((math.exp(low), math.exp(high)))
    assert res.pvalue == pytest.approx(2 * stats.norm.sf(abs(res.estimate / res.se)))
    d = json.loads(json.dumps(res.to_dict(0.9)))
    assert d["thresholds"].keys() == {"1|2", "2|3", "3|4", "4|5"}
    assert d["n_groups"] == 60 and d["n_obs"] == 360 and d["n_agq"] == 10


def test_refuses_laplace_and_degenerate_outcomes():
    data = simulate_quality(36)
    with pytest.raises(ValueError, match="n_agq"):
        fit_clmm(data, outcome="score", n_agq=1, treatment="assisted", reference="standard")
    flat = dict(data, score=np.full(data["score"].size, 3))
    with pytest.raises(ValueError, match="at least two observed categories"):
        fit_clmm(flat, outcome="score", treatment="assisted", reference="standard")
    with pytest.raises(ValueError, match="outside `levels`"):
        fit_clmm(data, outcome="score", levels=[1, 2, 3], treatment="assisted", reference="standard")
    few = {k: v[:12] for k, v in data.items()}   # two cases only
    with pytest.raises(ValueError, match="at least 3 levels"):
        fit_clmm(few, outcome="score", treatment="assisted", reference="standard")
