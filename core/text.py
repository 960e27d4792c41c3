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
