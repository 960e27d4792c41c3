"""On PostgreSQL, a trigger that holds what ImmutableAnswer.save() and .delete() hold: an expert's answer (quality
score, preference, findings vote) is written once and never changed or deleted; a correction is a new version. As
trial 0002 does for the audit log, SQLite relies on the model's guard (and verify_audit's state hashes)."""
from django.db import migrations

TABLES = ("scoring_qualityscore", "scoring_preference", "scoring_findingvote")

FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION scoring_answer_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'An expert''s answer is final (append-only): % on % is not allowed', TG_OP, TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;
"""
TRIGGER_SQL = """
CREATE TRIGGER {table}_no_update_delete
    BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION scoring_answer_append_only();
"""


def add_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTION_SQL, params=None)  # the SQL has a literal %
    for table in TABLES:
        schema_editor.execute(TRIGGER_SQL.format(table=table), params=None)


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table};", params=None)
    schema_editor.execute("DROP FUNCTION IF EXISTS scoring_answer_append_only();", params=None)


class Migration(migrations.Migration):
    dependencies = [("scoring", "0003_blinding_question_and_presentation")]
    operations = [migrations.RunPython(add_triggers, drop_triggers)]
