"""Who reads a case in one arm: the routing rule of a trial, as data, with no Django.

The rule ("fewest_open"): among the eligible readers of the arm (for a prospective trial: of the case's site, on
duty, not withdrawn), those with the fewest open reads; a tie is broken by the trial's concealed random sequence
(trial.randomization.draw_below, keyed by the secret seed, drawn from the case's arrival index, the arm and how many
times that arm of the case was routed before). So the choice is reproducible from the seed and the arrival order,
and nobody who sees the worklists can steer a case to a reader by timing an arrival.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from trial import randomization

FEWEST_OPEN = "fewest_open"
RULES = (FEWEST_OPEN,)


@dataclass(frozen=True)
class Candidate:
    reader_id: int
    open_reads: int


def tie_label(arm: str, attempt: int) -> str:
    # "/" keeps these streams apart from every allocation stratum (site codes are slugs).
    return f"routing/{arm}/{attempt}"


def choose(candidates: Sequence[Candidate], *, rule: str, seed: bytes, arrival_index: int, arm: str,
           attempt: int = 0) -> int | None:
    """The reader id the case goes to in `arm`, or None when nobody is eligible (the case waits)."""
    if rule not in RULES:
        raise ValueError(f"Unknown routing rule {rule!r}; known: {', '.join(RULES)}.")
    if not candidates:
        return None
    fewest = min(c.open_reads for c in candidates)
    tied = sorted(c.reader_id for c in candidates if c.open_reads == fewest)
    if len(tied) == 1:
        return tied[0]
    return tied[randomization.draw_below(seed=seed, label=tie_label(arm, attempt), index=arrival_index, n=len(tied))]
