"""Side-by-side preference of blinded experts between the treatment-arm and the reference-arm report of a case.

Each expert sees the two reports of a case side by side (sides randomized and logged) and chooses the
treatment report, the reference report or `none` (the arms' labels are the caller's: "X"/"Y" while masked).
The case-level outcome is the strict majority of its experts' votes (N odd, 5 in the paper); a case without
a strict majority for one of the arms is a tie. Missing experts: a case needs at least `min_votes` votes
(3 by the analysis plan's default) for a majority; with fewer it is a tie ("no majority"), counted apart in
`too_few_votes`, and the majority is taken among the votes cast (3 of 4 is a majority, 2 of 4 is not).
The case-level analyses below treat the readers as fixed: they are sensitivities, not tests of the arm
effect, when readers are randomized (stats.methods.glmm.fit_preference_glmm is). Reported:

- share of all cases where the treatment report is preferred (denominator: every case, ties included), Wilson
  score interval (Wilson 1927; Newcombe 1998, method 3; R `prop.test(correct = FALSE)`);
- exact two-sided binomial test of wins against losses, ties excluded and always reported
  (R `binom.test`), with the Clopper–Pearson interval of wins / (wins + losses);
- ties split half–half as a sensitivity analysis;
- the vote-level rate with a case-clustered interval: the ratio estimator Σaᵢ / Σmᵢ over cases with
  its linearisation (cluster-robust) variance n/(n−1) Σ(aᵢ − p̂ mᵢ)² / (Σmᵢ)² (Cochran 1977,
  *Sampling Techniques*, §6.4; Rao & Scott 1992), so that the experts of one case are not counted
  as independent evidence;
- position bias: among votes with a preference, is the report on the left chosen more than half
  the time (exact binomial). `side` is where the treatment report was shown.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

__all__ = [
    "NONE",
    "SIDES",
    "VoteShare",
    "PositionBias",
    "PreferenceResult",
    "case_majority",
    "wilson_interval",
    "analyse_preference",
]

NONE = "none"  # a vote for neither report
SIDES = ("left", "right")


@dataclass(frozen=True)
class VoteShare:
    """Share of votes for the treatment report with a case-clustered (ratio-estimator) normal interval."""

    share: float
    votes_treatment: int
    votes: int
    se: float
    low: float
    high: float

    def confidence_interval(self) -> tuple[float, float]:
        return self.low, self.high


@dataclass(frozen=True)
class PositionBias:
    """Among votes with a preference, how often the left report was chosen; exact binomial against ½."""

    left_chosen: int
    votes: int
    share_left: float
    pvalue: float


@dataclass(frozen=True)
class PreferenceResult:
    n_cases: int
    wins: int                    # cases whose experts' majority preferred the treatment report
    losses: int                  # ... preferred the reference report
    ties: int                    # no strict majority, a majority for "none", or fewer than min_votes votes
    share: float                 # wins / n_cases: a share of ALL cases, ties included
    low: float                   # Wilson interval of `share`
    high: float
    statistic: int               # wins (binomial test statistic)
    pvalue: float                # exact two-sided binomial, wins vs losses, ties excluded
    share_decisive: float        # wins / (wins + losses)
    decisive_low: float          # Clopper–Pearson interval of `share_decisive` (R binom.test)
    decisive_high: float
    share_ties_split: float      # (wins + ties/2) / n_cases, sensitivity analysis
    ties_split_low: float        # Wilson interval of the split share
    ties_split_high: float
    ties_split_pvalue: float     # score test of the split share against ½ (conservative: splitting shrinks variance)
    votes_all: VoteShare         # treatment votes / all votes, "none" included
    votes_decisive: VoteShare    # treatment votes / votes with a preference
    position: PositionBias | None
    experts_per_case_min: int
    experts_per_case_max: int
    confidence_level: float
    min_votes: int = 1           # a case with fewer votes has no majority (counted as a tie)
    too_few_votes: int = 0       # cases with fewer than min_votes votes (among the ties)

    def confidence_interval(self) -> tuple[float, float]:
        return self.low, self.high

    def to_dict(self) -> dict:
        return asdict(self)


def wilson_interval(count: float, n: int, confidence_level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (no continuity correction), equal to R `prop.test(x, n, correct = FALSE)$conf.int`."""
    if n <= 0:
        return math.nan, math.nan
    low, high = proportion_confint(count, n, alpha=1 - confidence_level, method="wilson")
    return float(low), float(high)


def case_majority(choices: list[str], min_votes: int = 1) -> str:
    """The strict majority of one case's votes, or "none" when no choice has more than half of them
    or the case has fewer than `min_votes` votes."""
    if not choices:
        raise ValueError("a case needs at least one vote")
    if len(choices) < min_votes:
        return NONE
    choice, count = Counter(choices).most_common(1)[0]
    return choice if count * 2 > len(choices) else NONE


