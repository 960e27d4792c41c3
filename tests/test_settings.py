"""Production mode: refuses the development key and passes `manage.py check --deploy` cleanly."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    # DJANGO_ALLOW_ASYNC_UNSAFE is set by the browser tests in this process; a deployment never has it.
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("DJANGO_SECRET_KEY", "CXR_PRODUCTION", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    full_env.update(env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=120)


def test_production_refuses_the_development_secret_key():
    result = _manage("check", CXR_PRODUCTION="1")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is the development key" in result.stderr


def test_production_settings_pass_check_deploy_without_warnings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", CXR_PRODUCTION="1",
                     DJANGO_SECRET_KEY=secrets.token_urlsafe(64), DJANGO_ALLOWED_HOSTS="trial.example.org")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
