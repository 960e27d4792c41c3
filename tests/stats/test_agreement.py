"""Agreement: ICC against Shrout & Fleiss (1979) and psych::ICC; κ against published irr values and psych."""
import numpy as np
import pytest

from stats.methods.agreement import (
    analyse_agreement,
    cohen_kappa,
    fleiss_kappa,
    icc,
    icc1,
    krippendorff_alpha,
    ratings_matrix,
)
from tests.stats.rscript import require_r_packages, run_r

# Shrout & Fleiss (1979), Psychol Bull 86:420, Table 2: 6 targets rated by 4 judges
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])

# Fleiss (1971), Psychol Bull 76:378: 30 patients, 6 psychiatrists, 5 diagnoses (irr's `diagnoses`,
# coded 1–5 as in statsmodels' test suite, statsmodels/stats/tests/test_inter_rater.py)
DIAGNOSES = np.array([
    [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5], [2, 2, 2, 4, 4, 4],
    [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4], [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5],
    [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4], [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5],
    [3, 3, 3, 3, 3, 5], [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
    [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4], [1, 4, 4, 4, 4, 5],
    [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4], [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5],
])


def r_matrix(x: np.ndarray) -> str:
    return f"matrix(c({', '.join(repr(float(v)) for v in x.ravel())}), nrow = {x.shape[0]}, byrow = TRUE)"


def likert_scores(seed: int, n_items: int, n_raters: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    quality = rng.normal(3, 1, (n_items, 1))
    severity = rng.normal(0, 0.4, (1, n_raters))
    return np.clip(np.rint(quality + severity + rng.normal(0, 0.7, (n_items, n_raters))), 1, 5)


def test_icc_reproduces_shrout_and_fleiss_table_4():
    icc2, icc3 = icc(SHROUT_FLEISS)
    # Shrout & Fleiss (1979), Table 4: ICC(2,1) = .29, ICC(3,1) = .71; F = BMS/EMS = 11.24/1.02 on (5, 15)
    assert round(icc2.estimate, 2) == 0.29 and round(icc3.estimate, 2) == 0.71
    assert (icc2.df1, icc2.df2) == (5, 15)
    # to 4 digits as printed by SimplyAgree's reliability vignette for the same table
    # (github.com/arcaldwell49/SimplyAgree, docs/articles/reliability_analysis.md,
    #  commit e52c02597233363ace6e00438a58b44dad4402c3)
    assert icc2.estimate == pytest.approx(0.2898, abs=5e-5)
    assert icc3.estimate == pytest.approx(0.7148, abs=5e-5)
    # that vignette's intervals are two-sided 90 % ones (alpha = .05 per side): ICC2 0.04290–0.6911, ICC3 0.41183–0.9258
    icc2_90, icc3_90 = icc(SHROUT_FLEISS, confidence_level=0.90)
    assert (icc2_90.low, icc2_90.high) == (pytest.approx(0.04290, abs=5e-6), pytest.approx(0.6911, abs=5e-5))
    assert (icc3_90.low, icc3_90.high) == (pytest.approx(0.41183, abs=5e-6), pytest.approx(0.9258, abs=5e-5))


@pytest.mark.r_oracle
@pytest.mark.parametrize("name", ["shrout_fleiss", "likert_30x4", "likert_12x2", "likert_50x5"])
def test_icc_matches_psych(name):
    require_r_packages("psych")
    x = {"shrout_fleiss": SHROUT_FLEISS, "likert_30x4": likert_scores(41, 30, 4),
         "likert_12x2": likert_scores(42, 12, 2), "likert_50x5": likert_scores(43, 50, 5)}[name].astype(float)
    icc2, icc3 = icc(x)
    # lmer = FALSE: the ANOVA mean squares, exact; psych's default takes them from an iterative lmer fit
    out = run_r(f"""
        suppressMessages(library(psych))
        r <- ICC({r_matrix(x)}, lmer = FALSE)$results
        s <- r[c("Single_random_raters", "Single_fixed_raters"), ]
        cat(sprintf("%.17g", c(s$ICC, s$F, s$df1, s$df2, s$p, s[["lower bound"]], s[["upper bound"]])), "\\n")""")
    r = [float(v) for v in out.split()]
    for k, ours in enumerate((icc2, icc3)):
        assert ours.estimate == pytest.approx(r[0 + k], rel=1e-10)
        assert ours.statistic == pytest.approx(r[2 + k], rel=1e-10)
        assert (ours.df1, ours.df2) == (r[4 + k], r[6 + k])
        assert ours.pvalue == pytest.approx(r[8 + k], rel=1e-8)
        assert ours.confidence_interval() == pytest.approx((r[10 + k], r[12 + k]), rel=1e-8)


def test_fleiss_kappa_reproduces_the_published_irr_values():
    res = fleiss_kappa(DIAGNOSES)
    # irr::kappam.fleiss(diagnoses): Kappa = 0.430, z = 17.652 (values recorded in statsmodels' test suite:
    # fleiss.value = 0.4302445, fleiss.statistic = 17.65183)
    assert res.kappa == pytest.approx(0.4302445, rel=1e-6)
    assert res.statistic == pytest.approx(17.65183, rel=1e-6)
    assert (res.n_items, res.n_raters, len(res.categories)) == (30, 6, 5)


@pytest.mark.r_oracle
@pytest.mark.parametrize("seed", [51, 52, 53])
def test_cohen_kappa_matches_psych(seed):
    require_r_packages("psych")
    x = likert_scores(seed, 60, 2)
    a, b = x[:, 0], x[:, 1]
    cats = np.unique(x)
    ours = {w: cohen_kappa(a, b, weights=w) for w in ("none", "linear", "quadratic")}
    # psych's w is a matrix of disagreement weights over the levels present
    out = run_r(f"""
        suppressMessages(library(psych))
        x <- {r_matrix(x)}; lv <- {r_matrix(cats[None, :])}[1, ]
        D <- abs(outer(lv, lv, "-"))
        lin <- cohen.kappa(x, w = D, levels = lv); quad <- cohen.kappa(x, w = D^2, levels = lv)
        cat(sprintf("%.17g", c(lin$kappa, lin$var.kappa, lin$weighted.kappa, quad$weighted.kappa)), "\\n")""")
    r = [float(v) for v in out.split()]
    assert ours["none"].kappa == pytest.approx(r[0], rel=1e-10)
    assert ours["none"].se ** 2 == pytest.approx(r[1], rel=1e-8)
    assert ours["linear"].kappa == pytest.approx(r[2], rel=1e-10)
    assert ours["quadratic"].kappa == pytest.approx(r[3], rel=1e-10)


def test_weighted_kappa_variance_is_fleiss_cohen_everitt():
    x = likert_scores(54, 80, 2)
    a, b = x[:, 0], x[:, 1]
    cats = np.unique(x)
    p = (a[:, None, None] == cats[None, :, None]) & (b[:, None, None] == cats[None, None, :])
    p = p.mean(axis=0)
    w = 1 - (cats[:, None] - cats[None, :]) ** 2 / (cats.max() - cats.min()) ** 2
    pr, pc = p.sum(axis=1), p.sum(axis=0)
    pe = float((w * np.outer(pr, pc)).sum())
    kappa = ((w * p).sum() - pe) / (1 - pe)
    wi, wj = w @ pc, pr @ w
    var = (np.sum(p * (w - (wi[:, None] + wj[None, :]) * (1 - kappa)) ** 2) - (kappa - pe * (1 - kappa)) ** 2) \
        / (a.size * (1 - pe) ** 2)
    res = cohen_kappa(a, b, weights="quadratic")
    assert res.kappa == pytest.approx(kappa)
    assert res.se ** 2 == pytest.approx(var)


def test_analyse_agreement_from_long_format():
    x = likert_scores(55, 20, 2)
    item = [f"i{i}" for i in range(20) for _ in range(2)]
    rater = ["ann", "bob"] * 20
    res = analyse_agreement(item=item, rater=rater, score=x.ravel())
    assert res.raters == ("ann", "bob") and res.n_items == 20
    assert res.cohen_quadratic is not None and res.icc2.kind == "ICC(2,1)"
    # three raters: no Cohen's kappa
    x3 = likert_scores(56, 10, 3)
    res3 = analyse_agreement(item=[i for i in range(10) for _ in range(3)], rater=["a", "b", "c"] * 10,
                             score=x3.ravel())
    assert res3.cohen_linear is None and res3.fleiss.n_raters == 3


def test_refuses_incomplete_or_duplicated_ratings():
    with pytest.raises(ValueError, match="did not score"):
        ratings_matrix(["i1", "i1", "i2"], ["a", "b", "a"], [1, 2, 3])
    with pytest.raises(ValueError, match="twice"):
        ratings_matrix(["i1", "i1"], ["a", "a"], [1, 2])


# --------------------------------------------------------------------------------------------
# ICC(1,1) and Krippendorff's alpha (issue 14)


@pytest.mark.r_oracle
@pytest.mark.parametrize("name", ["shrout_fleiss", "likert_30x4", "likert_50x5"])
def test_icc1_matches_psych(name):
    require_r_packages("psych")
    x = {"shrout_fleiss": SHROUT_FLEISS, "likert_30x4": likert_scores(41, 30, 4),
         "likert_50x5": likert_scores(43, 50, 5)}[name].astype(float)
    ours = icc1(x)
    out = run_r(f"""
        suppressMessages(library(psych))
        s <- ICC({r_matrix(x)}, lmer = FALSE)$results["Single_raters_absolute", ]
        cat(sprintf("%.17g", c(s$ICC, s$F, s$df1, s$df2, s$p, s[["lower bound"]], s[["upper bound"]])), "\\n")""")
    r = [float(v) for v in out.split()]
    assert ours.kind == "ICC(1,1)"
    assert ours.estimate == pytest.approx(r[0], rel=1e-10) and ours.statistic == pytest.approx(r[1], rel=1e-10)
    assert (ours.df1, ours.df2) == (r[2], r[3])
    assert ours.pvalue == pytest.approx(r[4], rel=1e-8)
    assert ours.confidence_interval() == pytest.approx((r[5], r[6]), rel=1e-8)


def test_icc1_reproduces_shrout_and_fleiss_table_4():
    # Shrout & Fleiss (1979), Table 4: ICC(1,1) = .17 for the six targets and four judges
    assert round(icc1(SHROUT_FLEISS).estimate, 2) == 0.17


# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", the example with missing values:
# 4 observers × 12 units (None = no value); published α: nominal .743, ordinal .815, interval .849, ratio .797
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def _long(matrix):
    return ([u for row in matrix for u, v in enumerate(row) if v is not None],
            [v for row in matrix for v in row if v is not None])


@pytest.mark.parametrize("metric,published", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849),
                                              ("ratio", 0.797)])
