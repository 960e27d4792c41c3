"""Sessions are read on every reading step: from the shared cache in production, never from a per-process one."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _session_engine(**env: str) -> str:
    full_env = {k: v for k, v in os.environ.items() if k not in ("CACHE_URL", "SESSION_ENGINE")}
    full_env.update(env)
    result = subprocess.run([sys.executable, "-c", "import django; django.setup(); from django.conf import settings; "
                             "print(settings.SESSION_ENGINE)"], cwd=ROOT, env=full_env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().rsplit(".", 1)[-1]


@pytest.mark.parametrize("cache_url, engine", [
    # the in-process default: another worker would keep a logged-out session
    (None, "db"),
    ("locmemcache://", "db"),
    # shared (docker/compose.yaml): read there, written through to the database
    ("redis://127.0.0.1:6379/1", "cached_db"),
])
def test_sessions_come_from_the_cache_only_when_it_is_shared(cache_url, engine):
    env = {"DJANGO_SETTINGS_MODULE": "config.settings"}
    if cache_url:
        env["CACHE_URL"] = cache_url
    assert _session_engine(**env) == engine


def test_a_cached_session_ends_at_logout_and_at_expiry(build_trial, settings):
    from django.contrib.sessions.models import Session
    from django.test import Client

    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    trial, readers, _, _ = build_trial(readers_per_site=2, n_cases=2)
    client = Client()
    client.force_login(readers[0])
    assert client.get(f"/t/{trial.code}/read/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get(f"/t/{trial.code}/read/").status_code == 302  # to the login page
    assert not Session.objects.exists()

    client.force_login(readers[0])
    session = client.session
    session.set_expiry(-1)  # expired: gone from the cache too, whatever it still holds
    session.save()
    assert client.get(f"/t/{trial.code}/read/").status_code == 302
