"""Test set-up that writes past the append-only triggers (reports, answers, audit log: PostgreSQL only), as a
fixture's shortcut or as an attacker with the owner's rights would; the application never does."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.db import connection


@contextlib.contextmanager
def past_append_only_triggers() -> Iterator[None]:
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")  # row triggers off (a superuser's right)
        try:
            yield
        finally:
            cursor.execute("SET session_replication_role = origin")
