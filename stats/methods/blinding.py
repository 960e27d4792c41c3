"""Bang's blinding index: how far the guesses of blinded people about the arm beat chance.

Bang H, Ni L, Davis CE. Assessment of blinding in clinical trials. Control Clin Trials 2004;25:143–156.

Everyone asked "which arm?" answers the true arm (correct), the other arm (incorrect) or "don't know". Bang's
index is defined per arm, on the people of one true arm: with n of them, c correct, w incorrect and d
"don't know" (n = c + w + d),

    BI = (2·c/(c + w) − 1) · (c + w)/n  =  (c − w)/n,

the share of correct guesses among those who guessed, rescaled to −1…1 and weighted by the share who
guessed. 1: every one guessed right (no blinding); 0: as many right as wrong (random guessing, consistent
with blinding), also when nobody guessed (Bang's product is 0 × undefined there; its limit, and the
simplified form, give 0; the R package BI returns NaN); −1: every one guessed wrong (opposite guessing,
which is unblinding too). The arms are kept apart because a tendency to name one arm (say, to think every
patient is on the active drug) raises one arm's index and lowers the other's.

Its variance, from the multinomial distribution of (c, w, d), with p_c = c/n and p_w = w/n, is

    Var(BI) = [p_c(1 − p_c) + p_w(1 − p_w) + 2·p_c·p_w] / n  =  [p_c + p_w − (p_c − p_w)²] / n,

and the interval is Wald's, BI ± z·SE. Bang et al. prefer a one-sided interval, in the direction of the
question (unblinding: is the lower limit above 0?); `alternative="greater"` gives it, with the upper limit
fixed at 1 ("less": the lower limit fixed at −1), as the R package BI (Schwartz & Mercaldo) reports it.

`bang_index(correct, incorrect, dont_know)` is the index of one group; `bang_index_by_arm(table)` takes
Bang's 3 × 2 table (rows: guessed treatment, guessed reference, don't know; columns: true arm) and gives one
index per arm, each arm's correct guess being its own arm. Arms are "treatment" and "reference" here, as
everywhere in stats.methods: masking renames nothing.

For the experts' question on a pair item ("which report was written with AI assistance?", scoring's
`ai_guess`: A, B or can't tell), each answer is one guess about a pair: correct if it names the assisted
report. Pooled over pairs it is `bang_index(correct, incorrect, cant_tell)`. Bang's per-arm form applies to
the report on the left (its arm is randomized 1:1 per expert): a guess of "A" says "the left report is
assisted", so the 3 × 2 table has columns = the arm of the left report and rows = the arm the guess gives the
left report; the two indices differ when experts tend to name one side.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

__all__ = ["BangIndex", "BangIndexByArm", "bang_index", "bang_index_by_arm"]

ALTERNATIVES = ("two-sided", "greater", "less")


@dataclass(frozen=True)
class BangIndex:
    """Bang's index of one group (one true arm), with its standard error (Bang 2004)."""

    correct: int
    incorrect: int
    dont_know: int

    @property
    def n(self) -> int:
        return self.correct + self.incorrect + self.dont_know

    @property
    def estimate(self) -> float:
        return (self.correct - self.incorrect) / self.n

    @property
    def standard_error(self) -> float:
        p_c, p_w = self.correct / self.n, self.incorrect / self.n
        variance = (p_c * (1 - p_c) + p_w * (1 - p_w) + 2 * p_c * p_w) / self.n
        return math.sqrt(max(variance, 0.0))

    def confidence_interval(self, confidence_level: float = 0.95,
                            alternative: str = "two-sided") -> tuple[float, float]:
        """Wald interval BI ± z·SE; one-sided ("greater": [lower, 1]; "less": [−1, upper]) as Bang prefers."""
        if not 0 < confidence_level < 1:
            raise ValueError("confidence_level must be between 0 and 1.")
        if alternative not in ALTERNATIVES:
            raise ValueError(f"alternative must be one of {', '.join(ALTERNATIVES)}.")
        tail = (1 - confidence_level) / (2 if alternative == "two-sided" else 1)
        half = NormalDist().inv_cdf(1 - tail) * self.standard_error
        low, high = self.estimate - half, self.estimate + half
        if alternative == "greater":
            return (low, 1.0)
        if alternative == "less":
            return (-1.0, high)
        return (low, high)


@dataclass(frozen=True)
class BangIndexByArm:
    treatment: BangIndex
    reference: BangIndex


def _count(value, name: str) -> int:
    if isinstance(value, bool) or not float(value).is_integer() or value < 0:
        raise ValueError(f"{name} must be a count (a whole number, 0 or more), not {value!r}.")
    return int(value)


def bang_index(correct: int, incorrect: int, dont_know: int = 0) -> BangIndex:
    """Bang's index of one group from its counts of correct, incorrect and "don't know" answers."""
    result = BangIndex(_count(correct, "correct"), _count(incorrect, "incorrect"), _count(dont_know, "dont_know"))
    if result.n == 0:
        raise ValueError("Bang's index needs at least one answer.")
    return result


def bang_index_by_arm(table: Mapping[str, Sequence[int]] | Sequence[Sequence[int]]) -> BangIndexByArm:
    """Bang's per-arm indices from his 3 × 2 table.

    `table`: either {"treatment": (guessed treatment, guessed reference, don't know), "reference": (same)} —
    the counts of the people truly in each arm — or the table as Bang prints it, three rows (guessed
    treatment, guessed reference, don't know) of two columns (truly treatment, truly reference).
    """
    if isinstance(table, Mapping):
        if set(table) != {"treatment", "reference"}:
            raise ValueError("The table has a 'treatment' and a 'reference' arm, and nothing else.")
        columns = {arm: tuple(counts) for arm, counts in table.items()}
    else:
        rows = [tuple(row) for row in table]
        if len(rows) != 3 or any(len(row) != 2 for row in rows):
            raise ValueError("Bang's table has three rows (guessed treatment, guessed reference, don't know) "
                             "and two columns (truly treatment, truly reference).")
        columns = {"treatment": tuple(row[0] for row in rows), "reference": tuple(row[1] for row in rows)}
    if any(len(counts) != 3 for counts in columns.values()):
        raise ValueError("Each arm has three counts: guessed treatment, guessed reference, don't know.")
    t_treat, t_ref, t_dk = columns["treatment"]
    r_treat, r_ref, r_dk = columns["reference"]
    return BangIndexByArm(treatment=bang_index(t_treat, t_ref, t_dk), reference=bang_index(r_ref, r_treat, r_dk))
