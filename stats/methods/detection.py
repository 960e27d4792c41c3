"""Detection of findings by arm: sensitivity and specificity with Wilson intervals, McNemar on paired cases.

Each row is one reader's call (0/1) on one finding of one case, with the reference-standard truth
(0/1). Sensitivity and specificity per finding and arm use Wilson score intervals (Newcombe 1998,
method 3; R `prop.test(correct = FALSE)`). The arms are compared on paired reads by McNemar's test
(McNemar 1947) separately among diseased reads (sensitivity) and non-diseased reads (specificity),
as comparative accuracy studies do: the chi-square with R's default continuity correction
(Edwards 1948; R `mcnemar.test`) and the exact conditional binomial test on the discordant pairs.

Pairs are the two reads of a case (paired-parallel design: one reader per arm), or of a case by
the same reader (crossover). Several findings of one case are not independent: for an analysis
across findings, resample cases, not rows.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

from scipy import stats

from stats.methods.preference import wilson_interval

__all__ = [
    "Proportion",
    "ArmAccuracy",
    "McNemarResult",
    "FindingResult",
    "DetectionResult",
    "proportion",
    "mcnemar_test",
    "analyse_detection",
]


@dataclass(frozen=True)
class Proportion:
    estimate: float
    count: int
    n: int
    low: float                   # Wilson interval
    high: float

    def confidence_interval(self) -> tuple[float, float]:
        return self.low, self.high


@dataclass(frozen=True)
class ArmAccuracy:
    arm: str
    sensitivity: Proportion      # calls = 1 among truth = 1
    specificity: Proportion      # calls = 0 among truth = 0


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on paired binary outcomes; b and c are the discordant pairs."""

    n_pairs: int
    b: int                       # first arm correct, second arm wrong
    c: int                       # first arm wrong, second arm correct
    statistic: float             # (|b − c| − 1)² / (b + c) with the continuity correction, else (b − c)² / (b + c)
    df: int
    pvalue: float                # chi-square, 1 df (R mcnemar.test)
    exact_pvalue: float          # two-sided binomial on b of b + c at ½

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FindingResult:
    finding: str
    arms: tuple[ArmAccuracy, ...]
    mcnemar_sensitivity: McNemarResult | None   # None when the arms cannot be paired
    mcnemar_specificity: McNemarResult | None


@dataclass(frozen=True)
class DetectionResult:
    arms: tuple[str, str]        # McNemar compares arms[0] with arms[1]
    pairing: str                 # "case" or "case and reader"
    findings: tuple[FindingResult, ...]
    confidence_level: float

    def to_dict(self) -> dict:
        return asdict(self)


def proportion(count: int, n: int, confidence_level: float = 0.95) -> Proportion:
    low, high = wilson_interval(count, n, confidence_level)
    return Proportion(estimate=count / n if n else math.nan, count=int(count), n=int(n), low=low, high=high)


def mcnemar_test(b: int, c: int, *, n_pairs: int | None = None, correct: bool = True) -> McNemarResult:
    """McNemar's test from the discordant counts: R `mcnemar.test(table, correct = TRUE)` and the exact variant."""
    b, c = int(b), int(c)
    if b + c == 0:  # no discordant pair: R's statistic is NaN, the exact test has nothing to reject
        statistic, p, exact = math.nan, math.nan, 1.0
    else:
        diff = abs(b - c) - (1 if correct else 0)
        statistic = diff * diff / (b + c)
        p = float(stats.chi2.sf(statistic, 1))
        exact = float(stats.binomtest(b, b + c, 0.5).pvalue)
    return McNemarResult(n_pairs=b + c if n_pairs is None else int(n_pairs), b=b, c=c, statistic=float(statistic),
                         df=1, pvalue=p, exact_pvalue=exact)


def _as01(values, name: str) -> list[int]:
    out = []
    for v in values:
        s = str(v).strip().lower()
        if s in ("1", "1.0", "true", "yes"):
            out.append(1)
        elif s in ("0", "0.0", "false", "no"):
            out.append(0)
        else:
            raise ValueError(f"{name} must be 0 or 1; got {v!r}")
    return out


def analyse_detection(*, case, arm, reader, finding, truth, call, arms: tuple[str, str] | None = None,
                      confidence_level: float = 0.95) -> DetectionResult:
    """Sensitivity/specificity per finding and arm, and McNemar between the two arms on paired reads.

    `arms` orders the comparison, treatment first (default: the two labels, sorted).
    """
    case, arm, reader, finding = (list(map(str, v)) for v in (case, arm, reader, finding))
    truth, call = _as01(truth, "truth"), _as01(call, "call")
    if not (len(case) == len(arm) == len(reader) == len(finding) == len(truth) == len(call)):
        raise ValueError("case, arm, reader, finding, truth and call must have the same length")
    if not case:
        raise ValueError("no rows")
    labels = sorted(set(arm))
    arms = tuple(labels) if arms is None else tuple(arms)
    if len(arms) != 2 or set(arms) != set(labels):
        raise ValueError(f"expected exactly two arms {arms!r}; the data have {labels!r}")

    truth_of: dict[tuple[str, str], int] = {}
    for f, c, t in zip(finding, case, truth):
        if truth_of.setdefault((f, c), t) != t:
            raise ValueError(f"case {c!r} has two different truths for finding {f!r}")

    # pair on the case when each arm read each case once per finding, else on (case, reader)
    per_case = Counter(zip(finding, case, arm))
    if max(per_case.values()) == 1:
        keys, pairing = list(zip(finding, case)), "case"
    else:
        keys, pairing = list(zip(finding, case, reader)), "case and reader"
        if max(Counter(zip(finding, case, reader, arm)).values()) > 1:
            raise ValueError("a reader read the same case twice in one arm for one finding")

    calls: dict[tuple, dict[str, int]] = defaultdict(dict)
    for key, a, k in zip(keys, arm, call):
        calls[key][a] = k

    results = []
    for f in sorted(set(finding)):
        arm_results = []
        for a in arms:
            rows = [(t, k) for ff, aa, t, k in zip(finding, arm, truth, call) if ff == f and aa == a]
            pos = [k for t, k in rows if t == 1]
            neg = [k for t, k in rows if t == 0]
            arm_results.append(ArmAccuracy(
                arm=a,
                sensitivity=proportion(sum(pos), len(pos), confidence_level),
                specificity=proportion(len(neg) - sum(neg), len(neg), confidence_level),
            ))
        tests = {}
        for label, t_value in (("sens", 1), ("spec", 0)):
            b = c = n = 0
            for key, by_arm in calls.items():
                if key[0] != f or len(by_arm) != 2 or truth_of[(f, key[1])] != t_value:
                    continue
                first = by_arm[arms[0]] == t_value   # a correct call: 1 on a diseased case, 0 on a healthy one
                second = by_arm[arms[1]] == t_value
                n += 1
                b += first and not second
                c += second and not first
            tests[label] = mcnemar_test(b, c, n_pairs=n) if n else None
        results.append(FindingResult(finding=f, arms=tuple(arm_results),
                                     mcnemar_sensitivity=tests["sens"], mcnemar_specificity=tests["spec"]))
    return DetectionResult(arms=arms, pairing=pairing, findings=tuple(results), confidence_level=confidence_level)

