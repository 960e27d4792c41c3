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

# The reading screen's rhythm (sent to the client with each read) and what the server makes of a silence.
IDLE_AFTER_SECONDS = 60
HEARTBEAT_SECONDS = 15
AUTOSAVE_EVERY_SECONDS = 5
# A tab silent for longer than this is gone (closed, crashed); its time stops at the last sign of life.
GAP_CAP_SECONDS = HEARTBEAT_SECONDS * 2

# After these events the tab is active (the reader is looking, or just showed a sign of life) ...
ACTIVE_AFTER = {"opened", "image_shown", "first_edit", "visible", "resumed", "heartbeat"}
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
    wall_seconds: float      # the server's first delivery (or the first "opened") to "submitted" (or the last event)
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


def reading_time(events: Iterable[Event], *, gap_cap_seconds: float, until: datetime | None = None,
                 delivered: datetime | None = None) -> ReadingTime:
    """`gap_cap_seconds` should be the client's heartbeat interval plus a margin (or the idle threshold).
    `delivered`: when the server first sent the case. The wall clock starts there; and the first active interval
    of the reading starts there too if the reader's tab reported itself within `gap_cap_seconds` of it (a client
    that says "opened" late loses none of its time; one that never reports gets none: no activity is invented)."""
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
    if delivered is not None and intervals:
        first = min(intervals)
        if delivered < first[0] <= delivered + cap:
            intervals.append((delivered, first[0]))  # from the delivery to the tab's first sign of life
    opened = next((e.time for e in ordered if e.kind == "opened"), ordered[0].time)
    if delivered is not None:
        opened = min(opened, delivered)
    wall_end = end or ordered[-1].time
    return ReadingTime(max(0.0, (wall_end - opened).total_seconds()), _union_seconds(intervals))
