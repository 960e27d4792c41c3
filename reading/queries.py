"""The reading steps' hottest statements, written out once (core.db) instead of built by the ORM per request.

A reader's steps (open a case, autosave every few seconds, submit) are on a radiologist's critical path; with the
ORM, its Python was most of each step's CPU (bench/reading.py). Who may see or change what is still decided by
the callers, reading.selectors and reading.services; every statement here that reads a read takes the reader's
user id.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache

from django.db import connection
from django.db.models import Field

from ai.models import AIDraft, DraftStatus, TrialModel
from core import db as sql
from trial.models import Arm, Case, Membership, Role, Trial

from .models import Read, ReadEvent, ReadStatus, ReportDraft

# ------------------------------------------------------------------------------------------------ reads

# What the reading steps use of a read's trial and case (about half their columns: less to send and decode).
_TRIAL = ("id", "code", "title", "status", "design", "findings", "washout_days", "require_signoff")
_CASE = ("id", "trial", "site", "code", "clinical_history", "display_image", "values_image", "display_width",
         "display_height", "display_windows")


def _lock_clause(lock: str | None) -> str:
    if lock is None or not connection.features.has_select_for_update:
        return ""  # SQLite: a write transaction locks the whole database anyway
    kind = "NO KEY UPDATE" if lock == "no_key" and connection.features.has_select_for_no_key_update else "UPDATE"
    of = " OF r" if connection.features.has_select_for_update_of else ""
    return f" FOR {kind}{of}"


@cache
def _own_read_select(case: bool, saved: bool, lock: str | None, vendor: str) -> sql.Select:
    parts = [sql.Part(Read, "r", sql.all_fields(Read)), sql.Part(Trial, "t", _TRIAL)]
    joins = [f"INNER JOIN {sql.table(Membership)} m ON m.{sql.col(Membership, 'id')} = r.{sql.col(Read, 'reader')}",
             f"INNER JOIN {sql.table(Trial)} t ON t.{sql.col(Trial, 'id')} = r.{sql.col(Read, 'trial')}"]
    if case:
        parts.append(sql.Part(Case, "c", _CASE))
        joins.append(f"INNER JOIN {sql.table(Case)} c ON c.{sql.col(Case, 'id')} = r.{sql.col(Read, 'case')}")
    if saved:
        parts.append(sql.Part(ReportDraft, "d", sql.all_fields(ReportDraft)))
        joins.append(f"LEFT OUTER JOIN {sql.table(ReportDraft)} d "
                     f"ON {sql.col(ReportDraft, 'read', 'd')} = {sql.col(Read, 'id', 'r')}")
    where = (f"WHERE r.{sql.col(Read, 'id')} = %s AND m.{sql.col(Membership, 'user')} = %s "
             f"AND m.{sql.col(Membership, 'role')} = %s")
    name = f"reading_own_read_{int(case)}{int(saved)}_{lock or 'none'}"
    return sql.Select(name, parts, f"FROM {sql.table(Read)} r {' '.join(joins)} {where}{_lock_clause(lock)}")


_BIGINT = 2**63  # ids are 64-bit: a larger number in a URL is no read (and must not reach the database as one)


def own_read(*, read_id: int, user_id: int, case: bool = False, saved: bool = False,
             lock: str | None = None) -> Read | None:
    """The read `read_id` if it is on the worklist of the reader `user_id` (else None), with its trial (the
    fields of _TRIAL), its case (of _CASE) and its autosaved text (`read.saved`, or none) as asked; `lock`:
    "update" or "no_key" for a row lock of the read (only), to be taken inside a transaction. Under a lock the
    saved text is read by a second statement, after the lock is granted: PostgreSQL re-reads only the locked row
    of a statement that waited for its lock, so a joined text could be the one from before the wait (and a stale
    tab would then overwrite a newer text)."""
    if not 0 < read_id < _BIGINT:
        return None
    joined = saved and lock is None
    rows = _own_read_select(case, joined, lock, connection.vendor).rows([read_id, user_id, Role.READER.value])
    if not rows:
        return None
    read, trial, *rest = rows[0]
    read.trial = trial
    if case:
        read.case = rest.pop(0)
    if saved:
        text = rest.pop(0) if joined else saved_text(read_id=read.pk)
        Read.saved.related.set_cached_value(read, text)  # None: no text saved yet
    return read


@cache
def _saved_select(vendor: str) -> sql.Select:
    return sql.Select("reading_saved", [sql.Part(ReportDraft, "d", sql.all_fields(ReportDraft))],
                      f"FROM {sql.table(ReportDraft)} d WHERE d.{sql.col(ReportDraft, 'read')} = %s")


def saved_text(*, read_id: int) -> ReportDraft | None:
    """The autosaved text of a read, or None. No permission check: callers decide."""
    rows = _saved_select(connection.vendor).rows([read_id])
    return rows[0][0] if rows else None


@cache
def _reader_select(vendor: str) -> sql.Select:
    parts = [sql.Part(Membership, "m", sql.all_fields(Membership)), sql.Part(Trial, "t", _TRIAL)]
    return sql.Select("reading_reader", parts, (
        f"FROM {sql.table(Membership)} m "
        f"INNER JOIN {sql.table(Trial)} t ON t.{sql.col(Trial, 'id')} = m.{sql.col(Membership, 'trial')} "
        f"WHERE {sql.col(Trial, 'code', 't')} = %s AND {sql.col(Membership, 'user', 'm')} = %s "
        f"AND {sql.col(Membership, 'role', 'm')} = %s"))


def reader_membership(*, code: str, user_id: int) -> Membership | None:
    """The reader membership of `user_id` in the trial `code`, with the trial (the fields of _TRIAL), or None."""
    rows = _reader_select(connection.vendor).rows([code, user_id, Role.READER.value])
    if not rows:
        return None
    membership, trial = rows[0]
    membership.trial = trial
    return membership


# ------------------------------------------------------------------------------------------------ drafts and rows


def _ready_draft_exists(case_column: str, trial_column: str) -> str:
    """SQL: a ready draft of the case by the trial's model exists (the trial's model: ai.TrialModel)."""
    a, tm = "a_", "tm_"
    return (f"EXISTS (SELECT 1 FROM {sql.table(AIDraft)} {a} INNER JOIN {sql.table(TrialModel)} {tm} "
            f"ON {tm}.{sql.col(TrialModel, 'model_version')} = {a}.{sql.col(AIDraft, 'model_version')} "
            f"WHERE {sql.col(AIDraft, 'case', a)} = {case_column} "
            f"AND {sql.col(TrialModel, 'trial', tm)} = {trial_column} "
            f"AND {a}.{sql.col(AIDraft, 'status')} = '{DraftStatus.READY.value}')")


@cache
def _ready_draft_select(vendor: str) -> sql.Select:
    part = sql.Part(AIDraft, "a", ("id", "findings", "impression"))
    return sql.Select("reading_ready_draft", [part], (
        f"FROM {sql.table(AIDraft)} a INNER JOIN {sql.table(TrialModel)} tm "
        f"ON tm.{sql.col(TrialModel, 'model_version')} = a.{sql.col(AIDraft, 'model_version')} "
        f"WHERE a.{sql.col(AIDraft, 'case')} = %s AND tm.{sql.col(TrialModel, 'trial')} = %s "
        f"AND a.{sql.col(AIDraft, 'status')} = %s LIMIT 1"))


def ready_draft(*, case_id: int, trial_id: int) -> AIDraft | None:
    """The ready draft of a case by its trial's model (id, findings and impression only), or None. No
    permission check: reading.selectors decides who gets it."""
    rows = _ready_draft_select(connection.vendor).rows([case_id, trial_id, DraftStatus.READY.value])
    return rows[0][0] if rows else None


@dataclass(frozen=True)
class ReadRow:
    """One read of a reader's worklist, as the worklist and "n of N / next" need it."""
    id: int
    status: str
    arm: str
    available_from: datetime | None
    case_code: str
    draft_ready: bool


