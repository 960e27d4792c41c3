"""A reader's weekly roster, as data; no Django. The platform puts a reader with a roster on and off duty by it
(trial.services.apply_rosters, every minute); a reader without one goes on and off duty by hand.

Written as a site's rota reads: `mon-fri 08:00-16:00; sat 08:00-12:00; sun 22:00-06:00` — days (one, a range, or a
comma list) and a shift; a shift that ends at or before it starts runs past midnight into the next day. Stored as
{"mon": [["08:00", "16:00"]], …} (`parse` ↔ `text`), read in the site's time zone.
"""
from __future__ import annotations

import re
from datetime import datetime, time, timedelta

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SHIFT = re.compile(r"^([0-2]\d):([0-5]\d)-([0-2]\d):([0-5]\d)$")


class RosterError(ValueError):
    pass


def _days(spec: str) -> list[str]:
    out: list[str] = []
    for part in spec.split(","):
        part = part.strip().lower()
        if "-" in part:
            first, last = (p.strip()[:3] for p in part.split("-", 1))
            if first not in DAYS or last not in DAYS:
                raise RosterError(f"“{part}” is not a range of days (mon … sun).")
            i, j = DAYS.index(first), DAYS.index(last)
            out += [DAYS[k % 7] for k in range(i, i + (j - i) % 7 + 1)]
        elif part[:3] in DAYS:
            out.append(part[:3])
        else:
            raise RosterError(f"“{part}” is not a day (mon … sun).")
    return out


def _time(hours: str, minutes: str) -> str:
    if int(hours) > 23:
        raise RosterError(f"{hours}:{minutes} is not a time of day.")
    return f"{hours}:{minutes}"


def parse(text: str) -> dict[str, list[list[str]]]:
    """The roster of a text like `mon-fri 08:00-16:00; sat 08:00-12:00`; RosterError says what is wrong."""
    roster: dict[str, list[list[str]]] = {}
    for entry in (e.strip() for e in text.replace("\n", ";").split(";")):
        if not entry:
            continue
        days, _, shift = entry.rpartition(" ")
        match = _SHIFT.match(shift.strip())
        if not days.strip() or not match:
            raise RosterError(f"“{entry}”: write days and a shift, e.g. “mon-fri 08:00-16:00”.")
        start, end = _time(*match.group(1, 2)), _time(*match.group(3, 4))
        for day in _days(days):
            roster.setdefault(day, []).append([start, end])
    return {day: sorted(roster[day]) for day in DAYS if day in roster}


def text(roster: dict[str, list[list[str]]] | None) -> str:
    return "; ".join(f"{day} {start}-{end}" for day in DAYS for start, end in (roster or {}).get(day, []))


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def on_duty_at(roster: dict[str, list[list[str]]], moment: datetime) -> bool:
    """Whether `moment` (in the site's time zone) falls in a shift of the roster, overnight shifts included."""
    today, yesterday = DAYS[moment.weekday()], DAYS[(moment - timedelta(days=1)).weekday()]
    now = moment.time()
    for start, end in roster.get(today, []):
        s, e = _clock(start), _clock(end)
        if (s < e and s <= now < e) or (e <= s <= now):
            return True
    return any(_clock(end) <= _clock(start) and now < _clock(end) for start, end in roster.get(yesterday, []))
