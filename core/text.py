"""Cleaning of free text typed by a person (reports, comments): a stated limit, one newline convention."""
from __future__ import annotations

from .errors import ServiceError


def clean_text(value: str | None, *, field: str, limit: int, strip: bool = False) -> str:
    """`value` with Windows newlines made plain (and stripped, if asked); refused, nothing written, when it is
    longer than `limit` characters."""
    value = (value or "").replace("\r\n", "\n")
    if strip:
        value = value.strip()
    if len(value) > limit:
        raise ServiceError(f"The {field} may have at most {limit:,} characters.", field=field)
    return value


# A spreadsheet runs a cell that begins with one of these as a formula (OWASP, "CSV injection"): = + - @, and tab
# and carriage return, which some spreadsheets skip before looking at the next character.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(value):
    """A text cell made safe for a spreadsheet: one single quote put in front when, after any single quotes it
    already begins with, it begins with a formula character; anything else (numbers, None, other text) unchanged.
    The quotes already there count, so that `unescape_formula` gives back exactly the value written."""
    if isinstance(value, str) and value.lstrip("'").startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def unescape_formula(value):
    """The inverse of `escape_formula`: the one quote it put in front taken off again."""
    if isinstance(value, str) and value.startswith("'") and value.lstrip("'").startswith(FORMULA_TRIGGERS):
        return value[1:]
    return value
