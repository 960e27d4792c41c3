"""Security pieces that Django 5.2 lacks built in: a content security policy header and login throttling."""
from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.core.exceptions import ValidationError

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


def _key(username: str, ip: str) -> str:
    digest = hashlib.sha256(f"{username.lower()}|{ip}".encode()).hexdigest()
    return f"login-failures:{digest}"


class ThrottledAuthenticationForm(AuthenticationForm):
    """After LOGIN_MAX_FAILURES failed attempts for one username from one address, refuse for a while,
    even with the right password, so that passwords cannot be guessed at speed."""

    def clean(self):
        username = self.data.get("username", "")
        ip = self.request.META.get("REMOTE_ADDR", "") if self.request else ""
        key = _key(username, ip)
        if cache.get(key, 0) >= settings.LOGIN_MAX_FAILURES:
            minutes = settings.LOGIN_LOCKOUT_SECONDS // 60
            raise ValidationError(f"Too many failed logins: try again in {minutes} minutes.", code="throttled")
        try:
            return super().clean()
        except ValidationError:
            cache.add(key, 0, settings.LOGIN_LOCKOUT_SECONDS)
            cache.incr(key)
            raise

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        cache.delete(_key(self.data.get("username", ""), self.request.META.get("REMOTE_ADDR", "")))


class ThrottledLoginView(LoginView):
    authentication_form = ThrottledAuthenticationForm
