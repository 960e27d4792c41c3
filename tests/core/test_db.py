"""core.db: hand-written statements give what the ORM gives, on SQLite and PostgreSQL, prepared or not."""
from __future__ import annotations

import threading
import time

import pytest
from django.db import DatabaseError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from core import db as sql
from trial.models import Membership, Role, Trial


def _membership_select():
    parts = [sql.Part(Membership, "m", sql.all_fields(Membership)), sql.Part(Trial, "t", ("id", "code", "status"))]
    return sql.Select("test_membership", parts, (
        f"FROM {sql.table(Membership)} m LEFT OUTER JOIN {sql.table(Trial)} t "
        f"ON t.{sql.col(Trial, 'id')} = m.{sql.col(Membership, 'trial')} AND t.{sql.col(Trial, 'status')} = %s "
        f"WHERE m.{sql.col(Membership, 'id')} = %s"))


def test_part_orders_fields_as_the_model_and_needs_the_primary_key():
    assert sql.Part(Trial, "t", ("status", "id", "code")).names == ("id", "code", "status")
    with pytest.raises(ValueError):
        sql.Part(Trial, "t", ("code", "status"))


def test_select_gives_model_instances_equal_to_the_orm(trial, make_user):
    from trial import services

    member = services.add_member(trial=trial, by=trial.created_by, user=make_user("rae"), role=Role.EXPERT)
    orm = Membership.objects.get(pk=member.pk)
    found, joined = _membership_select().rows([trial.status, member.pk])[0]
    assert [getattr(found, f.attname) for f in Membership._meta.concrete_fields] == \
        [getattr(orm, f.attname) for f in Membership._meta.concrete_fields]
    assert (joined.pk, joined.code, joined.status) == (trial.pk, trial.code, trial.status)
    assert "title" in joined.get_deferred_fields()  # not selected: loaded on access, as with .only()
    assert joined.title == trial.title
    found, joined = _membership_select().rows(["no-such-status", member.pk])[0]
    assert joined is None  # nothing joined: None, not an empty instance


def test_create_insert_update_round_trip(trial):
    assert isinstance(trial.findings, list)
    sql.update(Trial, trial.pk, {"findings": ["nodule"], "title": "New"}, increment="case_counter")
    trial.refresh_from_db()
    assert (trial.findings, trial.title, trial.case_counter) == (["nodule"], "New", 1)
    with pytest.raises(ValueError):  # created_at is auto_now_add: the caller must give it
        sql.create(Trial, {"code": "x", "title": "x", "created_by": trial.created_by})


def _prepared_names() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {row[0] for row in cursor.fetchall()}


@pytest.mark.django_db(transaction=True)
def test_persistent_postgresql_connections_prepare_once_per_connection(persistent_postgresql, settings, trial):
    select = sql.Select("test_trial", [sql.Part(Trial, "t", ("id", "code"))],
                        f"FROM {sql.table(Trial)} t WHERE t.{sql.col(Trial, 'id')} = %s")
    with CaptureQueriesContext(connection) as ctx:
        first = select.rows([trial.pk])
        second = select.rows([trial.pk])
    statements = [q["sql"] for q in ctx.captured_queries]
    assert statements[0].startswith("PREPARE test_trial AS SELECT")
    assert statements[1:] == [f"EXECUTE test_trial ({trial.pk})"] * 2
    assert first[0][0].code == second[0][0].code == trial.code
    assert "test_trial" in _prepared_names()

    connection.close()  # a new connection has none: prepared again, not "does not exist"
    assert select.rows([trial.pk])[0][0].pk == trial.pk

    def other_thread():  # its own connection, its own statements
        try:
            connections["default"].settings_dict["CONN_MAX_AGE"] = 60
            with transaction.atomic():
                assert select.rows([trial.pk])[0][0].pk == trial.pk
        finally:
            connections.close_all()

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join()
    assert select.rows([trial.pk])[0][0].pk == trial.pk  # this connection's statement is still there

    settings.DB_PREPARED_STATEMENTS = False
    with CaptureQueriesContext(connection) as ctx:
        select.rows([trial.pk])
    assert ctx.captured_queries[0]["sql"].startswith("SELECT")


@pytest.mark.django_db(transaction=True)
def test_a_prepared_statement_gone_stale_falls_back_and_the_connection_is_renewed(persistent_postgresql, trial):
    """After a migration changes a column's type, PostgreSQL refuses the old prepared statement ("cached plan must
    not change result type"); a statement deallocated behind our back is refused too. Outside a transaction the
    plain statement answers at once; the connection is closed at the end of the request, its successor prepares
    again."""
    select = sql.Select("test_stale", [sql.Part(Trial, "t", ("id", "code"))],
                        f"FROM {sql.table(Trial)} t WHERE t.{sql.col(Trial, 'id')} = %s")
    assert select.rows([trial.pk])[0][0].code == trial.code
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE test_stale")
    assert select.rows([trial.pk])[0][0].code == trial.code  # answered by the plain statement
    assert connection.close_at is not None and connection.close_at <= time.monotonic()
    wrapper = connections["default"]  # this thread's (`connection` is a proxy)
    assert wrapper.__dict__["_cxr_prepared"]["test_stale"] is wrapper.connection  # still thought prepared
    with pytest.raises(DatabaseError):  # inside a transaction the error stands (the transaction is aborted)
        with transaction.atomic():
            del wrapper.__dict__["_cxr_prepared_off"]  # as on a connection that had not failed yet
            select.rows([trial.pk])
    assert wrapper.__dict__["_cxr_prepared_off"] is wrapper.connection
    connection.close_if_unusable_or_obsolete()  # the end of the request
    assert connection.connection is None
    assert select.rows([trial.pk])[0][0].code == trial.code  # a fresh connection, prepared again
    assert "test_stale" in _prepared_names()
