"""Hand-written SQL statements, put together once from the models' _meta, for the few hot paths where the ORM's
own Python costs more than the database (see reading/queries.py, the reading steps).

Why not the ORM there: building, compiling and decoding a query costs 1-2 ms of Python per statement, more than
PostgreSQL spends running it, and a reader's autosave is a handful of statements. Here no table or column name is
typed by hand (they come from _meta), parameters are prepared and results decoded by the fields themselves as the
ORM would (so SQLite and PostgreSQL both work), and rows come back as ordinary model instances (Model.from_db).
On persistent PostgreSQL connections the SELECTs are server-side prepared statements (planning a join there
took longer than running it). Permission checks stay with the callers (selectors and services).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections
from django.db.models import Field, Model


def qn(name: str) -> str:
    return connection.ops.quote_name(name)


def table(model: type[Model]) -> str:
    return qn(model._meta.db_table)


def col(model: type[Model], name: str, alias: str | None = None) -> str:
    column = qn(model._meta.get_field(name).column)
    return f"{alias}.{column}" if alias else column


@dataclass(frozen=True)
class Part:
    """One model's share of a SELECT: its fields, read under `alias`, in the model's field order (the order
    Model.from_db expects when some fields are left out)."""
    model: type[Model]
    alias: str
    names: tuple[str, ...]

    def __post_init__(self):
        wanted = set(self.names)
        ordered = tuple(f.name for f in self.model._meta.concrete_fields if f.name in wanted)
        if len(ordered) != len(wanted) or ordered[0] != self.model._meta.pk.name:
            raise ValueError(f"{self.model.__name__}: concrete fields, the primary key first: {self.names}")
        object.__setattr__(self, "names", ordered)
        object.__setattr__(self, "fields", [self.model._meta.get_field(name) for name in ordered])
        object.__setattr__(self, "attnames", [field.attname for field in self.fields])

    def columns(self) -> list[str]:
        return [f"{self.alias}.{qn(field.column)}" for field in self.fields]


def all_fields(model: type[Model]) -> tuple[str, ...]:
    return tuple(field.name for field in model._meta.concrete_fields)


def converters(fields: Sequence[Field]) -> list[tuple]:
    """Per field, the converters the ORM's compiler would apply (the backend's, then the field's own, e.g. JSON
    decoding) with the column expression they are given; an empty tuple where there are none (most columns)."""
    out = []
    for field in fields:
        expression = field.get_col(field.model._meta.db_table)
        found = connection.ops.get_db_converters(expression) + field.get_db_converters(connection)
        out.append(tuple((converter, expression) for converter in found))
    return out


def decode(converters: list[tuple], values: Sequence) -> list:
    out = list(values)
    for i, convert in enumerate(converters):
        for converter, expression in convert:
            out[i] = converter(out[i], expression, connection)
    return out


# A prepared statement that no longer fits its tables (a migration changed a column's type: "cached plan must not
# change result type") or that is gone (deallocated behind our back).
_STALE_PREPARED = {"0A000", "26000"}


def _prepared(name: str, sql: str) -> str | None:
    """On a persistent PostgreSQL connection, the name of a server-side prepared statement of `sql`, prepared on
    first use on this connection; None elsewhere. Why: planning the reading steps' joins took the database
    longer than running them (EXPLAIN ANALYZE: 0.7 ms planning, 0.1 ms execution for a read with its trial,
    case and saved text). Not on a connection per request (the default CONN_MAX_AGE=0: the statement would be
    prepared, used once and dropped), nor through a transaction-pooling proxy (a statement prepared on one
    server connection is not on the next): DB_PREPARED_STATEMENTS=0 turns it off."""
    if (connection.vendor != "postgresql" or not settings.DB_PREPARED_STATEMENTS
            or connection.settings_dict.get("CONN_MAX_AGE") == 0):  # None: connections kept for ever
        return None
    wrapper = connections[DEFAULT_DB_ALIAS]  # this thread's own (`connection` is a proxy shared by all threads)
    wrapper.ensure_connection()
    raw = wrapper.connection
    if wrapper.__dict__.get("_cxr_prepared_off") is raw:
        return None  # see _give_up_prepared
    prepared = wrapper.__dict__.setdefault("_cxr_prepared", {})
    if prepared.get(name) is not raw:  # a new connection (or never prepared): prepared statements are per connection
        numbered = sql.split("%s")
        text = numbered[0] + "".join(f"${i}{part}" for i, part in enumerate(numbered[1:], start=1))
        with connection.cursor() as cursor:
            cursor.execute(f"PREPARE {name} AS {text}")
        prepared[name] = raw
    return name


def _give_up_prepared() -> None:
    """No more prepared statements on this connection, and close it at the end of the request (Django's
    close_if_unusable_or_obsolete): its successor prepares them afresh."""
    wrapper = connections[DEFAULT_DB_ALIAS]
    wrapper.__dict__["_cxr_prepared_off"] = wrapper.connection
    wrapper.close_at = time.monotonic()


def execute(cursor, name: str, sql: str, params: Sequence) -> None:
    statement = _prepared(name, sql)
    if statement is None:
        cursor.execute(sql, list(params))
        return
    arguments = f" ({', '.join(['%s'] * len(params))})" if params else ""
    try:
        cursor.execute(f"EXECUTE {statement}{arguments}", list(params))
    except DatabaseError as exc:
        if getattr(exc.__cause__, "pgcode", None) not in _STALE_PREPARED:
            raise
        _give_up_prepared()
        if connections[DEFAULT_DB_ALIAS].in_atomic_block:
            raise  # the transaction is aborted: this request fails, the next one gets a fresh connection
        cursor.execute(sql, list(params))  # outside a transaction: the plain statement, this once


class Select:
    """A SELECT of some parts, run with parameters; each row comes back as one instance per part (None for a
    part that a LEFT JOIN found nothing for)."""

    def __init__(self, name: str, parts: Sequence[Part], sql_after_columns: str):
        self.name = name
        self.parts = list(parts)
        self.sql = f"SELECT {', '.join(c for part in self.parts for c in part.columns())} {sql_after_columns}"
        self._converters = None

    def rows(self, params: Sequence) -> list[list[Model | None]]:
        if self._converters is None:
            self._converters = [converters(part.fields) for part in self.parts]
        with connection.cursor() as cursor:
            execute(cursor, self.name, self.sql, params)
            fetched = cursor.fetchall()
        out = []
        for row in fetched:
            objects, i = [], 0
            for part, convert in zip(self.parts, self._converters):
                values = row[i:i + len(part.names)]
                i += len(part.names)
                if values[0] is None:  # the part's primary key: no row joined (LEFT JOIN)
                    objects.append(None)
                    continue
                decoded = decode(convert, values)
                objects.append(part.model.from_db(connection.alias, part.attnames, decoded))
            out.append(objects)
        return out


def _plain(field: Field, value):
    """A related object as its id (the column's value); anything else as it is."""
    return value.pk if field.is_relation and isinstance(value, Model) else value


@cache
def _insert_sql(model: type[Model], names: tuple[str, ...], returning: str | None, vendor: str) -> str:
    columns = ", ".join(qn(model._meta.get_field(name).column) for name in names)
    text = f"INSERT INTO {table(model)} ({columns}) VALUES ({', '.join(['%s'] * len(names))})"
    return f"{text} RETURNING {col(model, returning)}" if returning else text


def insert(model: type[Model], values: dict, *, returning: str | None = None):
    """INSERT one row (`values` by field name or attname, a related object or its id): the values prepared by
    their fields as Model.save would; `returning`: a column to give back (PostgreSQL and SQLite have RETURNING)."""
    fields = [model._meta.get_field(name) for name in values]
    params = [f.get_db_prep_save(_plain(f, value), connection) for f, value in zip(fields, values.values())]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(model, tuple(values), returning, connection.vendor), params)
        return cursor.fetchone()[0] if returning else None


