"""On PostgreSQL, a trigger that holds what Report.save() holds: a submitted report version is never deleted, and
the only change it takes is its sign-off (signed_by, signed_at), once. As trial 0002 does for the audit log, SQLite
relies on the model's guard (and verify_audit's state hashes catch an edit there too)."""
from django.db import migrations

TRIGGER_SQL = """
CREATE OR REPLACE FUNCTION reading_report_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'A submitted report is immutable (append-only): DELETE on reading_report is not allowed';
    END IF;
    IF OLD.signed_at IS NOT NULL
       OR (to_jsonb(NEW) - 'signed_by_id' - 'signed_at') IS DISTINCT FROM (to_jsonb(OLD) - 'signed_by_id' - 'signed_at')
    THEN
        RAISE EXCEPTION 'A submitted report is immutable (append-only): only its sign-off may be added, once';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER reading_report_no_update_delete
    BEFORE UPDATE OR DELETE ON reading_report
    FOR EACH ROW EXECUTE FUNCTION reading_report_append_only();
"""
DROP_SQL = """
DROP TRIGGER IF EXISTS reading_report_no_update_delete ON reading_report;
DROP FUNCTION IF EXISTS reading_report_append_only();
"""


def add_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGER_SQL, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_SQL, params=None)


class Migration(migrations.Migration):
    dependencies = [("reading", "0002_read_delivered_at")]
    operations = [migrations.RunPython(add_trigger, drop_trigger)]
