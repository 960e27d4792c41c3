"""Holm and Benjamini–Hochberg adjustment against R's p.adjust."""
import numpy as np
import pytest

from stats.methods.multiplicity import adjust_pvalues
from tests.stats.rscript import run_r


def r_vec(values) -> str:
    return "c(" + ", ".join(repr(float(v)) for v in values) + ")"


@pytest.mark.r_oracle
@pytest.mark.parametrize("seed", [61, 62, 63])
@pytest.mark.parametrize("method,r_method", [("holm", "holm"), ("bh", "BH")])
def test_adjusted_pvalues_match_p_adjust(seed, method, r_method):
    rng = np.random.default_rng(seed)
    p = np.r_[rng.uniform(0, 0.01, 3), rng.uniform(0, 1, 9)]
    p[4] = p[5]                                        # a tie, as rounded p-values have
    rng.shuffle(p)
    ours = adjust_pvalues(p, method=method)
    out = run_r(f'cat(sprintf("%.17g", p.adjust({r_vec(p)}, "{r_method}")), "\\n")')
    np.testing.assert_allclose(ours.adjusted, [float(v) for v in out.split()], rtol=1e-12)
    assert ours.rejected == tuple(a <= 0.05 for a in ours.adjusted)


def test_holm_on_a_textbook_example():
    # Holm (1979): p sorted 0.01, 0.02, 0.03, 0.04 with m = 4 -> 0.04, 0.06, 0.06, 0.06
    res = adjust_pvalues([0.03, 0.01, 0.04, 0.02], method="holm", names=["c", "a", "d", "b"])
    assert res.adjusted == pytest.approx((0.06, 0.04, 0.06, 0.06))
    assert res.names == ("c", "a", "d", "b")
    assert res.rejected == (False, True, False, False)


def test_refuses_values_outside_zero_one():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        adjust_pvalues([0.2, 1.3])
    with pytest.raises(ValueError, match="method"):
        adjust_pvalues([0.2], method="bonferroni-ish")
