"""Security pass: login throttling (normalized usernames, client addresses from trusted proxies only, back-off, the
admin login), the idle timeout, CSP without inline script, CSRF on forms, no inline scripts in templates."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client, RequestFactory

from core import security
from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_throttle(settings):
    cache.clear()
    settings.LOGIN_MAX_FAILURES = 3
    settings.LOGIN_BACKOFF_SECONDS = 2
    settings.LOGIN_MAX_BACKOFF_SECONDS = 900
    yield
    cache.clear()


class Clock:
    """time.time() as core.security sees it, moved by hand."""

    def __init__(self, monkeypatch):
        self.now = time.time()
        monkeypatch.setattr(security.time, "time", lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _login(client, username, password=PASSWORD, **extra):
    return client.post("/accounts/login/", {"username": username, "password": password}, **extra)


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_login_is_throttled_after_repeated_failures(investigator):
    client = Client()
    for _ in range(3):
        r = _login(client, "ines", "wrong")
        assert r.status_code == 200 and not _logged_in(client)
    r = _login(client, "ines")
    assert "Too many failed logins" in r.content.decode() and not _logged_in(client)
    cache.clear()
    assert _login(client, "ines").status_code == 302


# Spellings that Django's login form turns into "ines" (NFKC, stripped) and so log in to the real account, or that
# differ only in case: each must count against the same account.
VARIANTS = [" ines", "ines ", "\tines\n", "INES", "Ines", "ｉｎｅｓ", "ＩＮＥＳ", " ｉｎｅｓ "]


@pytest.mark.parametrize("variant", VARIANTS)
def test_spelling_variants_of_a_username_share_one_count(investigator, variant):
    for name in ("ines", variant, variant):  # failures under the plain name and under the variant
        _login(Client(REMOTE_ADDR=f"198.51.100.{len(name)}"), name, "wrong")
    for name in ("ines", variant):
        client = Client(REMOTE_ADDR="203.0.113.77")
        r = _login(client, name)
        assert "Too many failed logins" in r.content.decode() and not _logged_in(client), name


def test_a_variant_that_django_accepts_really_logs_in_once_the_back_off_is_over(investigator):
    """Why the normalization matters: these spellings are the real account, password and all."""
    for variant in (" ines ", "ｉｎｅｓ"):
        client = Client()
        assert _login(client, variant).status_code == 302 and _logged_in(client)


def test_the_admin_login_is_the_same_throttled_login(investigator):
    client = Client()
    r = client.get("/admin/login/?next=/admin/")
    assert r.status_code == 302 and r["Location"] == "/accounts/login/?next=%2Fadmin%2F"
    for _ in range(3):
        client.post("/admin/login/", {"username": "ines", "password": "wrong"})  # never the admin's own form
        _login(client, "ines", "wrong")
    r = _login(client, "ｉｎｅｓ")
    assert "Too many failed logins" in r.content.decode() and not _logged_in(client)


def test_the_admins_own_form_is_throttled_too():
    from django.contrib import admin

    from core.security import ThrottleMixin

    assert issubclass(admin.site.login_form, ThrottleMixin)


def test_the_back_off_doubles_and_ends(investigator, monkeypatch):
    clock = Clock(monkeypatch)
    client = Client()
    for _ in range(3):
        _login(client, "ines", "wrong")
    waits = []
    for _ in range(4):
        wait = security.wait_seconds(security.scopes_for(RequestFactory().post("/"), "ines"))
        waits.append(round(wait))
        assert "Too many failed logins" in _login(client, "ines").content.decode()  # refused: does not count
        clock.advance(wait + 0.01)
        _login(client, "ines", "wrong")  # a new failure once the wait is over
    assert waits == [2, 4, 8, 16]
    clock.advance(31)
    assert "Too many failed logins" in _login(client, "ines").content.decode()  # 7 failures: 32 s
    clock.advance(1.01)
    assert _login(client, "ines").status_code == 302


def test_refused_tries_do_not_lengthen_the_wait(investigator, monkeypatch):
    clock = Clock(monkeypatch)
    for _ in range(3):
        _login(Client(), "ines", "wrong")
    for _ in range(50):  # someone hammering during the back-off
        _login(Client(), "ines", "wrong")
    clock.advance(2.01)
    assert _login(Client(), "ines").status_code == 302


def test_the_back_off_has_a_ceiling(settings):
    settings.LOGIN_MAX_BACKOFF_SECONDS = 900
    assert security.backoff_seconds(2, 3) == 0
    assert security.backoff_seconds(3, 3) == 2
    assert security.backoff_seconds(60, 3) == 900


def test_nobody_can_keep_a_person_out_of_their_account(investigator):
    """An attacker's failures in someone's name do not stop that person's own browser, which logged in before."""
    own = Client(REMOTE_ADDR="192.0.2.10")
    assert _login(own, "ines").status_code == 302 and security.DEVICE_COOKIE in own.cookies
    own.post("/accounts/logout/")
    attacker = Client(REMOTE_ADDR="203.0.113.66")
    for _ in range(12):
        _login(attacker, "ines", "wrong")
    assert "Too many failed logins" in _login(attacker, "ines").content.decode()  # a guess: refused
    assert "Too many failed logins" in _login(Client(REMOTE_ADDR="192.0.2.10"), "ines").content.decode()
    r = _login(own, "ines")
    assert r.status_code == 302 and _logged_in(own)  # the person's own browser: counted on its own


