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


# What a site must give compose: none of it has a default.
SITE = {"DJANGO_SECRET_KEY": "x" * 60, "POSTGRES_PASSWORD": "db-password-1", "REDIS_PASSWORD": "redis-password-1",
        "POSTGRES_APP_PASSWORD": "app-password-1", "CXR_AUDIT_KEY": "a" * 40,
        "DJANGO_ALLOWED_HOSTS": "trial.example.org", "CXR_SITE_ADDRESS": "trial.example.org",
        "CXR_TLS_DIR": "/etc/cxr-trial/tls"}


def _config(**env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in SITE} | env
    return subprocess.run([*_compose(), "-f", "docker/compose.yaml", "config"], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=60)


def _services(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)["services"]


def test_compose_file_validates_and_has_every_service():
    result = _config(**SITE)
    assert result.returncode == 0, result.stderr
    for service in ("proxy:", "migrate:", "web:", "worker:", "ai-worker:", "beat:", "db:", "redis:"):
        assert service in result.stdout
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert "healthcheck" in result.stdout and "migrate" in entrypoint and "grant_app_role" in entrypoint


@pytest.mark.parametrize("missing", sorted(SITE))
def test_compose_refuses_to_start_without_each_secret_and_site_setting(missing):
    result = _config(**{k: v for k, v in SITE.items() if k != missing})
    assert result.returncode != 0 and missing in result.stderr


def test_compose_has_no_default_password_and_uses_the_given_ones():
    services = _services(_config(**SITE).stdout)
    assert services["db"]["environment"]["POSTGRES_PASSWORD"] == "db-password-1"
    assert "requirepass" in " ".join(services["redis"]["command"])
    assert services["redis"]["environment"]["REDIS_PASSWORD"] == "redis-password-1"
    env = services["web"]["environment"]
    # web and the workers connect as the application role, which owns no table; only migrate connects as the owner
    assert env["DATABASE_URL"] == "postgres://cxr_app:app-password-1@db:5432/cxr"
    assert services["worker"]["environment"]["DATABASE_URL"] == env["DATABASE_URL"]
    assert services["migrate"]["environment"]["DATABASE_URL"] == "postgres://cxr:db-password-1@db:5432/cxr"
    assert services["migrate"]["environment"]["CXR_DB_APP_ROLE"] == "cxr_app"
    assert services["db"]["environment"]["POSTGRES_APP_PASSWORD"] == "app-password-1"
    assert env["CXR_AUDIT_KEY"] == "a" * 40 and env["CXR_AUDIT_ANCHOR_FILE"].startswith("/var/lib/cxr-trial/audit/")
    assert env["CELERY_BROKER_URL"].startswith("redis://:redis-password-1@redis:")
    assert env["CACHE_URL"].startswith("redis://:redis-password-1@redis:")
    text = (ROOT / "docker" / "compose.yaml").read_text()
    assert "POSTGRES_PASSWORD:-" not in text and "REDIS_PASSWORD:-" not in text


def test_only_the_tls_proxy_is_published_and_web_trusts_forwarded_headers_from_it_alone():
    services = _services(_config(**SITE).stdout)
    published = {name for name, service in services.items() if service.get("ports")}
    # the TLS proxy, and the DICOM listener (DICOM is not HTTP: the hospital's PACS calls it directly), which listens
    # on the loopback address unless the site names its hospital-network address (CXR_DICOM_BIND)
    # and Orthanc (the "pacs" profile: a PACS to try the whole loop on one machine), on the loopback address only
    assert published == {"proxy", "dicom", "orthanc"}
    [dicom_port] = services["dicom"]["ports"]
    assert (dicom_port.get("host_ip") if isinstance(dicom_port, dict) else dicom_port.split(":")[0]) == "127.0.0.1"
    for port in services["orthanc"]["ports"]:
        assert (port.get("host_ip") if isinstance(port, dict) else port.split(":")[0]) == "127.0.0.1"
    assert services["orthanc"]["profiles"] == ["pacs"]
    proxy_address = services["proxy"]["networks"]["edge"]["ipv4_address"]
    web = services["web"]
    assert web["environment"]["CXR_TRUSTED_PROXIES"] == proxy_address
    assert web["environment"]["FORWARDED_ALLOW_IPS"] == proxy_address  # gunicorn's own check
    assert set(web["networks"]) == {"edge", "backend"}
    assert all(set(s.get("networks") or {}) <= {"backend"} for n, s in services.items() if n not in ("web", "proxy"))
    assert set(services["proxy"]["networks"]) == {"edge"}  # the proxy reaches web, not the database or Redis
    volumes = " ".join(services["proxy"]["volumes"] if isinstance(services["proxy"]["volumes"][0], str)
                       else [v["source"] + ":" + v["target"] for v in services["proxy"]["volumes"]])
    assert "/etc/cxr-trial/tls" in volumes
    caddyfile = (ROOT / "docker" / "Caddyfile").read_text()
    assert "tls /etc/caddy/tls/cert.pem /etc/caddy/tls/key.pem" in caddyfile and "reverse_proxy web:8000" in caddyfile


def test_the_production_settings_trust_forwarded_proto_only_from_a_trusted_proxy(rf, settings):
    from core.security import TrustedProxyMiddleware

    settings.CXR_TRUSTED_PROXIES = ["172.31.250.2"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    seen = {}
    middleware = TrustedProxyMiddleware(lambda request: seen.setdefault("secure", request.is_secure()))
    middleware(rf.get("/", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="172.31.250.9"))
    assert seen.pop("secure") is False  # anyone else on the network: not believed
    middleware(rf.get("/", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="172.31.250.2"))
    assert seen.pop("secure") is True


def test_health_endpoint_answers(client, db):
    assert client.get("/healthz").json() == {"ok": True}


def test_production_static_files_rewrite_module_imports_to_hashed_names(tmp_path):
    """The reading screen's ES modules import each other: in production those imports must name the hashed files
    (a plain name is cached briefly, and a page could mix two releases' modules after a deploy)."""
    env = {**{k: v for k, v in os.environ.items() if k != "CXR_DEVELOPMENT"}, "CXR_VAR_DIR": str(tmp_path),
           "CXR_PRODUCTION": "1", "DJANGO_SECRET_KEY": "s" * 60, "CXR_AUDIT_KEY": "k" * 40}
    result = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    mains = [p for p in (tmp_path / "static" / "js" / "reading").glob("main.*.js") if not p.name.endswith(".gz")]
    assert len(mains) == 1
    imports = re.findall(r'from "([^"]+)"', mains[0].read_text())
    assert imports and all(re.fullmatch(r"\./[a-z-]+\.[0-9a-f]{12}\.js|\.\./[a-z-]+\.[0-9a-f]{12}\.js", i)
                           for i in imports), imports
    assert "collectstatic" in (ROOT / "docker" / "Dockerfile").read_text()
