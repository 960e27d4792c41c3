"""Detection by arm: Wilson intervals and McNemar against R (prop.test, mcnemar.test, binom.test)."""
import numpy as np
import pytest

from stats.methods.detection import (
    analyse_detection,
    detection_glmm,
    mcnemar_test,
    proportion,
    threshold_accuracy,
)
from tests.stats.rscript import run_r


def r_numbers(script: str) -> list[float]:
    return [float(v) for v in run_r(script).split()]


def simulate_reads(rng, n_cases: int, findings=("effusion", "nodule"), crossover: bool = False):
    rows = []
    for c in range(n_cases):
        for f in findings:
            truth = int(rng.random() < 0.35)
            readers = {"assisted": ["r1", "r2"], "standard": ["r1", "r2"]} if crossover else \
                {"assisted": [f"a{c % 3}"], "standard": [f"s{c % 4}"]}
            for arm, sens, spec in (("assisted", 0.85, 0.9), ("standard", 0.72, 0.88)):
                for reader in readers[arm]:
                    p_call = sens if truth else 1 - spec
                    rows.append((f"c{c}", arm, reader, f, truth, int(rng.random() < p_call)))
    return {k: [r[i] for r in rows] for i, k in enumerate(("case", "arm", "reader", "finding", "truth", "call"))}


@pytest.mark.r_oracle
@pytest.mark.parametrize("count,n", [(0, 17), (5, 17), (17, 17), (38, 45), (120, 301)])
def test_wilson_interval_matches_prop_test(count, n):
    ours = proportion(count, n)
    r = r_numbers(f'cat(sprintf("%.17g", prop.test({count}, {n}, correct = FALSE)$conf.int), "\\n")')
    assert ours.confidence_interval() == pytest.approx(r, rel=1e-10, abs=1e-15)


@pytest.mark.r_oracle
@pytest.mark.parametrize("a,b,c,d", [(30, 9, 3, 20), (12, 1, 0, 8), (40, 14, 15, 31), (5, 2, 9, 4)])
def test_mcnemar_matches_r_with_continuity_correction_and_exact(a, b, c, d):
    ours = mcnemar_test(b, c)
    r = r_numbers(f"""
        m <- mcnemar.test(matrix(c({a}, {c}, {b}, {d}), 2))
        e <- binom.test({b}, {b + c}, 0.5)
        cat(sprintf("%.17g", c(m$statistic, m$p.value, e$p.value)), "\\n")""")
    assert ours.statistic == pytest.approx(r[0], rel=1e-12)
    assert ours.pvalue == pytest.approx(r[1], rel=1e-10)
    assert ours.exact_pvalue == pytest.approx(r[2], rel=1e-10)


@pytest.mark.r_oracle
def test_per_finding_sensitivity_specificity_and_mcnemar_match_r():
    rng = np.random.default_rng(31)
    data = simulate_reads(rng, 150)
    res = analyse_detection(**data)
    assert res.arms == ("assisted", "standard") and res.pairing == "case"
    f = res.findings[0]
    rows = [i for i, fi in enumerate(data["finding"]) if fi == f.finding]
    truth = {data["case"][i]: data["truth"][i] for i in rows}
    calls = {(data["case"][i], data["arm"][i]): data["call"][i] for i in rows}
    cases = sorted(truth)
    pos = [c for c in cases if truth[c] == 1]
    neg = [c for c in cases if truth[c] == 0]
    ra = [calls[(c, "assisted")] for c in pos]
    rs = [calls[(c, "standard")] for c in pos]
    na = [1 - calls[(c, "assisted")] for c in neg]
    ns = [1 - calls[(c, "standard")] for c in neg]
    vec = lambda v: "c(" + ",".join(map(str, v)) + ")"   # noqa: E731
    r = r_numbers(f"""
        ra <- {vec(ra)}; rs <- {vec(rs)}; na <- {vec(na)}; ns <- {vec(ns)}
        se <- prop.test(sum(ra), length(ra), correct = FALSE)$conf.int
        sp <- prop.test(sum(ns), length(ns), correct = FALSE)$conf.int
        tab <- function(x, y) table(factor(x, levels = c(1, 0)), factor(y, levels = c(1, 0)))
        m1 <- mcnemar.test(tab(ra, rs)); m0 <- mcnemar.test(tab(na, ns))
        cat(sprintf("%.17g", c(se, sp, m1$statistic, m1$p.value, m0$statistic, m0$p.value)), "\\n")""")
    assisted, standard = f.arms
    assert assisted.sensitivity.estimate == pytest.approx(np.mean(ra))
    assert assisted.sensitivity.confidence_interval() == pytest.approx(r[0:2], rel=1e-10)
    assert standard.specificity.estimate == pytest.approx(np.mean(ns))
    assert standard.specificity.confidence_interval() == pytest.approx(r[2:4], rel=1e-10)
    assert f.mcnemar_sensitivity.n_pairs == len(pos)
    assert (f.mcnemar_sensitivity.statistic, f.mcnemar_sensitivity.pvalue) == pytest.approx(r[4:6], rel=1e-10)
    assert (f.mcnemar_specificity.statistic, f.mcnemar_specificity.pvalue) == pytest.approx(r[6:8], rel=1e-10)