def test_a_known_browser_still_has_its_own_back_off(investigator):
    own = Client()
    _login(own, "ines")
    own.post("/accounts/logout/")
    for _ in range(3):
        _login(own, "ines", "wrong")
    assert "Too many failed logins" in _login(own, "ines").content.decode()


def test_a_forged_browser_cookie_counts_for_nothing(investigator):
    for _ in range(3):
        _login(Client(), "ines", "wrong")
    forged = Client()
    forged.cookies[security.DEVICE_COOKIE] = '{"ines": "made-up"}'
    assert "Too many failed logins" in _login(forged, "ines").content.decode()


def test_guessing_many_accounts_from_one_address_is_throttled(make_user):
    for i in range(12):
        _login(Client(REMOTE_ADDR="203.0.113.5"), f"nobody-{i}", "wrong")
    make_user("victor")
    r = _login(Client(REMOTE_ADDR="203.0.113.5"), "victor")
    assert "Too many failed logins" in r.content.decode()
    assert _login(Client(REMOTE_ADDR="203.0.113.6"), "victor").status_code == 302  # another address: fine


def test_the_client_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy(settings):
    settings.CXR_TRUSTED_PROXIES = ["10.0.0.0/24", "2001:db8::1"]
    rf = RequestFactory()
    assert security.client_address(rf.get("/", REMOTE_ADDR="198.51.100.7",
                                          HTTP_X_FORWARDED_FOR="203.0.113.5")) == "198.51.100.7"
    assert security.client_address(rf.get("/", REMOTE_ADDR="10.0.0.3",
                                          HTTP_X_FORWARDED_FOR="203.0.113.5")) == "203.0.113.5"
    # what the client wrote itself stands on the left: the nearest untrusted hop counts
    assert security.client_address(rf.get("/", REMOTE_ADDR="10.0.0.3",
                                          HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.5, 10.0.0.9")) == "203.0.113.5"
    assert security.client_address(rf.get("/", REMOTE_ADDR="2001:db8::1",
                                          HTTP_X_FORWARDED_FOR="203.0.113.8")) == "203.0.113.8"
    assert security.client_address(rf.get("/", REMOTE_ADDR="10.0.0.3",
                                          HTTP_X_FORWARDED_FOR="not-an-address")) == "10.0.0.3"


def test_a_spoofed_forwarded_address_does_not_escape_the_address_count(settings, make_user):
    settings.CXR_TRUSTED_PROXIES = ["10.0.0.1"]
    for i in range(12):
        Client(REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}").post(
            "/accounts/login/", {"username": f"nobody-{i}", "password": "wrong"})
    make_user("victor")
    r = Client(REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="198.51.100.200").post(
        "/accounts/login/", {"username": "victor", "password": PASSWORD})
    assert "Too many failed logins" in r.content.decode()
    # behind the real proxy, each client has its own count
    r = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.200").post(
        "/accounts/login/", {"username": "victor", "password": PASSWORD})
    assert r.status_code == 302