def test_krippendorff_alpha_reproduces_the_published_example(metric, published):
    item, value = _long(KRIPPENDORFF_2011)
    res = krippendorff_alpha(item, value, metric=metric)
    assert round(res.alpha, 3) == published
    assert res.n_items == 11 and res.n_values == 40      # unit 12 has one value: not pairable


_R_KRIPPENDORFF = r"""
# Krippendorff's alpha from its definition, pair by pair: within each unit every ordered pair of values
# weighted 1/(m_u - 1) (observed), against all pairs of pairable values (expected); the ordinal
# difference from the marginal counts n_g of the sorted values.
u <- c({units}); v <- c({values})
m <- table(u); keep <- u %in% names(m)[m >= 2]; u <- u[keep]; v <- v[keep]
cats <- sort(unique(v)); n_g <- as.numeric(table(factor(v, levels = cats))); n <- length(v)
delta2 <- function(a, b, metric) {{
  if (metric == "nominal") return(as.numeric(a != b))
  if (metric == "interval") return((a - b)^2)
  i <- match(a, cats); j <- match(b, cats); lo <- min(i, j); hi <- max(i, j)
  (sum(n_g[lo:hi]) - (n_g[i] + n_g[j]) / 2)^2
}}
for (metric in c("nominal", "ordinal", "interval")) {{
  Do <- 0
  for (unit in unique(u)) {{
    x <- v[u == unit]; mu <- length(x)
    for (a in seq_along(x)) for (b in seq_along(x)) if (a != b) Do <- Do + delta2(x[a], x[b], metric) / (mu - 1)
  }}
  De <- 0
  for (a in seq_len(n)) for (b in seq_len(n)) if (a != b) De <- De + delta2(v[a], v[b], metric)
  cat(sprintf("%.17g", 1 - (n - 1) * Do / De), "\n")
}}
"""


