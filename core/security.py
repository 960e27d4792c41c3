"""Security pieces that Django 5.2 lacks built in: a content security policy header, forwarded headers believed only
from trusted proxies, and login throttling with exponential back-off."""
from __future__ import annotations

import hashlib
import ipaddress
import secrets
import time
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core import signing
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.urls import reverse

# No inline script anywhere (all JS is in static files); styles may be inline (progress bars, Swagger UI).
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "font-src 'self' data:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


# ------------------------------------------------------------------------------------------ the client's address

FORWARDED_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT",
                     "HTTP_X_REAL_IP", "HTTP_FORWARDED")


@lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in proxies if p.strip())


def _is_trusted_proxy(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in _networks(tuple(settings.CXR_TRUSTED_PROXIES)))


class TrustedProxyMiddleware:
    """Forwarded headers (X-Forwarded-For, X-Forwarded-Proto, …) are believed only from CXR_TRUSTED_PROXIES: from
    anyone else they are dropped before Django (SECURE_PROXY_SSL_HEADER) or anything else reads them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not _is_trusted_proxy(request.META.get("REMOTE_ADDR", "")):
            for header in FORWARDED_HEADERS:
                request.META.pop(header, None)
        return self.get_response(request)


def client_address(request) -> str:
    """The client's address: REMOTE_ADDR, or, when that is a trusted proxy, the nearest address in X-Forwarded-For
    that is not one (read from the right: the addresses on the left are whatever the client wrote)."""
    remote = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    if not _is_trusted_proxy(remote):
        return remote
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted_proxy(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return remote  # not an address: the proxy chain is not what we expect
    return remote


# ------------------------------------------------------------------------------------------ login throttling


def normalize_username(username: str) -> str:
    """The form of a username that throttling counts: NFKC (full-width letters become ASCII, as Django's login form
    makes them before it looks the user up), stripped and case-folded, so that no spelling of one account escapes
    the count of the others."""
    return unicodedata.normalize("NFKC", username or "").strip().casefold()


@dataclass(frozen=True)
class Scope:
    kind: str     # "user", "address" or "device"
    value: str
    free: int     # failures allowed before the back-off starts

    @property
    def key(self) -> str:
        return "login-throttle:" + hashlib.sha256(f"{self.kind}|{self.value}".encode()).hexdigest()


def _state(scope: Scope) -> tuple[int, float]:
    failures, last = cache.get(scope.key, (0, 0.0))
    return failures, last


def backoff_seconds(failures: int, free: int) -> float:
    """The wait after `failures` failed logins: none for the first `free`, then LOGIN_BACKOFF_SECONDS doubling with
    each further failure, up to LOGIN_MAX_BACKOFF_SECONDS."""
    if failures < free:
        return 0.0
    delay = settings.LOGIN_BACKOFF_SECONDS * 2 ** min(failures - free, 30)
    return float(min(delay, settings.LOGIN_MAX_BACKOFF_SECONDS))


def wait_seconds(scopes: list[Scope], now: float | None = None) -> float:
    """How long until a login may be tried again in all `scopes` (0: now)."""
    now = time.time() if now is None else now
    waits = []
    for scope in scopes:
        failures, last = _state(scope)
        waits.append(last + backoff_seconds(failures, scope.free) - now)
    return max([0.0, *waits])


def _remember_failure(scopes: list[Scope]) -> None:
    now = time.time()
    memory = settings.LOGIN_MAX_BACKOFF_SECONDS + 24 * 3600  # a slow guesser keeps their back-off for a day
    for scope in scopes:
        failures, _ = _state(scope)
        cache.set(scope.key, (failures + 1, now), memory)


def _forget(scopes: list[Scope]) -> None:
    cache.delete_many([s.key for s in scopes])


DEVICE_COOKIE = "cxr_login_device"
DEVICE_SALT = "core.security.login-device"
DEVICE_COOKIE_ACCOUNTS = 8  # a shared reading station remembers the last few accounts that logged in on it


def _devices(request) -> dict[str, str]:
    raw = request.COOKIES.get(DEVICE_COOKIE, "") if request is not None else ""
    try:
        devices = signing.loads(raw, salt=DEVICE_SALT, max_age=400 * 24 * 3600) if raw else {}
    except signing.BadSignature:
        return {}
    return devices if isinstance(devices, dict) else {}


def scopes_for(request, username: str) -> list[Scope]:
    """What one login attempt counts against. A browser that logged in to this account before (its signed cookie
    names the account) is counted on its own; any other attempt counts against the account, whoever makes it, and
    against the client's address, whatever account it tries."""
    name = normalize_username(username)
    device = _devices(request).get(name)
    if device:
        return [Scope("device", device, settings.LOGIN_MAX_FAILURES)]
    return [Scope("user", name, settings.LOGIN_MAX_FAILURES),
            Scope("address", client_address(request), settings.LOGIN_MAX_FAILURES * 4)]


def remember_device(request, response, username: str) -> None:
    """After a successful login: this browser is known to the account from now on (its own throttle count)."""
    name = normalize_username(username)
    devices = {k: v for k, v in _devices(request).items() if k != name}
    devices[name] = secrets.token_urlsafe(16)
    devices = dict(list(devices.items())[-DEVICE_COOKIE_ACCOUNTS:])
    response.set_cookie(DEVICE_COOKIE, signing.dumps(devices, salt=DEVICE_SALT), max_age=365 * 24 * 3600,
                        secure=settings.SESSION_COOKIE_SECURE, httponly=True, samesite="Lax")


class ThrottleMixin:
    """Refuses a login while its back-off lasts, before the password is even looked at; counts each failure."""

    def clean(self):
        username = self.data.get("username", "")
        scopes = scopes_for(self.request, username)
        wait = wait_seconds(scopes)
        if wait > 0:
            raise ValidationError(
                f"Too many failed logins for this account or from this address: try again in {_duration(wait)}.",
                code="throttled")
        try:
            cleaned = super().clean()
        except ValidationError:
            _remember_failure(scopes)
            raise
        _forget([s for s in scopes if s.kind != "address"])  # the address keeps its count: it may try many accounts
        return cleaned


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.999)
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = (seconds + 59) // 60
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


class ThrottledAuthenticationForm(ThrottleMixin, AuthenticationForm):
    """Django's login form, throttled."""


class ThrottledAdminAuthenticationForm(ThrottleMixin, AdminAuthenticationForm):
    """The admin's (staff only), throttled the same way; /admin/login/ itself sends people to the one login page."""


class ThrottledLoginView(LoginView):
    authentication_form = ThrottledAuthenticationForm

    def form_valid(self, form):
        response = super().form_valid(form)
        remember_device(self.request, response, form.cleaned_data.get("username", ""))
        return response


def admin_login(request):
    """/admin/login/ is the one login page (throttled, followed by the second factor), not a second door."""
    target = request.GET.get("next") or reverse("admin:index")
    return HttpResponseRedirect(f"{reverse(settings.LOGIN_URL)}?{urlencode({'next': target})}")
