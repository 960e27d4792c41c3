"""The settings fail closed: without CXR_DEVELOPMENT=1 they are production's (no debug, no development key), and
production passes `manage.py check --deploy` cleanly."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_ENV = ("DJANGO_SECRET_KEY", "CXR_PRODUCTION", "CXR_DEVELOPMENT", "DJANGO_DEBUG", "DJANGO_ALLOWED_HOSTS",
                "DJANGO_ALLOW_ASYNC_UNSAFE", "DJANGO_SECURE_HSTS_PRELOAD", "CXR_AUDIT_KEY", "CXR_AUDIT_KEY_FILE")
# A site's audit key (trial.audit); the tests of the audit key itself leave it out.
AUDIT_KEY = {"CXR_AUDIT_KEY": secrets.token_urlsafe(48)}


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    # DJANGO_ALLOW_ASYNC_UNSAFE is set by the browser tests in this process; a deployment never has it. The suite's
    # own CXR_DEVELOPMENT=1 is left out: these tests start from what a server would have.
    full_env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    full_env.update(AUDIT_KEY)
    full_env.update(env)
    full_env = {k: v for k, v in full_env.items() if v is not None}  # None: leave the variable out
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=120)


def _setting(name: str, **env: str) -> str:
    result = _manage("shell", "-v", "0", "-c", f"from django.conf import settings; print(repr(settings.{name}))",
                     **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_without_a_development_mode_the_settings_refuse_to_start_without_a_secret_key():
    result = _manage("check")
    assert result.returncode != 0
    assert "need a long random DJANGO_SECRET_KEY" in result.stderr and "CXR_DEVELOPMENT=1" in result.stderr


def test_production_refuses_the_development_secret_key_even_when_asked_for_debug():
    from config.settings import DEVELOPMENT_SECRET_KEY

    result = _manage("check", DJANGO_SECRET_KEY=DEVELOPMENT_SECRET_KEY, DJANGO_DEBUG="1")
    assert result.returncode != 0 and "the development key" in result.stderr
    result = _manage("check", CXR_PRODUCTION="1")
    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr


def test_production_is_the_default_and_has_no_debug_even_when_asked():
    key = secrets.token_urlsafe(64)
    assert _setting("DEBUG", DJANGO_SECRET_KEY=key, DJANGO_DEBUG="1") == "False"
    assert _setting("ALLOWED_HOSTS", DJANGO_SECRET_KEY=key) == "[]"
    assert _setting("SESSION_COOKIE_SECURE", DJANGO_SECRET_KEY=key) == "True"
    assert "'demo'" not in _setting("INSTALLED_APPS", DJANGO_SECRET_KEY=key)


def test_the_development_mode_is_asked_for_explicitly():
    assert _setting("DEBUG", CXR_DEVELOPMENT="1") == "True"
    assert _setting("DEBUG", CXR_DEVELOPMENT="1", DJANGO_DEBUG="0") == "False"
    result = _manage("check", CXR_DEVELOPMENT="1", CXR_PRODUCTION="1")
    assert result.returncode != 0 and "choose one" in result.stderr


def test_hsts_preload_is_opt_in():
    key = secrets.token_urlsafe(64)
    assert _setting("SECURE_HSTS_PRELOAD", DJANGO_SECRET_KEY=key) == "False"
    assert _setting("SECURE_HSTS_PRELOAD", DJANGO_SECRET_KEY=key, DJANGO_SECURE_HSTS_PRELOAD="1") == "True"
    assert _setting("SECURE_HSTS_SECONDS", DJANGO_SECRET_KEY=key) == "31536000"


def test_production_settings_pass_check_deploy_without_warnings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
                     DJANGO_ALLOWED_HOSTS="trial.example.org")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_suite_and_the_makefile_ask_for_the_development_mode():
    assert os.environ.get("CXR_DEVELOPMENT") == "1"  # pyproject.toml [tool.pytest_env]
    assert "export CXR_DEVELOPMENT ?= 1" in (ROOT / "Makefile").read_text()
    assert 'export CXR_DEVELOPMENT="${CXR_DEVELOPMENT:-1}"' in (ROOT / "scripts" / "run-demo.sh").read_text()


def test_production_refuses_to_start_without_an_audit_key_or_with_the_development_one(tmp_path):
    from config.settings import DEVELOPMENT_AUDIT_KEY

    key = secrets.token_urlsafe(64)
    result = _manage("check", DJANGO_SECRET_KEY=key, CXR_AUDIT_KEY=None)
    assert result.returncode != 0 and "CXR_AUDIT_KEY" in result.stderr
    result = _manage("check", DJANGO_SECRET_KEY=key, CXR_AUDIT_KEY=DEVELOPMENT_AUDIT_KEY)
    assert result.returncode != 0 and "the development key" in result.stderr
    key_file = tmp_path / "audit.key"
    key_file.write_text("k" * 40 + "\n")
    assert _setting("AUDIT_KEY", DJANGO_SECRET_KEY=key, CXR_AUDIT_KEY=None,
                    CXR_AUDIT_KEY_FILE=str(key_file)) == repr("k" * 40)
