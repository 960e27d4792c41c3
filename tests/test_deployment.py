"""Deployment files: the compose file validates (no Docker engine needed) and names every service."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    pytest.fail("Neither `docker compose` nor `docker-compose` is installed (scripts/system-deps.sh installs it).")


def test_compose_file_validates_and_has_every_service():
    env = {**os.environ, "DJANGO_SECRET_KEY": "x" * 60}
    result = subprocess.run([*_compose(), "-f", "docker/compose.yaml", "config"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for service in ("web:", "worker:", "ai-worker:", "beat:", "db:", "redis:"):
        assert service in result.stdout
    assert "healthcheck" in result.stdout and "migrate" in (ROOT / "docker" / "entrypoint.sh").read_text()


def test_compose_refuses_to_start_without_a_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    result = subprocess.run([*_compose(), "-f", "docker/compose.yaml", "config"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr


def test_health_endpoint_answers(client, db):
    assert client.get("/healthz").json() == {"ok": True}


def test_production_static_files_rewrite_module_imports_to_hashed_names(tmp_path):
    """The reading screen's ES modules import each other: in production those imports must name the hashed files
    (a plain name is cached briefly, and a page could mix two releases' modules after a deploy)."""
    env = {**os.environ, "CXR_VAR_DIR": str(tmp_path), "CXR_PRODUCTION": "1", "DJANGO_SECRET_KEY": "s" * 60}
    result = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    mains = [p for p in (tmp_path / "static" / "js" / "reading").glob("main.*.js") if not p.name.endswith(".gz")]
    assert len(mains) == 1
    imports = re.findall(r'from "([^"]+)"', mains[0].read_text())
    assert imports and all(re.fullmatch(r"\./[a-z-]+\.[0-9a-f]{12}\.js|\.\./[a-z-]+\.[0-9a-f]{12}\.js", i)
                           for i in imports), imports
    assert "collectstatic" in (ROOT / "docker" / "Dockerfile").read_text()
