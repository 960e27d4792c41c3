"""Interim looks: Lan–DeMets boundaries against rpact, type-I error by simulation, monitoring, blinded re-estimation."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stats.methods.group_sequential import (
    BlindedComponents,
    adjusted_for_planned_effect,
    boundaries,
    monitor,
    spent,
)

from .rscript import run_r

DESIGNS = [
    ("obrien_fleming", "asOF", (0.5, 1.0)),
    ("obrien_fleming", "asOF", (1 / 3, 2 / 3, 1.0)),
    ("obrien_fleming", "asOF", (0.25, 0.5, 0.8, 1.0)),
    ("obrien_fleming", "asOF", (0.2, 0.4, 0.6, 0.8, 1.0)),
    ("pocock", "asP", (0.2, 0.45, 0.7, 1.0)),
    ("pocock", "asP", (0.5, 1.0)),
]


@pytest.mark.r_oracle
def test_boundaries_equal_rpact():
    calls = ",".join(
        f'getDesignGroupSequential(kMax={len(t)}, alpha=0.05, sided=2, typeOfDesign="{kind}", '
        f'informationRates=c({",".join(repr(x) for x in t)}))$criticalValues'
        for _, kind, t in DESIGNS)
    out = run_r(f"suppressMessages(library(rpact)); r <- list({calls}); "
                "cat(sprintf('[%s]', paste(sapply(r, function(v) sprintf('[%s]', paste(sprintf('%.10f', v), "
                "collapse=','))), collapse=',')))")
    expected = json.loads(out.strip().splitlines()[-1])
    for (spending, _, t), want in zip(DESIGNS, expected):
        got = boundaries(t, alpha=0.05, spending=spending).z
        assert got == pytest.approx(want, abs=1e-6), (spending, t)


def test_first_look_is_the_spending_function_itself():
    # At look 1 there is nothing to condition on: the boundary is the normal quantile of α(t1)/2.
    from scipy import stats

    for spending in ("obrien_fleming", "pocock"):
        b = boundaries((0.3, 1.0), spending=spending)
        assert b.z[0] == pytest.approx(stats.norm.isf(spent(0.3, alpha=0.05, spending=spending) / 2), abs=1e-9)
    assert spent(1.0, alpha=0.05) == pytest.approx(0.05, abs=1e-12)


def test_type_one_error_by_simulation_of_the_score_process():
    # Independent of the numerical integration: paths of Brownian motion observed at the looks.
    rng = np.random.default_rng(20261206)
    t = np.array([0.25, 0.5, 0.8, 1.0])
    b = boundaries(t, alpha=0.05)
    n = 400_000
    increments = rng.standard_normal((n, len(t))) * np.sqrt(np.diff(np.concatenate([[0.0], t])))
    z = np.cumsum(increments, axis=1) / np.sqrt(t)
    crossed = np.abs(z) >= np.array(b.z)
    first = np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)
    rejected = (first >= 0).mean()
    se = math.sqrt(0.05 * 0.95 / n)
    assert abs(rejected - 0.05) < 4 * se
    # each look spends its planned increment
    increments_planned = np.diff(np.concatenate([[0.0], b.cumulative_alpha]))
    for k in range(len(t)):
        share = (first == k).mean()
        assert abs(share - increments_planned[k]) < 4 * math.sqrt(max(increments_planned[k], 1e-5) / n) + 1e-5


def test_monitoring_stops_at_the_first_rejection_and_uses_the_observed_fractions():
    planned = boundaries((0.5, 1.0))
    # a look taken at 0.55 instead of 0.5 gets its own boundary (Lan–DeMets), not the planned one
    first = monitor([0.006], [0.55])  # nominal level ≈ 0.0050 there
    assert first[0].boundary_z != pytest.approx(planned.z[0]) and not first[0].rejected
    assert first[0].nominal_p == pytest.approx(2 * (1 - _phi(first[0].boundary_z)), rel=1e-9)
    # p = 0.001 at half the information rejects under O'Brien–Fleming (nominal ≈ 0.0031) and ends the trial
    decisions = monitor([0.001, 0.2], [0.5, 1.0], final=True)
    assert [d.rejected for d in decisions] == [True]
    # the same data under Pocock-type spending: the first look's nominal level is larger
    assert monitor([0.02], [0.5], spending="pocock")[0].nominal_p > monitor([0.02], [0.5])[0].nominal_p
    # the final look spends all that is left, even when it comes before full information
    final = boundaries((0.5, 0.9), final=True)
    assert final.cumulative_alpha[-1] == 0.05 and final.z[-1] < boundaries((0.5, 0.9), final=False).z[-1]


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


@pytest.mark.parametrize("bad, message", [
    ((), "At least one look"),
    ((0.5, 0.5), "increase"),
    ((0.0, 1.0), r"\(0, 1\]"),
    ((0.5, 1.2), r"\(0, 1\]"),
])
def test_bad_fractions_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        boundaries(bad)


def test_unknown_spending_function_is_refused():
    with pytest.raises(ValueError, match="Unknown spending"):
        boundaries((0.5, 1.0), spending="haybittle")


def test_blinded_reader_variance_adjustment_removes_the_arm_shift_on_average():
    # A blinded fit sees the arm shift ±δ/2 of readers nested in arms as reader spread; the adjusted estimator
    # removes it in expectation (the sample variance of 2k reader effects, ignoring the arm).
    rng = np.random.default_rng(7)
    k, sd, delta, reps = 6, 0.25, 0.3, 40_000
    arm = np.repeat([0.5, -0.5], k) * delta
    effects = rng.standard_normal((reps, 2 * k)) * sd + arm
    pooled = effects.var(axis=1, ddof=1)
    adjusted = [adjusted_for_planned_effect(BlindedComponents(case=0, reader=v, report=0.1, expert=0, residual=0),
                                            planned_effect=delta, readers_per_arm=k).reader for v in pooled[:2000]]
    assert abs(pooled.mean() - (sd**2 + delta**2 / 4 * 2 * k / (2 * k - 1))) < 4 * pooled.std() / math.sqrt(reps)
    unclipped = pooled - delta**2 / 4 * 2 * k / (2 * k - 1)
    assert abs(unclipped.mean() - sd**2) < 4 * pooled.std() / math.sqrt(reps)
    assert min(adjusted) >= 0.0
    same = adjusted_for_planned_effect(BlindedComponents(case=0.2, reader=0.01, report=0.1, expert=0.05, residual=0.4),
                                       planned_effect=0.3, readers_per_arm=6)
    assert (same.reader, same.case, same.report, same.expert, same.residual) == (0.0, 0.2, 0.1, 0.05, 0.4)
