"""Detection of findings by arm: sensitivity and specificity with Wilson intervals, a logistic GLMM, McNemar.

Each row is one reader's call (0/1) on one finding of one case, with the reference-standard truth
(0/1). Sensitivity and specificity per finding and arm use Wilson score intervals (Newcombe 1998,
method 3; R `prop.test(correct = FALSE)`).

The arm test that fits a reader-randomized design is `detection_glmm`: a logistic GLMM of a correct
call (call = truth) with random reader and case intercepts (lme4::glmer's model, stats.methods.glmm),
among diseased reads (sensitivity) and non-diseased reads (specificity), per finding and pooled over
findings with a fixed finding effect; its test is the small-sample corrected t of fit_binomial_glmm,
because the readers are the randomized units and there are few of them.

McNemar's test (McNemar 1947) on paired reads treats the readers as fixed: it is a sensitivity
analysis, not a test of the arm effect, when readers are randomized. It is the chi-square with R's
default continuity correction (Edwards 1948; R `mcnemar.test`) and the exact conditional binomial
test on the discordant pairs. Pairing is decided for each (finding, case): the two reads of the case
when each arm read it once (paired-parallel), else each reader's own two reads (crossover); reads
that pair with nothing (a duplicate read, a case read in one arm) are left out and counted, so that
one duplicate no longer decides the pairing of every other case. Several findings of one case are
not independent: for an analysis across findings, resample cases, not rows.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from stats.methods.glmm import BinomialGLMMResult, fit_binomial_glmm
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
    "DetectionGLMM",
    "DetectionGLMMResult",
    "detection_glmm",
    "ThresholdAccuracy",
    "threshold_accuracy",
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
    pairing: str                 # "case", "case and reader", both ("case; case and reader") or "none"
    findings: tuple[FindingResult, ...]
    confidence_level: float
    unpaired_reads: int = 0      # reads left out of McNemar: nothing to pair them with (see the module docstring)

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

    # pairing per (finding, case): the case when each arm read it once, else each reader's own two reads
    reads: dict[tuple[str, str], list[tuple[str, str, int]]] = defaultdict(list)
    for f, c, a, r, k in zip(finding, case, arm, reader, call):
        reads[(f, c)].append((a, r, k))
    calls: dict[tuple, dict[str, int]] = {}
    kinds: set[str] = set()
    unpaired = 0
    for (f, c), rows in reads.items():
        per_arm = Counter(a for a, _, _ in rows)
        if len(per_arm) == 2 and all(v == 1 for v in per_arm.values()):
            calls[(f, c)] = {a: k for a, _, k in rows}
            kinds.add("case")
            continue
        by_reader: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for a, r, k in rows:
            by_reader[r].append((a, k))
        for r, mine in by_reader.items():
            if len(mine) == 2 and mine[0][0] != mine[1][0]:
                calls[(f, c, r)] = dict(mine)
                kinds.add("case and reader")
            else:
                unpaired += len(mine)
    pairing = "; ".join(k for k in ("case", "case and reader") if k in kinds) or "none"

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
    return DetectionResult(arms=arms, pairing=pairing, findings=tuple(results), confidence_level=confidence_level,
                           unpaired_reads=unpaired)


# --------------------------------------------------------------------------------------------
# The reader-aware arm test: a logistic GLMM of a correct call


@dataclass(frozen=True)
class DetectionGLMM:
    """One logistic GLMM of a correct call: `measure` among diseased (sensitivity) or non-diseased
    (specificity) reads, of one finding or pooled over findings (`finding` None, a fixed finding effect)."""

    measure: str
    finding: str | None
    n_reads: int
    result: BinomialGLMMResult | None     # the arm's log odds ratio, treatment vs reference
    reason: str = ""                      # why there is no result

    def to_dict(self, confidence_level: float = 0.95) -> dict:
        return {"measure": self.measure, "finding": self.finding, "n_reads": self.n_reads,
                "status": "ok" if self.result is not None else "not_estimable", "reason": self.reason,
                "result": self.result.to_dict(confidence_level) if self.result is not None else None}


@dataclass(frozen=True)
class DetectionGLMMResult:
    treatment: str
    reference: str
    random: tuple[str, ...]
    pooled: dict[str, DetectionGLMM]               # by measure
    findings: dict[str, dict[str, DetectionGLMM]]  # finding → measure → fit
    confidence_level: float

    def to_dict(self) -> dict:
        level = self.confidence_level
        return {"treatment": self.treatment, "reference": self.reference, "random": list(self.random),
                "pooled": {m: g.to_dict(level) for m, g in self.pooled.items()},
                "findings": {f: {m: g.to_dict(level) for m, g in by.items()} for f, by in self.findings.items()},
                "confidence_level": level}


MEASURES = (("sensitivity", 1), ("specificity", 0))
SEPARATION = 10.0   # |log odds ratio| beyond this (an odds ratio above 22,000) is separation, not an estimate


def _glmm_one(data: dict[str, list], measure: str, finding: str | None, *, treatment: str, reference: str,
              random: tuple[str, ...], covariates: tuple[str, ...]) -> DetectionGLMM:
    n = len(data["correct"])
    if n == 0:
        return DetectionGLMM(measure, finding, 0, None, "no reads")
    if len(set(data["arm"])) < 2:
        return DetectionGLMM(measure, finding, n, None, "reads of one arm only")
    covs = [c for c in covariates if len(set(data[c])) > 1]
    if finding is None and len(set(data["finding"])) > 1:
        covs = ["finding", *covs]
    try:
        res = fit_binomial_glmm(data, outcome="correct", random=list(random), arm="arm", treatment=treatment,
                                reference=reference, covariates=covs)
    except (ValueError, RuntimeError, ArithmeticError, np.linalg.LinAlgError) as exc:
        return DetectionGLMM(measure, finding, n, None, str(exc))
    if not res.converged or abs(res.estimate) > SEPARATION or not np.isfinite(res.standard_error):
        # (quasi-)complete separation: e.g. every read of one arm correct; the log odds ratio runs off to ±∞
        return DetectionGLMM(measure, finding, n, None, "the log odds ratio is not finite (separation: e.g. every "
                             "read of one arm correct) or the fit did not converge")
    return DetectionGLMM(measure, finding, n, res)


def detection_glmm(*, case, arm, reader, finding, truth, call, treatment: str, reference: str,
                   random: tuple[str, ...] = ("case", "reader"), covariates: dict[str, list] | None = None,
                   confidence_level: float = 0.95) -> DetectionGLMMResult:
    """Sensitivity and specificity compared between the arms by logistic GLMMs, per finding and pooled.

    Model (lme4::glmer): correct ~ arm [+ finding] [+ covariates] + (1|case) + (1|reader), among the
    reads of diseased (sensitivity) or non-diseased (specificity) (case, finding)s. `random` may add
    "reader:arm" (crossover); `covariates` maps a name to one value per row (e.g. the site); one
    that takes a single value among a model's reads is left out of it. The arm coefficient is the
    log odds ratio of a correct call, treatment vs reference, for a typical case and reader.
    """
    case, arm, reader, finding = (list(map(str, v)) for v in (case, arm, reader, finding))
    truth, call = _as01(truth, "truth"), _as01(call, "call")
    if not (len(case) == len(arm) == len(reader) == len(finding) == len(truth) == len(call)):
        raise ValueError("case, arm, reader, finding, truth and call must have the same length")
    if set(arm) - {treatment, reference}:
        raise ValueError(f"arm must be {treatment!r} or {reference!r}; found {sorted(set(arm))}")
    extra = {k: list(map(str, v)) for k, v in (covariates or {}).items()}
    for k, v in extra.items():
        if len(v) != len(case):
            raise ValueError(f"covariate {k!r} must have one value per row")
    random = tuple(random)
    columns = {"case": case, "arm": arm, "reader": reader, "finding": finding, **extra}
    correct = [int(k == t) for t, k in zip(truth, call)]

    def subset(keep: list[int]) -> dict[str, list]:
        out = {k: [v[i] for i in keep] for k, v in columns.items()}
        out["correct"] = [correct[i] for i in keep]
        return out

    pooled: dict[str, DetectionGLMM] = {}
    per: dict[str, dict[str, DetectionGLMM]] = defaultdict(dict)
    kw = dict(treatment=treatment, reference=reference, random=random, covariates=tuple(extra))
    for measure, value in MEASURES:
        rows = [i for i, t in enumerate(truth) if t == value]
        pooled[measure] = _glmm_one(subset(rows), measure, None, **kw)
        for f in sorted(set(finding)):
            per[f][measure] = _glmm_one(subset([i for i in rows if finding[i] == f]), measure, f, **kw)
    return DetectionGLMMResult(treatment=treatment, reference=reference, random=random, pooled=pooled,
                               findings=dict(per), confidence_level=confidence_level)


# --------------------------------------------------------------------------------------------
# A score at a threshold (the AI's finding scores)


@dataclass(frozen=True)
class ThresholdAccuracy:
    """Sensitivity and specificity of `score ≥ threshold` against the truth, Wilson intervals."""

    threshold: float
    sensitivity: Proportion
    specificity: Proportion

    def to_dict(self) -> dict:
        return asdict(self)


def threshold_accuracy(truth, score, *, threshold: float, confidence_level: float = 0.95) -> ThresholdAccuracy:
    truth = _as01(truth, "truth")
    score = [float(v) for v in score]
    if len(truth) != len(score):
        raise ValueError("truth and score must have the same length")
    pos = [s >= threshold for t, s in zip(truth, score) if t == 1]
    neg = [s < threshold for t, s in zip(truth, score) if t == 0]
    return ThresholdAccuracy(threshold=float(threshold),
                             sensitivity=proportion(sum(pos), len(pos), confidence_level),
                             specificity=proportion(sum(neg), len(neg), confidence_level))