def test_crossover_reads_are_paired_by_case_and_reader():
    data = simulate_reads(np.random.default_rng(2), 40, findings=("effusion",), crossover=True)
    res = analyse_detection(**data)
    assert res.pairing == "case and reader"
    f = res.findings[0]
    n_pos = sum(t for t, r in zip(data["truth"], data["reader"]) if r == "r1") // 2
    assert f.mcnemar_sensitivity.n_pairs == 2 * n_pos


def test_no_discordant_pairs_gives_an_exact_p_of_one():
    res = mcnemar_test(0, 0, n_pairs=12)
    assert res.exact_pvalue == 1.0 and np.isnan(res.pvalue)


def test_refuses_truth_that_is_not_binary_and_a_third_arm():
    data = simulate_reads(np.random.default_rng(3), 5, findings=("effusion",))
    bad = dict(data, truth=[2] + data["truth"][1:])
    with pytest.raises(ValueError, match="truth must be 0 or 1"):
        analyse_detection(**bad)
    bad = dict(data, arm=["other"] + data["arm"][1:])
    with pytest.raises(ValueError, match="exactly two arms"):
        analyse_detection(**bad)


# --------------------------------------------------------------------------------------------
# Issue 14: pairing per (finding, case), the reader-aware GLMM, the AI at its threshold


def test_one_duplicate_read_no_longer_empties_every_mcnemar_test():
    data = simulate_reads(np.random.default_rng(7), 60, findings=("effusion", "nodule"))
    clean = analyse_detection(**data)
    # a second read of case c0 in one arm, by another reader (a reading incident)
    dup = {k: list(v) for k, v in data.items()}
    for i in [i for i, c in enumerate(data["case"]) if c == "c0" and data["arm"][i] == "assisted"]:
        for k in dup:
            dup[k].append(data[k][i] if k != "reader" else "a9")
    res = analyse_detection(**dup)
    assert res.pairing == "case" and res.unpaired_reads == 6      # c0's three reads of each finding
    for before, after in zip(clean.findings, res.findings):
        for test in ("mcnemar_sensitivity", "mcnemar_specificity"):
            b, a = getattr(before, test), getattr(after, test)
            assert a is not None
            # only c0's pair of this finding is gone
            assert a.n_pairs in (b.n_pairs, b.n_pairs - 1)


def test_detection_glmm_compares_the_arms_per_finding_and_pooled():
    data = simulate_reads(np.random.default_rng(8), 120, findings=("effusion", "nodule"))
    res = detection_glmm(**data, treatment="assisted", reference="standard")
    assert set(res.pooled) == {"sensitivity", "specificity"} and set(res.findings) == {"effusion", "nodule"}
    pooled = res.pooled["sensitivity"].result
    assert pooled.term == "armassisted" and "findingnodule" in pooled.fixed_effects
    assert set(pooled.variance_components) == {"case", "reader"}
    assert "findingnodule" not in res.findings["nodule"]["sensitivity"].result.fixed_effects
    # only the diseased reads enter the sensitivity model
    assert res.pooled["sensitivity"].n_reads == sum(t == 1 for t in data["truth"])
    d = res.to_dict()
    assert d["pooled"]["sensitivity"]["status"] == "ok" and d["findings"]["effusion"]["specificity"]["result"]["df"] > 0


def test_detection_glmm_says_why_a_model_cannot_be_fitted():
    data = simulate_reads(np.random.default_rng(9), 30, findings=("effusion",))
    data["call"] = [t for t in data["truth"]]                           # every call correct: nothing to model
    res = detection_glmm(**data, treatment="assisted", reference="standard")
    assert res.pooled["sensitivity"].result is None and "every row" in res.pooled["sensitivity"].reason


@pytest.mark.r_oracle
def test_ai_sensitivity_and_specificity_at_the_threshold_have_wilson_intervals():
    rng = np.random.default_rng(10)
    truth = (rng.random(80) < 0.4).astype(int)
    score = np.clip(rng.normal(0.35 + 0.3 * truth, 0.2), 0, 1)
    res = threshold_accuracy(truth, score, threshold=0.5)
    tp, fn = int(np.sum((score >= 0.5) & (truth == 1))), int(np.sum((score < 0.5) & (truth == 1)))
    tn = int(np.sum((score < 0.5) & (truth == 0)))
    assert (res.sensitivity.count, res.sensitivity.n) == (tp, tp + fn)
    assert res.specificity.count == tn
    r = r_numbers(f'cat(sprintf("%.17g", c(prop.test({tp}, {tp + fn}, correct = FALSE)$conf.int, '
                  f'prop.test({tn}, {int(np.sum(truth == 0))}, correct = FALSE)$conf.int)), "\\n")')
    assert res.sensitivity.confidence_interval() == pytest.approx(r[:2], rel=1e-10)
    assert res.specificity.confidence_interval() == pytest.approx(r[2:], rel=1e-10)