@cache
def _rows_sql(vendor: str) -> tuple[str, list[Field], list]:
    arm, status, case, trial = (f"r.{sql.col(Read, name)}" for name in ("arm", "status", "case", "trial"))
    # the draft is looked for only where it decides anything: an assisted read not started yet
    ready = (f"CASE WHEN {arm} = '{Arm.ASSISTED.value}' AND {status} = '{ReadStatus.ASSIGNED.value}' "
             f"THEN {_ready_draft_exists(case, trial)} ELSE FALSE END")
    fields = [Read._meta.get_field(n) for n in ("id", "status", "arm", "available_from")]
    columns = ", ".join(f"r.{sql.qn(f.column)}" for f in fields)
    text = (f"SELECT {columns}, c.{sql.col(Case, 'code')}, {ready} "
            f"FROM {sql.table(Read)} r INNER JOIN {sql.table(Case)} c ON c.{sql.col(Case, 'id')} = {case} "
            f"WHERE r.{sql.col(Read, 'reader')} = %s ORDER BY r.{sql.col(Read, 'order_key')}")
    return text, fields, sql.converters(fields)


def reader_rows(*, reader_id: int) -> list[ReadRow]:
    """The reads of one reader membership in their stored order, each with whether its draft is ready (asked
    only of assisted reads not started yet; False otherwise). One query."""
    text, fields, converters = _rows_sql(connection.vendor)
    with connection.cursor() as cursor:
        sql.execute(cursor, "reading_rows", text, [reader_id])
        fetched = cursor.fetchall()
    return [ReadRow(*sql.decode(converters, row[:4]), row[4], bool(row[5])) for row in fetched]


@cache
def _event_times_sql(vendor: str) -> tuple[str, list[Field], list]:
    fields = [ReadEvent._meta.get_field(n) for n in ("kind", "tab_id", "server_time")]
    order = f"{sql.col(ReadEvent, 'server_time')}, {sql.col(ReadEvent, 'id')}"
    text = (f"SELECT {', '.join(sql.qn(f.column) for f in fields)} FROM {sql.table(ReadEvent)} "
            f"WHERE {sql.col(ReadEvent, 'read')} = %s ORDER BY {order}")
    return text, fields, sql.converters(fields)


def read_event_times(*, read_id: int) -> list[tuple]:
    """(kind, tab, server time) of a read's events, in time order."""
    text, fields, converters = _event_times_sql(connection.vendor)
    with connection.cursor() as cursor:
        sql.execute(cursor, "reading_event_times", text, [read_id])
        return [tuple(sql.decode(converters, row)) for row in cursor.fetchall()]
