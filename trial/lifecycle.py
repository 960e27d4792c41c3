"""The life cycle of a trial, in one table: which status may follow which, in each mode, and what work each status
allows. No Django: the services, selectors and pages ask `allows(status, work)` instead of naming statuses.

Two modes of one life cycle, not two code paths:

- prospective (a trial in clinical practice): setup → open ⇄ paused → closed → locked → unblinded. While open,
  images arrive and are enrolled, routed, drafted, read, signed and scored as they come; paused (with a reason)
  enrols nothing new while the work already routed goes on; closed enrols nothing more and lets what is open
  finish.
- reader study (a retrospective set): setup → enrolling → reading → scoring → locked → unblinded, today's order
  (enrol a set, then read it, then score it).

Every service that enrols, routes, reads or scores asks this table, so the same code runs in both modes; only the
order in which the work is allowed differs.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, timedelta
from types import MappingProxyType
from typing import Final

PROSPECTIVE: Final = "prospective"
READER_STUDY: Final = "reader_study"

SETUP, ENROLLING, READING, SCORING = "setup", "enrolling", "reading", "scoring"
OPEN, PAUSED, CLOSED = "open", "paused", "closed"
LOCKED, UNBLINDED = "locked", "unblinded"

# The kinds of work a status allows.
ENROL: Final = "enrol"              # new cases (uploads, arrivals from the PACS)
RANDOMIZE: Final = "randomize"      # readers join and are randomized at once (before: at the first enrolling step)
READ: Final = "read"                # routing, reading, sign-off
SCORE: Final = "score"              # expert items built and answered
CHANGE_FINDINGS: Final = "change_findings"
INTERIM: Final = "interim"          # an interim look by the data-monitoring committee
CONCEAL_ALLOCATIONS: Final = "conceal_allocations"  # allocations can still be made: the list and the balance hidden

TRANSITIONS: Final[Mapping[str, Mapping[str, tuple[str, ...]]]] = MappingProxyType({
    READER_STUDY: MappingProxyType({
        SETUP: (ENROLLING,), ENROLLING: (READING,), READING: (SCORING,), SCORING: (LOCKED,), LOCKED: (UNBLINDED,),
        UNBLINDED: (),
    }),
    PROSPECTIVE: MappingProxyType({
        SETUP: (OPEN,), OPEN: (PAUSED, CLOSED), PAUSED: (OPEN, CLOSED), CLOSED: (LOCKED,), LOCKED: (UNBLINDED,),
        UNBLINDED: (),
    }),
})

WORK: Final[Mapping[str, frozenset[str]]] = MappingProxyType({
    SETUP: frozenset({CHANGE_FINDINGS, CONCEAL_ALLOCATIONS}),
    ENROLLING: frozenset({ENROL, RANDOMIZE, CHANGE_FINDINGS, INTERIM, CONCEAL_ALLOCATIONS}),
    # Experts may answer while reading goes on, once an investigator has started building items.
    READING: frozenset({READ, SCORE, INTERIM}),
    SCORING: frozenset({SCORE, INTERIM}),
    OPEN: frozenset({ENROL, RANDOMIZE, READ, SCORE, INTERIM, CONCEAL_ALLOCATIONS}),
    PAUSED: frozenset({RANDOMIZE, READ, SCORE, INTERIM, CONCEAL_ALLOCATIONS}),
    CLOSED: frozenset({RANDOMIZE, READ, SCORE, INTERIM, CONCEAL_ALLOCATIONS}),
    LOCKED: frozenset(),
    UNBLINDED: frozenset(),
})

# Statuses in which reading has begun (worklists shown, findings fixed): every status after the enrolment of a
# reader study, and every status after setup of a prospective trial.
STARTED: Final = frozenset({READING, SCORING, OPEN, PAUSED, CLOSED, LOCKED, UNBLINDED})

# Designs a prospective trial can run: a crossover reads every case twice per reader after a washout, a batch design.
PROSPECTIVE_DESIGNS: Final = frozenset({"paired_parallel", "case_randomized"})


def allows(status: str, work: str) -> bool:
    return work in WORK.get(status, frozenset())


def next_statuses(mode: str, status: str) -> tuple[str, ...]:
    return TRANSITIONS.get(mode, {}).get(status, ())


def can_move(mode: str, status: str, to: str) -> bool:
    return to in next_statuses(mode, status)


def statuses_allowing(work: str) -> tuple[str, ...]:
    """For queries: every status whose work includes `work`."""
    return tuple(status for status, allowed in WORK.items() if work in allowed)


def projected_date(daily_enrolled: list[int], *, remaining: int, today: date) -> date | None:
    """When the target will be reached at the recent pace: `daily_enrolled` holds the cases enrolled on each of the
    last days (oldest first, today last); None without a pace (nothing enrolled lately) or without a remainder. A
    plain projection at the mean daily rate, shown as an estimate, not a promise."""
    if remaining <= 0:
        return today
    rate = sum(daily_enrolled) / len(daily_enrolled) if daily_enrolled else 0.0
    if rate <= 0:
        return None
    return today + timedelta(days=math.ceil(remaining / rate))
