"""core.db and the database settings: psycopg 3 binds on the server and prepares what a connection runs repeatedly."""
from __future__ import annotations

import json

import pytest
from django.conf import settings

from core import db
from tests.reading.conftest import build_trial  # noqa: F401  (a fixture)


@pytest.mark.django_db
def test_ping_asks_the_database():
    db.ping()  # raises if the database does not answer


def test_postgresql_binds_parameters_on_the_server_and_prepares_repeated_statements():
    options = settings.DATABASES["default"].get("OPTIONS", {})
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("PostgreSQL's options")
    assert options["server_side_binding"] is True and options["prepare_threshold"] == 5


@pytest.mark.django_db(transaction=True)
def test_a_readers_repeated_autosaves_run_as_prepared_statements(persistent_postgresql, build_trial, client):
    """What production runs (DB_CONN_MAX_AGE=60): after a few autosaves on one kept connection, psycopg has
    prepared the locked read's SELECT itself (what earlier versions did by hand)."""
    from reading.models import Read

    trial, _, _, _ = build_trial(readers_per_site=2, n_cases=2)
    read = Read.objects.filter(trial=trial, arm="standard").select_related("reader__user").first()
    client.force_login(read.reader.user)
    base = None
    for i in range(7):
        r = client.put(f"/api/reads/{read.pk}/autosave/", data=json.dumps(
            {"findings": f"typed {i}", "impression": "y", "base_version": base, "tab_id": "t"}),
            content_type="application/json")
        assert r.status_code == 200, r.content
        base = r.json()["version"]
    prepared = db.prepared_statements()
    assert any("FOR UPDATE" in s and "reading_read" in s for s in prepared), prepared