def create(model: type[Model], values: dict) -> Model:
    """Model.objects.create(**values) in one plain INSERT: every other field takes its default (a field that the
    ORM would fill at save time, auto_now and the like, must be given). No signals are sent (the project has no
    receivers for the models written this way)."""
    given = {}
    for name, value in values.items():
        field = model._meta.get_field(name)
        given[field.attname] = _plain(field, value)
    row = {}
    for field in model._meta.concrete_fields:
        if field.attname in given:
            row[field.attname] = given[field.attname]
        elif field.primary_key:
            continue
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            raise ValueError(f"{model.__name__}.{field.name} is set at save time: give it")
        else:
            row[field.attname] = field.get_default()
    pk = insert(model, row, returning=model._meta.pk.name)
    obj = model(**{**row, model._meta.pk.attname: pk})
    obj._state.adding, obj._state.db = False, connection.alias
    return obj


@cache
def _update_sql(model: type[Model], names: tuple[str, ...], increment: str | None, vendor: str) -> str:
    sets = [f"{qn(model._meta.get_field(name).column)} = %s" for name in names]
    if increment:
        column = col(model, increment)
        sets.append(f"{column} = {column} + 1")
    return f"UPDATE {table(model)} SET {', '.join(sets)} WHERE {qn(model._meta.pk.column)} = %s"


def update(model: type[Model], pk, values: dict, *, increment: str | None = None) -> int:
    """UPDATE one row by primary key; `increment`: an integer column to add 1 to in the same statement."""
    fields = [model._meta.get_field(name) for name in values]
    params = [f.get_db_prep_save(_plain(f, value), connection) for f, value in zip(fields, values.values())] + [pk]
    with connection.cursor() as cursor:
        cursor.execute(_update_sql(model, tuple(values), increment, connection.vendor), params)
        return cursor.rowcount
