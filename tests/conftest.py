"""Shared fixtures: people with roles, a trial at each status, isolated media folders."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

PASSWORD = "a-long-test-password-2026"


@pytest.fixture(autouse=True)
def _eager_celery():
    """Tasks run in the test's own process; the integration tests start real workers instead."""
    from config.celery import app

    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield app
    app.conf.task_always_eager, app.conf.task_eager_propagates = False, False


@pytest.fixture(autouse=True)
def _force_login_is_a_complete_login(monkeypatch):
    """`client.force_login(user)` stands for a person who logged in completely: password and, where their role needs
    one, the second factor (core.otp). The second factor's own tests log in through the pages instead."""
    from django.test import Client

    from core.otp import VERIFIED_KEY

    original = Client.force_login

    def force_login(self, user, backend=None):
        original(self, user, backend)
        session = self.session
        session[VERIFIED_KEY] = "test:force_login"
        session.save()

    monkeypatch.setattr(Client, "force_login", force_login)


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.AUDIT_ANCHOR_FILE = str(tmp_path / "audit-anchor.jsonl")  # each test's chain has its own anchor
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only
    return settings.MEDIA_ROOT


@pytest.fixture
def persistent_postgresql():
    """The web processes' database set-up in production (DB_CONN_MAX_AGE=60, docker/compose.yaml): a kept
    PostgreSQL connection, on which psycopg prepares the statements it runs repeatedly. Skips on other databases."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("server-side prepared statements are PostgreSQL's")
    old_age = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = 60
    yield connection
    connection.settings_dict["CONN_MAX_AGE"] = old_age
    connection.close()


@pytest.fixture
def make_user(db):
    def make(username: str, *, can_create_trials: bool = False, **extra):
        extra.setdefault("email", f"{username}@example.org")
        user = get_user_model().objects.create_user(username=username, password=PASSWORD, **extra)
        if can_create_trials:
            user.user_permissions.add(Permission.objects.get(codename="add_trial"))
            user = get_user_model().objects.get(pk=user.pk)
        return user

    return make


@pytest.fixture
def investigator(make_user):
    return make_user("ines", can_create_trials=True)


@pytest.fixture
def outsider(make_user):
    return make_user("oscar")


@pytest.fixture
def trial(investigator):
    from trial import services

    return services.create_trial(by=investigator, code="jpc-1", title="Janus-Pro-CXR replication",
                                 registration_id="NCT07117266")


@pytest.fixture
def site(trial, investigator):
    from trial import services

    return services.add_site(trial=trial, by=investigator, code="site-a", name="Hospital A")


@pytest.fixture
def enrolling_trial(trial, site, investigator):
    from trial import services

    return services.transition_trial(trial=trial, by=investigator, to="enrolling")
