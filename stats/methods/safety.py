"""Safety monitoring for a data-monitoring committee (no Django): critical findings missed, per arm.

A critical finding is "missed" by a report when the reference standard (the experts' panel) says it is
present and the report does not call it. The committee sees, per arm: the misses among the critical
findings present, with a Wilson interval; per finding; per reader (so that one reader's misses are seen
as that); and the difference between the arms with Newcombe's hybrid score interval (method 10 of
Newcombe 1998, as statsmodels computes it).

This is a monitoring signal, not a test of the trial's hypotheses: the intervals treat the (case,
finding) calls as independent although the calls of one reader are not, so they are narrower than a
reader-aware analysis would give. The per-reader rows are there for that reason, and the signal is
stated as such in the report. The signal fires when the lower limit of (treatment − control) miss
rate exceeds the plan's margin (default 0: more misses with the AI than without, beyond chance).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from statsmodels.stats.proportion import confint_proportions_2indep

from .preference import wilson_interval

__all__ = ["MissRate", "SafetyResult", "missed_critical_findings"]


@dataclass(frozen=True)
class MissRate:
    missed: int
    present: int
    rate: float
    ci_low: float
    ci_high: float

    def as_dict(self) -> dict:
        return {"missed": self.missed, "present": self.present, "rate": self.rate, "ci_low": self.ci_low,
                "ci_high": self.ci_high}


def _rate(missed: int, present: int, confidence_level: float) -> MissRate:
    if present == 0:
        return MissRate(missed, present, float("nan"), float("nan"), float("nan"))
    low, high = wilson_interval(missed, present, confidence_level)
    return MissRate(missed, present, missed / present, low, high)


@dataclass(frozen=True)
class SafetyResult:
    treatment: str
    control: str
    by_arm: dict[str, MissRate]
    by_finding: dict[str, dict[str, MissRate]]
    by_reader: dict[str, MissRate]
    difference: float                 # treatment − control miss rate
    difference_ci: tuple[float, float]
    margin: float
    signal: bool                      # lower limit of the difference above the margin
    method: str = ("misses among critical findings present by the reference; Wilson intervals per arm; Newcombe "
                   "hybrid score interval for the difference; calls treated as independent (a monitoring signal, "
                   "not a reader-aware test)")

    def as_dict(self) -> dict:
        return {"treatment": self.treatment, "control": self.control,
                "by_arm": {a: r.as_dict() for a, r in self.by_arm.items()},
                "by_finding": {f: {a: r.as_dict() for a, r in arms.items()} for f, arms in self.by_finding.items()},
                "by_reader": {k: r.as_dict() for k, r in self.by_reader.items()},
                "difference": self.difference, "difference_ci": list(self.difference_ci), "margin": self.margin,
                "signal": self.signal, "method": self.method}


def missed_critical_findings(*, arm: Sequence[str], reader: Sequence[str], finding: Sequence[str],
                             reference: Sequence[int], call: Sequence[int], critical: Sequence[str],
                             treatment: str, control: str, margin: float = 0.0,
                             confidence_level: float = 0.95) -> SafetyResult:
    """One row per (report, finding): its arm, its reader, the finding, the reference (1 present) and the report's
    call (1 called). Only critical findings present by the reference count."""
    n = len(arm)
    if not (len(reader) == len(finding) == len(reference) == len(call) == n):
        raise ValueError("arm, reader, finding, reference and call must have the same length.")
    if treatment == control:
        raise ValueError("The treatment and control arms must differ.")
    critical_set = set(critical)
    if not critical_set:
        raise ValueError("Name at least one critical finding.")
    present: dict[tuple[str, str], int] = defaultdict(int)   # (arm, finding) → present
    missed: dict[tuple[str, str], int] = defaultdict(int)
    reader_present: dict[str, int] = defaultdict(int)
    reader_missed: dict[str, int] = defaultdict(int)
    for a, r, f, ref, c in zip(arm, reader, finding, reference, call):
        if a not in (treatment, control):
            raise ValueError(f"Unknown arm {a!r}: expected {treatment!r} or {control!r}.")
        if f not in critical_set or int(ref) != 1:
            continue
        present[a, f] += 1
        reader_present[r] += 1
        if int(c) != 1:
            missed[a, f] += 1
            reader_missed[r] += 1
    arms = (treatment, control)
    totals = {a: (sum(missed[a, f] for f in critical_set), sum(present[a, f] for f in critical_set)) for a in arms}
    by_arm = {a: _rate(m, p, confidence_level) for a, (m, p) in totals.items()}
    by_finding = {f: {a: _rate(missed[a, f], present[a, f], confidence_level) for a in arms}
                  for f in sorted(critical_set)}
    by_reader = {r: _rate(reader_missed[r], reader_present[r], confidence_level) for r in sorted(reader_present)}
    (mt, pt), (mc, pc) = totals[treatment], totals[control]
    if pt == 0 or pc == 0:
        difference, ci = float("nan"), (float("nan"), float("nan"))
    else:
        difference = mt / pt - mc / pc
        low, high = confint_proportions_2indep(mt, pt, mc, pc, method="newcomb", compare="diff",
                                               alpha=1 - confidence_level)
        ci = (float(low), float(high))
    signal = bool(ci[0] == ci[0] and ci[0] > margin)  # NaN (no data) never signals
    return SafetyResult(treatment=treatment, control=control, by_arm=by_arm, by_finding=by_finding,
                        by_reader=by_reader, difference=difference, difference_ci=ci, margin=margin, signal=signal)
