"""The signed-in user from the shared cache (trial/auth.py): no query per request, and nothing stale after a change."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core import auth
from core.auth import CachedModelBackend
from tests.conftest import PASSWORD


@pytest.fixture
def cached_users(settings):
    settings.AUTH_USER_CACHE_SECONDS = 60
    cache.clear()
    yield
    cache.clear()


def _user_queries(client, url="/") -> int:
    with CaptureQueriesContext(connection) as ctx:
        client.get(url)
    return sum('"auth_user"' in q["sql"] for q in ctx.captured_queries)


def test_the_user_is_read_once_then_from_the_cache(cached_users, client, make_user):
    user = make_user("cora")
    client.force_login(user)
    assert _user_queries(client) == 1
    assert _user_queries(client) == 0


def test_without_a_shared_cache_every_request_reads_the_user(settings, client, make_user):
    settings.AUTH_USER_CACHE_SECONDS = 0
    client.force_login(make_user("dora"))
    assert _user_queries(client) == 1
    assert _user_queries(client) == 1


def test_a_deactivated_user_is_signed_out_at_once(cached_users, client, make_user):
    user = make_user("eve")
    client.force_login(user)
    assert client.get("/").status_code == 200
    user.is_active = False
    user.save()
    response = client.get("/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_password_change_ends_the_other_sessions_at_once(cached_users, client, make_user):
    user = make_user("fay")
    assert client.login(username="fay", password=PASSWORD)
    assert client.get("/").status_code == 200
    user.set_password("another-long-password-2026")
    user.save()
    assert client.get("/").status_code == 302  # the session's hash no longer matches the (fresh) user


def test_a_deleted_or_unknown_user_is_none(cached_users, make_user):
    backend = CachedModelBackend()
    user = make_user("gus")
    assert backend.get_user(user.pk).pk == user.pk
    get_user_model().objects.filter(pk=user.pk).delete()  # a queryset delete still sends post_delete per row
    assert backend.get_user(user.pk) is None
    assert backend.get_user("not-a-number") is None


def test_a_row_read_before_a_change_is_not_cached_after_it(cached_users, make_user):
    """The race: a request reads the user row, the user is deactivated and committed, then the request caches
    what it read. The "changed" mark makes that add a no-op, and the next request reads the database."""
    user = make_user("hal")
    backend = CachedModelBackend()
    stale = backend.get_user(user.pk)  # what the slow request read, still active
    user.is_active = False
    user.save()  # marks the user changed (now; and on commit, which the test transaction never reaches)
    cache.delete(auth._key(user.pk))
    auth.forget_user(user.pk)  # as the on-commit callback would
    assert cache.add(auth._key(user.pk), stale, 60) is False  # the slow request's add
    assert backend.get_user(user.pk) is None


def test_a_failing_cache_falls_back_to_the_database(cached_users, client, make_user, monkeypatch):
    user = make_user("ida")
    client.force_login(user)

    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    for method in ("get", "add", "set"):
        monkeypatch.setattr(auth.cache, method, broken)
    assert CachedModelBackend().get_user(user.pk).pk == user.pk
    user.first_name = "Ida"
    user.save()  # the change is not refused because the cache cannot be told


def test_sessions_of_the_plain_model_backend_stay_signed_in(cached_users, client, make_user):
    client.force_login(make_user("jo"), backend="django.contrib.auth.backends.ModelBackend")
    assert client.get("/").status_code == 200


def test_a_failed_login_checks_the_password_once(cached_users, make_user, monkeypatch):
    from django.contrib.auth import authenticate
    from django.contrib.auth.hashers import MD5PasswordHasher

    make_user("kim")
    calls = []
    original = MD5PasswordHasher.verify
    monkeypatch.setattr(MD5PasswordHasher, "verify", lambda self, *a: calls.append(1) or original(self, *a))
    assert authenticate(username="kim", password="wrong-password-here") is None
    assert len(calls) == 1
    assert authenticate(username="kim", password=PASSWORD).username == "kim"