def _vote_share(treatment: np.ndarray, totals: np.ndarray, confidence_level: float) -> VoteShare:
    keep = totals > 0
    a, m = treatment[keep], totals[keep]
    n = a.size
    total = float(m.sum())
    if n == 0 or total == 0:
        return VoteShare(share=math.nan, votes_treatment=0, votes=0, se=math.nan, low=math.nan, high=math.nan)
    p = float(a.sum()) / total
    if n > 1:
        se = math.sqrt(n / (n - 1) * float(np.sum((a - p * m) ** 2))) / total
    else:
        se = math.nan
    z = float(stats.norm.ppf(0.5 + confidence_level / 2))
    return VoteShare(share=p, votes_treatment=int(a.sum()), votes=int(total), se=se,
                     low=max(0.0, p - z * se), high=min(1.0, p + z * se))


def analyse_preference(*, case, expert, choice, treatment: str, reference: str, side=None,
                       confidence_level: float = 0.95, min_votes: int = 1) -> PreferenceResult:
    """Analyse one vote per row: parallel sequences of case, expert, choice and (optionally) side.

    `choice` is `treatment`, `reference` or "none" (the arms' labels); `side` ("left"/"right") is where the
    treatment report was displayed to that expert, needed for the position-bias test. A case with fewer
    than `min_votes` votes has no majority (a tie, counted in `too_few_votes`).
    """
    if isinstance(min_votes, bool) or int(min_votes) != min_votes or min_votes < 1:
        raise ValueError(f"min_votes must be a whole number ≥ 1, got {min_votes!r}")
    min_votes = int(min_votes)
    choices = (treatment, reference, NONE)
    if len(set(choices)) != 3:
        raise ValueError(f"the two arms and {NONE!r} must be three different labels; got {choices}")
    case, expert, choice = list(case), list(expert), list(choice)
    side = list(side) if side is not None else None
    if not (len(case) == len(expert) == len(choice)) or (side is not None and len(side) != len(case)):
        raise ValueError("case, expert, choice and side must have the same length")
    if not case:
        raise ValueError("no votes")
    bad = sorted({str(c) for c in choice if c not in choices})
    if bad:
        raise ValueError(f"choice must be one of {', '.join(choices)}; got {', '.join(bad)}")
    if side is not None:
        bad = sorted({s for s in side if s not in SIDES})
        if bad:
            raise ValueError(f"side must be one of {', '.join(SIDES)}; got {', '.join(map(str, bad))}")

    votes: dict[object, list[str]] = defaultdict(list)
    seen = set()
    for c, e, ch in zip(case, expert, choice):
        if (c, e) in seen:
            raise ValueError(f"expert {e!r} voted twice on case {c!r}")
        seen.add((c, e))
        votes[c].append(ch)

    outcomes = [case_majority(v, min_votes) for v in votes.values()]
    too_few = sum(len(v) < min_votes for v in votes.values())
    n_cases = len(outcomes)
    wins, losses = outcomes.count(treatment), outcomes.count(reference)
    ties = n_cases - wins - losses

    low, high = wilson_interval(wins, n_cases, confidence_level)
    decisive = wins + losses
    if decisive:
        test = stats.binomtest(wins, decisive, 0.5)
        pvalue = float(test.pvalue)
        ci = test.proportion_ci(confidence_level=confidence_level, method="exact")
        share_decisive, d_low, d_high = wins / decisive, float(ci.low), float(ci.high)
    else:
        pvalue, share_decisive, d_low, d_high = math.nan, math.nan, math.nan, math.nan

    split = wins + ties / 2
    s_low, s_high = wilson_interval(split, n_cases, confidence_level)
    z = (split / n_cases - 0.5) / math.sqrt(0.25 / n_cases)
    split_p = float(2 * stats.norm.sf(abs(z)))

    a_all = np.array([v.count(treatment) for v in votes.values()], dtype=float)
    m_all = np.array([len(v) for v in votes.values()], dtype=float)
    m_dec = np.array([len(v) - v.count(NONE) for v in votes.values()], dtype=float)

    position = None
    if side is not None:
        # the left report was chosen when the treatment one was on the left and chosen, or on the right and not
        chosen_left = [(ch == treatment) == (s == "left") for ch, s in zip(choice, side) if ch != NONE]
        n_pref = len(chosen_left)
        left = int(sum(chosen_left))
        p_left = float(stats.binomtest(left, n_pref, 0.5).pvalue) if n_pref else math.nan
        position = PositionBias(left_chosen=left, votes=n_pref, share_left=left / n_pref if n_pref else math.nan,
                                pvalue=p_left)

    return PreferenceResult(
        n_cases=n_cases, wins=wins, losses=losses, ties=ties,
        share=wins / n_cases, low=low, high=high,
        statistic=wins, pvalue=pvalue,
        share_decisive=share_decisive, decisive_low=d_low, decisive_high=d_high,
        share_ties_split=split / n_cases, ties_split_low=s_low, ties_split_high=s_high, ties_split_pvalue=split_p,
        votes_all=_vote_share(a_all, m_all, confidence_level),
        votes_decisive=_vote_share(a_all, m_dec, confidence_level),
        position=position,
        experts_per_case_min=int(m_all.min()), experts_per_case_max=int(m_all.max()),
        confidence_level=confidence_level, min_votes=min_votes, too_few_votes=too_few,
    )
