"""Security pass: login throttling, CSP without inline script, CSRF on forms, no inline scripts in templates."""
from __future__ import annotations

import re
from pathlib import Path

from django.core.cache import cache
from django.test import Client

from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[1]


def test_login_is_throttled_after_repeated_failures(investigator, settings):
    cache.clear()
    settings.LOGIN_MAX_FAILURES = 3
    client = Client()
    for _ in range(3):
        r = client.post("/accounts/login/", {"username": "ines", "password": "wrong"})
        assert r.status_code == 200 and "_auth_user_id" not in client.session
    r = client.post("/accounts/login/", {"username": "ines", "password": PASSWORD})
    assert "Too many failed logins" in r.content.decode() and "_auth_user_id" not in client.session
    cache.clear()
    r = client.post("/accounts/login/", {"username": "ines", "password": PASSWORD})
    assert r.status_code == 302


def test_every_page_carries_a_csp_without_inline_script(client, investigator):
    client.force_login(investigator)
    for url in ["/", "/accounts/login/", "/api/docs/", "/trials/new/"]:
        policy = client.get(url)["Content-Security-Policy"]
        script = re.search(r"script-src ([^;]+)", policy).group(1)
        assert "'unsafe-inline'" not in script and "'unsafe-eval'" not in script


def test_no_template_contains_an_inline_script_or_handler():
    for path in (ROOT / "templates").rglob("*.html"):
        text = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), f"inline <script> in {path}"
        assert not re.search(r"\son(click|load|submit|change|input)=", text), f"inline handler in {path}"


def test_forms_are_refused_without_a_csrf_token(investigator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(investigator)
    r = client.post("/trials/new/", {"code": "x", "title": "X"})
    assert r.status_code == 403


def test_session_expires(settings):
    assert settings.SESSION_COOKIE_AGE <= 12 * 3600