@pytest.mark.r_oracle
def test_krippendorff_alpha_equals_an_r_computation_from_the_definition():
    rng = np.random.default_rng(5)
    x = likert_scores(44, 25, 5)
    x[rng.random(x.shape) < 0.15] = np.nan                       # missing experts
    item = [i for i in range(x.shape[0]) for j in range(x.shape[1]) if not np.isnan(x[i, j])]
    value = [x[i, j] for i in range(x.shape[0]) for j in range(x.shape[1]) if not np.isnan(x[i, j])]
    out = run_r(_R_KRIPPENDORFF.format(units=", ".join(map(str, item)), values=", ".join(repr(float(v))
                                                                                       for v in value)))
    r = [float(v) for v in out.split()]
    for metric, expected in zip(("nominal", "ordinal", "interval"), r):
        assert krippendorff_alpha(item, value, metric=metric).alpha == pytest.approx(expected, rel=1e-10), metric


def test_agreement_reports_icc1_and_the_ordinal_alpha_beside_fleiss():
    x = likert_scores(45, 20, 3)
    res = analyse_agreement(item=np.repeat(np.arange(20), 3), rater=np.tile(["a", "b", "c"], 20),
                            score=x.reshape(-1))
    assert res.icc1.kind == "ICC(1,1)" and res.icc1.estimate == pytest.approx(icc1(x).estimate)
    long_item = np.repeat(np.arange(20), 3)
    assert res.krippendorff_ordinal.alpha == pytest.approx(krippendorff_alpha(long_item, x.reshape(-1)).alpha)
    assert res.krippendorff_ordinal.metric == "ordinal"
