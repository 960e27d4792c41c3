"""Reading time from the server-stamped event log (no Django): wall seconds and active seconds.

Why computed here and not by the client: client clocks drift and a browser can be closed at any
moment; the server's stamps are the only ones a statistician can defend (compare Grand Challenge's
client-reported durations). Each tab keeps its own state; the active time of a read is the union of
the tabs' active intervals, so a second tab can never double-count.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

# The server's own stamp of when it first sent the case (a tab of its own): the clock starts there at the latest,
# so a client that reports "opened" late (or never) cannot shorten its reading time.
DELIVERED = "delivered"
SERVER_TAB = "server"
# After these events the tab is active (the reader is looking, or just showed a sign of life) ...
ACTIVE_AFTER = {DELIVERED, "opened", "image_shown", "first_edit", "visible", "resumed", "heartbeat"}
# ... after these it is not ...
INACTIVE_AFTER = {"hidden", "idle", "submitted"}
# ... and these change nothing: a save is a sign of life only for a tab already active, because the
# last-chance save sent while a page closes may reach the server after its "hidden".
NEUTRAL = {"autosaved"}


@dataclass(frozen=True)
class Event:
    kind: str
    tab_id: str
    time: datetime


@dataclass(frozen=True)
class ReadingTime:
    wall_seconds: float      # first delivery (or "opened") to "submitted" (or to the last event)
    active_seconds: float    # visible and not idle, any tab, counted once


def _tab_intervals(events: list[Event], *, gap_cap: timedelta, end: datetime | None) -> list[tuple[datetime, datetime]]:
    """Active intervals of one tab. A silence longer than the cap means the tab died (closed, crashed,
    machine asleep): it counts up to the cap after the last sign of life, never the whole gap."""
    intervals = []
    active_since: datetime | None = None
    for previous, event in zip([None, *events[:-1]], events):
        was_active = active_since is not None
        if was_active:
            intervals.append((active_since, min(event.time, previous.time + gap_cap)))
            active_since = None
        if event.kind in ACTIVE_AFTER or (event.kind in NEUTRAL and was_active):
            active_since = event.time
    if active_since is not None:  # still active after its last event
        stop = events[-1].time + gap_cap
        intervals.append((active_since, min(stop, end) if end is not None else stop))
    return [(a, b) for a, b in intervals if b > a]


def _union_seconds(intervals: list[tuple[datetime, datetime]]) -> float:
    total, current_start, current_end = 0.0, None, None
    for start, stop in sorted(intervals):
        if current_end is None or start > current_end:
            if current_end is not None:
                total += (current_end - current_start).total_seconds()
            current_start, current_end = start, stop
        else:
            current_end = max(current_end, stop)
    if current_end is not None:
        total += (current_end - current_start).total_seconds()
    return total


def reading_time(events: Iterable[Event], *, gap_cap_seconds: float, until: datetime | None = None) -> ReadingTime:
    """`gap_cap_seconds` should be the client's heartbeat interval plus a margin (or the idle threshold)."""
    ordered = sorted(events, key=lambda e: e.time)
    if not ordered:
        return ReadingTime(0.0, 0.0)
    submitted = next((e.time for e in ordered if e.kind == "submitted"), None)
    end = submitted or until
    if end is not None:
        ordered = [e for e in ordered if e.time <= end]
    by_tab: dict[str, list[Event]] = {}
    for event in ordered:
        by_tab.setdefault(event.tab_id, []).append(event)
    if submitted is not None:
        # Submission ends every tab's activity.
        for tab_events in by_tab.values():
            if tab_events[-1].kind != "submitted":
                tab_events.append(Event("submitted", tab_events[-1].tab_id, submitted))
    cap = timedelta(seconds=gap_cap_seconds)
    intervals = [iv for tab_events in by_tab.values() for iv in _tab_intervals(tab_events, gap_cap=cap, end=end)]
    opened = next((e.time for e in ordered if e.kind in (DELIVERED, "opened")), ordered[0].time)
    wall_end = end or ordered[-1].time
    return ReadingTime(max(0.0, (wall_end - opened).total_seconds()), _union_seconds(intervals))
