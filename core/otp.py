"""The second factor's door: who must give one (decided once at login, by CXR_SECOND_FACTOR_POLICY) is sent to the
second-factor page before anything else, until they have given it in this session.

The devices themselves are django-otp's (TOTP and static recovery codes); enrolment and verification pages live with
the accounts' services (trial.account_views), which write the audit events. Here: the session's state, read without a
query on every request, and the enrolment QR code drawn locally as an inline SVG (no CDN: the CSP stays
`script-src 'self'`, and `img-src` allows data: URIs).
"""
from __future__ import annotations

import base64
import io

from django.conf import settings
from django.contrib.auth.middleware import get_user
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils.functional import SimpleLazyObject
from django.utils.http import urlencode
from django.utils.module_loading import import_string

from .sessions import mark_seen

REQUIRED_KEY = "cxr_second_factor_required"  # bool, decided at login
VERIFIED_KEY = "cxr_second_factor"           # the persistent id of the device that verified this session

# Pages a person who still owes the second factor may open (by URL name); everything else sends them there.
# (Not the password change: a stolen password alone must not be able to change the password.)
OPEN_URL_NAMES = ("second_factor_verify", "second_factor_setup", "second_factor_recovery_codes", "logout", "login",
                  "healthz")


class SecondFactorMissing(PermissionDenied):
    """Raised where a page finds that this session owes a second factor (trial.access.SecondFactorRequired)."""


def requires_second_factor(user) -> bool:
    return bool(import_string(settings.CXR_SECOND_FACTOR_POLICY)(user))


def on_login(sender, request, user, **kwargs):
    """user_logged_in: a new session starts unverified, its need for a second factor decided now (one query)."""
    session = getattr(request, "session", None)
    if session is None:
        return
    from django_otp import user_has_device

    session.pop(VERIFIED_KEY, None)
    # Whoever has an authenticator uses it, required or not (a reader may enrol on their own).
    session[REQUIRED_KEY] = requires_second_factor(user) or user_has_device(user)
    mark_seen(session)


def mark_verified(request, device) -> None:
    """The session has given its second factor (with `device`); a new session key, as at login."""
    request.session.cycle_key()
    request.session[VERIFIED_KEY] = device.persistent_id
    request.session[REQUIRED_KEY] = True
    if getattr(request, "user", None) is not None:
        request.user.second_factor_verified = True


def recheck(request) -> None:
    """Decide the session's need again (after its user gained a role, e.g. by accepting an invitation)."""
    if request.user.is_authenticated:
        request.session[REQUIRED_KEY] = requires_second_factor(request.user)


def session_verified(request) -> bool:
    return bool(request.session.get(VERIFIED_KEY))


def _open_paths() -> tuple[str, ...]:
    return tuple(reverse(name) for name in OPEN_URL_NAMES)


class SecondFactorMiddleware:
    """After AuthenticationMiddleware. Marks request.user with `second_factor_verified` (from the session, no query;
    trial.access refuses a trial whose roles need the factor to an unverified user, whatever this session decided at
    login), and sends a session that owes its second factor to the second-factor page (an API call gets a 403)."""

    def __init__(self, get_response):
        self.get_response = get_response
        self._open = None

    def __call__(self, request):
        request.user = SimpleLazyObject(lambda: self._mark(request))
        session = getattr(request, "session", None)
        if (session is not None and session.get("_auth_user_id") and session.get(REQUIRED_KEY)
                and not session.get(VERIFIED_KEY)):
            if self._open is None:
                self._open = _open_paths()
            path = request.path_info
            if path not in self._open:  # (static files are served before this, by whitenoise)
                if path.startswith("/api/"):
                    return JsonResponse({"detail": "Give your second factor first (log in again in the browser).",
                                         "code": "second_factor_required"}, status=403)
                return _to_second_factor(request)
        return self.get_response(request)

    def process_exception(self, request, exception):
        # A role gained since login (or a trial that now asks readers too): the factor is owed from now on.
        if isinstance(exception, SecondFactorMissing) and not request.path_info.startswith("/api/"):
            request.session[REQUIRED_KEY] = True
            return _to_second_factor(request)
        return None

    @staticmethod
    def _mark(request):
        user = get_user(request)
        if user.is_authenticated:
            user.second_factor_verified = bool(request.session.get(VERIFIED_KEY))
        return user


def _to_second_factor(request):
    target = urlencode({"next": request.get_full_path()})
    return HttpResponseRedirect(f"{reverse('second_factor_verify')}?{target}")


def qr_data_uri(text: str) -> str:
    """`text` (an otpauth:// URI) as a QR code in an SVG data URI, for an <img> tag: drawn here, never fetched."""
    import segno

    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="svg", scale=5, border=2, xmldecl=False)
    return "data:image/svg+xml;base64," + base64.b64encode(out.getvalue()).decode()
