"""PostgreSQL: give the application's database role what it needs and nothing more, after every migration.

Run as the owner of the tables (the role that ran `migrate`), e.g. by docker/entrypoint.sh's `migrate` step. The
application role may read and write the tables, but it owns none of them, so it can neither drop nor disable the
append-only triggers (trial 0002, reading 0003, scoring 0004), and it is refused UPDATE, DELETE and TRUNCATE on the
audit log, the report versions and the experts' answers (only a report's sign-off columns may be updated). What the
role cannot reach stays out of the database altogether: the audit key and the anchor file (docs/security.md).
"""
from django.core.management.base import BaseCommand, CommandError
from django.db import connection  # noqa: TID251 - a command about the database's own roles and grants

from trial import audit
from trial.models import AuditEvent


def statements(role: str) -> list[str]:
    """The GRANT and REVOKE statements, idempotent, in the order they must run."""
    from django.apps import apps

    qn = connection.ops.quote_name
    out = [
        f"GRANT USAGE ON SCHEMA public TO {qn(role)}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {qn(role)}",
        f"REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA public FROM {qn(role)}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {qn(role)}",
    ]
    protected: list[tuple[str, tuple[str, ...]]] = [(AuditEvent._meta.db_table, ())]
    for spec in audit.registered_states():
        if spec.append_only:
            model = apps.get_model(spec.label)
            columns = tuple(model._meta.get_field(name.removesuffix("_id")).column for name in spec.updatable)
            protected.append((model._meta.db_table, columns))
    for table, columns in protected:
        out.append(f"REVOKE UPDATE, DELETE, TRUNCATE ON {qn(table)} FROM {qn(role)}")
        if columns:
            out.append(f"GRANT UPDATE ({', '.join(qn(c) for c in columns)}) ON {qn(table)} TO {qn(role)}")
    return out


class Command(BaseCommand):
    help = ("PostgreSQL: grant the application's database role (not the owner of the tables) the rights it needs, "
            "and refuse it UPDATE/DELETE/TRUNCATE on the audit log, report versions and expert answers.")

    def add_arguments(self, parser):
        parser.add_argument("role", help="The application's database role, e.g. cxr_app.")

    def handle(self, *args, role: str, **options):
        if connection.vendor != "postgresql":
            raise CommandError("Database roles are PostgreSQL's; nothing to do on this database.")
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", [role])
            row = cursor.fetchone()
            if row is None:
                raise CommandError(f"There is no database role {role!r} (docker/postgres/10-app-role.sh creates it).")
            if row[0] or row[1]:
                raise CommandError(f"{role!r} is a superuser (or bypasses row security): it could undo every guard.")
            cursor.execute("SELECT current_user")
            if cursor.fetchone()[0] == role:
                raise CommandError("Run this as the owner of the tables (the role that ran migrate), not as the "
                                   "application's role.")
            for sql in statements(role):
                cursor.execute(sql)
        self.stdout.write(self.style.SUCCESS(f"Granted {role!r} the application's rights; the audit log, report "
                                             "versions and answers are append-only for it."))