def test_forwarded_headers_from_an_untrusted_peer_are_dropped(settings, client, db):
    settings.CXR_TRUSTED_PROXIES = ["10.0.0.1"]
    seen = {}
    middleware = security.TrustedProxyMiddleware(lambda request: seen.update(request.META) or None)
    middleware(RequestFactory().get("/", REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_PROTO="https",
                                    HTTP_X_FORWARDED_FOR="1.2.3.4", HTTP_FORWARDED="for=1.2.3.4"))
    assert not {"HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED"} & set(seen)
    seen.clear()
    middleware(RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_PROTO="https"))
    assert seen["HTTP_X_FORWARDED_PROTO"] == "https"


# ------------------------------------------------------------------------------------------ idle timeout


def test_an_idle_session_is_signed_out(client, investigator, trial, settings):
    from core.sessions import SEEN_KEY

    settings.CXR_IDLE_TIMEOUT_MINUTES = 30
    client.force_login(investigator)
    assert client.get(f"/t/{trial.code}/").status_code == 200
    session = client.session
    session[SEEN_KEY] = int(time.time()) - 31 * 60
    session.save()
    r = client.get(f"/t/{trial.code}/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/?next=")
    assert "_auth_user_id" not in client.session
    page = client.get(r["Location"]).content.decode()
    assert "without activity" in page and "kept in this browser" in page


def test_an_idle_api_session_gets_a_401_the_reading_screen_understands(client, investigator, trial, settings):
    from core.sessions import SEEN_KEY

    settings.CXR_IDLE_TIMEOUT_MINUTES = 15
    client.force_login(investigator)
    session = client.session
    session[SEEN_KEY] = int(time.time()) - 16 * 60
    session.save()
    r = client.get(f"/api/trials/{trial.code}/")
    # reading/autosave.js keeps the text in localStorage on a 401 and sends it after the next login
    assert r.status_code == 401 and r.json()["code"] == "idle_timeout"
    assert "keep" in (ROOT / "static" / "js" / "reading" / "autosave.js").read_text()


def test_activity_keeps_the_session_and_is_written_at_most_once_a_minute(client, investigator, trial, settings,
                                                                       django_assert_max_num_queries):
    from core.sessions import SEEN_KEY

    settings.CXR_IDLE_TIMEOUT_MINUTES = 30
    client.force_login(investigator)
    client.get(f"/t/{trial.code}/")
    seen = client.session[SEEN_KEY]
    client.get(f"/t/{trial.code}/")
    assert client.session[SEEN_KEY] == seen  # no session write on every request
    session = client.session
    session[SEEN_KEY] = int(time.time()) - 29 * 60
    session.save()
    assert client.get(f"/t/{trial.code}/").status_code == 200
    assert client.session[SEEN_KEY] > seen - 29 * 60 + 60  # moved on


def test_the_idle_timeout_can_be_turned_off(client, investigator, settings):
    from core.sessions import SEEN_KEY

    settings.CXR_IDLE_TIMEOUT_MINUTES = 0
    client.force_login(investigator)
    session = client.session
    session[SEEN_KEY] = 0
    session.save()
    assert client.get("/").status_code == 200


# ------------------------------------------------------------------------------------------ pages


def test_every_page_carries_a_csp_without_inline_script(client, investigator):
    client.force_login(investigator)
    for url in ["/", "/accounts/login/", "/api/docs/", "/trials/new/", "/accounts/", "/accounts/second-factor/setup/",
                "/accounts/password/change/", "/accounts/password/reset/"]:
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
