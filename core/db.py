"""The database module: the one place that talks to Django's connection object (ruff bans it elsewhere), and the
hand-written SELECTs for the few reads where the ORM's own Python costs more than the database.

Why hand-written, and only there: bench/reading_selects.py times the reading steps' two hot reads, a reader's own
read with its trial and case and the reader's worklist rows, at ~1.8 and ~2.4 ms of Python through the ORM
(select_related, compiling, three model instances of 60 columns) against ~0.1–0.3 ms here, on every autosave,
event and page of a reader; bench/reading.py measures what that is worth in readers served. Everything else, and
every write, goes through the ORM (where the models' invariants live). No table or column name is typed by hand;
parameters are bound by the driver; rows come back as ordinary model instances (Model.from_db), decoded by the
fields as the ORM would, so SQLite and PostgreSQL both work. Permission checks stay with the callers.

On PostgreSQL, psycopg 3 binds on the server and prepares a statement it has run a few times on a connection
(settings.DATABASES OPTIONS: server_side_binding, prepare_threshold), ORM statements and these alike.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import connection, connections, transaction
from django.db.models import Field, Model


def qn(name: str) -> str:
    return connection.ops.quote_name(name)


def table(model: type[Model]) -> str:
    return qn(model._meta.db_table)


def col(model: type[Model], name: str, alias: str | None = None) -> str:
    column = qn(model._meta.get_field(name).column)
    return f"{alias}.{column}" if alias else column


def all_fields(model: type[Model]) -> tuple[str, ...]:
    return tuple(f.name for f in model._meta.concrete_fields)


@dataclass(frozen=True)
class Part:
    """One model's share of a SELECT: its fields, read under `alias`, in the model's field order (the order
    Model.from_db expects when some fields are left out), the primary key first."""
    model: type[Model]
    alias: str
    names: tuple[str, ...]
    fields: tuple[Field, ...] = field(init=False, repr=False)

    def __post_init__(self):
        wanted = set(self.names)
        ordered = tuple(f.name for f in self.model._meta.concrete_fields if f.name in wanted)
        if len(ordered) != len(wanted) or ordered[0] != self.model._meta.pk.name:
            raise ValueError(f"{self.model.__name__}: concrete fields, the primary key first: {self.names}")
        object.__setattr__(self, "names", ordered)
        object.__setattr__(self, "fields", tuple(self.model._meta.get_field(name) for name in ordered))

    def columns(self) -> list[str]:
        return [f"{self.alias}.{qn(f.column)}" for f in self.fields]


def converters(fields: Sequence[Field]) -> list[tuple]:
    """Per field, the converters the ORM's compiler would apply (the backend's, then the field's own, e.g. JSON
    decoding) with the column expression they are given; an empty tuple where there are none (most columns)."""
    out = []
    for f in fields:
        expression = f.get_col(f.model._meta.db_table)
        found = connection.ops.get_db_converters(expression) + f.get_db_converters(connection)
        out.append(tuple((converter, expression) for converter in found))
    return out


def decode(convert: list[tuple], values: Sequence) -> list:
    out = list(values)
    for i, functions in enumerate(convert):
        for converter, expression in functions:
            out[i] = converter(out[i], expression, connection)
    return out


class Select:
    """A SELECT of some parts, run with parameters; each row comes back as one instance per part (None for a part
    that a LEFT JOIN found nothing for). The text is built once, the converters on first use."""

    def __init__(self, parts: Sequence[Part], sql_after_columns: str):
        self.parts = list(parts)
        self.sql = f"SELECT {', '.join(c for part in self.parts for c in part.columns())} {sql_after_columns}"
        self._converters: list[list[tuple]] | None = None

    def rows(self, params: Sequence) -> list[list[Model | None]]:
        if self._converters is None:
            self._converters = [converters(part.fields) for part in self.parts]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, list(params))
            fetched = cursor.fetchall()
        out = []
        for row in fetched:
            objects, i = [], 0
            for part, convert in zip(self.parts, self._converters, strict=True):
                values = row[i:i + len(part.names)]
                i += len(part.names)
                if values[0] is None:  # the part's primary key: nothing joined (LEFT JOIN)
                    objects.append(None)
                    continue
                attnames = [f.attname for f in part.fields]
                objects.append(part.model.from_db(connection.alias, attnames, decode(convert, values)))
            out.append(objects)
        return out


class Values:
    """A SELECT of plain values, each column decoded by its field (None: as the driver gives it); the text is the
    caller's (built once), the converters are found on first use."""

    def __init__(self, sql: str, fields: Sequence[Field | None]):
        self.sql = sql
        self.fields = list(fields)
        self._positions = [i for i, f in enumerate(self.fields) if f is not None]
        self._converters: list[tuple] | None = None

    def rows(self, params: Sequence) -> list[list]:
        if self._converters is None:
            self._converters = converters([self.fields[i] for i in self._positions])
        with connection.cursor() as cursor:
            cursor.execute(self.sql, list(params))
            fetched = cursor.fetchall()
        out = []
        for row in fetched:
            row = list(row)
            for i, value in zip(self._positions, decode(self._converters, [row[i] for i in self._positions]),
                                strict=True):
                row[i] = value
            out.append(row)
        return out


def vendor() -> str:
    """The database's vendor ("postgresql", "sqlite"): callers key their built statements by it."""
    return connection.vendor


def lock_clause(alias: str, lock: str | None) -> str:
    """`" FOR UPDATE OF alias"` (or NO KEY UPDATE for lock="no_key"), where the database has row locks; "" for no
    lock, and on SQLite (a write transaction locks the whole database there)."""
    if lock is None or not connection.features.has_select_for_update:
        return ""
    kind = "NO KEY UPDATE" if lock == "no_key" and connection.features.has_select_for_no_key_update else "UPDATE"
    of = f" OF {alias}" if connection.features.has_select_for_update_of else ""
    return f" FOR {kind}{of}"


def ping() -> None:
    """One `SELECT 1`: raises if the database does not answer."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def prepared_statements() -> list[str]:
    """The statements prepared on this thread's PostgreSQL connection (pg_prepared_statements); [] elsewhere."""
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


# ------------------------------------------------------------------------------------------ for the audit log


def in_transaction() -> bool:
    """Whether the caller runs inside transaction.atomic()."""
    return connection.in_atomic_block


def on_commit_pending(func) -> bool:
    """Whether `func` already waits for the current transaction's commit (transaction.on_commit)."""
    return connection.in_atomic_block and any(entry[1] is func for entry in connection.run_on_commit)


def database_name() -> str:
    """The current database's name (a file path on SQLite)."""
    return str(connection.settings_dict.get("NAME") or "default")


@contextmanager
def snapshot() -> Iterator[None]:
    """One consistent, read-only view of the database for the reads inside (PostgreSQL: a REPEATABLE READ READ ONLY
    transaction; SQLite: a transaction). Inside a caller's transaction, the caller's view."""
    if connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield


def close_thread_connections() -> None:
    """Close this thread's database connections (a thread that is not a request's: the DICOM listener's association
    threads), so that none is left for the garbage collector to close in another thread."""
    connections.close_all()
