"""The audit log: append-only, hash-chained, and verify_audit names the first broken link."""
from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from trial import audit
from trial.models import AuditEvent


def test_every_write_of_a_new_trial_is_in_the_chain(trial, site):
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions == ["trial.created", "member.added", "site.added"]
    assert audit.verify().intact


def test_events_cannot_be_changed_or_deleted_through_the_orm(trial):
    event = AuditEvent.objects.first()
    event.action = "forged"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(action="forged")
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()


def _tamper(sql: str, params: list) -> None:
    # Bypasses the ORM, as an attacker with database access would; on PostgreSQL a superuser must
    # switch triggers off first (replica role), which is exactly the situation verify_audit is for.
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = origin")


def test_verify_audit_names_the_altered_event(trial, site, capsys):
    target = AuditEvent.objects.get(action="member.added")
    _tamper("UPDATE trial_auditevent SET payload = %s WHERE id = %s", ['{"role": "expert"}', target.pk])
    with pytest.raises(CommandError, match=f"BROKEN at event {target.pk}: its content does not match"):
        call_command("verify_audit")


def test_verify_audit_names_a_deleted_event(trial, site):
    target = AuditEvent.objects.get(action="member.added")
    _tamper("DELETE FROM trial_auditevent WHERE id = %s", [target.pk])
    with pytest.raises(CommandError, match=f"BROKEN at event {target.pk}: event {target.pk} is missing"):
        call_command("verify_audit")


def test_verify_audit_finds_a_removed_tail(trial, site):
    last = AuditEvent.objects.latest("id")
    _tamper("DELETE FROM trial_auditevent WHERE id = %s", [last.pk])
    with pytest.raises(CommandError, match="removed"):
        call_command("verify_audit")


def test_verify_audit_says_the_chain_is_intact(trial, site, capsys):
    call_command("verify_audit")
    assert "intact: 3 events" in capsys.readouterr().out


def test_database_trigger_refuses_updates_on_postgresql(trial):
    if connection.vendor != "postgresql":
        pytest.skip("the trigger exists on PostgreSQL only; SQLite relies on the ORM guard tested above")
    # psycopg 3 raises RAISE EXCEPTION as ProgrammingError, psycopg2 InternalError
    from django.db.utils import DatabaseError

    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE trial_auditevent SET action = 'forged'")


def test_a_rolled_back_write_leaves_no_event(trial, investigator):
    before = AuditEvent.objects.count()
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            audit.record(actor=investigator, action="test.event", obj=trial)
            raise RuntimeError("the write failed")
    assert AuditEvent.objects.count() == before
    assert audit.verify().intact
