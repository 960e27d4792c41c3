"""The audit head row, and on PostgreSQL a trigger that refuses UPDATE and DELETE on audit events.

TRUNCATE is left to database privileges (only the table owner may truncate; test databases are flushed
that way); verify_audit still notices it, because the head row keeps the count of events.
"""
from django.db import migrations

GENESIS_HASH = "0" * 64

TRIGGER_SQL = """
CREATE OR REPLACE FUNCTION trial_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'The audit log is append-only: % on trial_auditevent is not allowed', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER trial_auditevent_no_update_delete
    BEFORE UPDATE OR DELETE ON trial_auditevent
    FOR EACH ROW EXECUTE FUNCTION trial_audit_append_only();
"""
DROP_SQL = """
DROP TRIGGER IF EXISTS trial_auditevent_no_update_delete ON trial_auditevent;
DROP FUNCTION IF EXISTS trial_audit_append_only();
"""


def create_head(apps, schema_editor):
    apps.get_model("trial", "AuditHead").objects.get_or_create(pk=1, defaults={"last_hash": GENESIS_HASH, "count": 0})


def add_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGER_SQL, params=None)  # the SQL has a literal %


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_SQL, params=None)


class Migration(migrations.Migration):
    dependencies = [("trial", "0001_initial")]
    operations = [
        migrations.RunPython(create_head, migrations.RunPython.noop),
        migrations.RunPython(add_trigger, drop_trigger),
    ]
