"""The idle timeout of shared stations: a session that saw no request for CXR_IDLE_TIMEOUT_MINUTES is signed out.

The last request's time is kept in the session, written at most once a minute (a write per request would cost every
reading step a query). The reading screen sends its heartbeat only while the reader is active, so a station left
alone times out; its text is not lost: the screen keeps every unsaved edit in the browser's localStorage until the
server confirms it, and sends it once the reader has logged in again (reading/autosave.js).
"""
from __future__ import annotations

import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import JsonResponse

SEEN_KEY = "cxr_seen_at"
WRITE_EVERY_SECONDS = 60


def mark_seen(session, now: float | None = None) -> None:
    session[SEEN_KEY] = int(time.time() if now is None else now)


def _is_api(request) -> bool:
    return request.path_info.startswith("/api/")


class IdleTimeoutMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        minutes = settings.CXR_IDLE_TIMEOUT_MINUTES
        session = getattr(request, "session", None)
        if minutes and session is not None and session.get("_auth_user_id"):
            now = time.time()
            seen = session.get(SEEN_KEY)
            if seen is not None and now - seen > minutes * 60:
                logout(request)
                text = (f"You were signed out after {minutes} minutes without activity; log in again. "
                        "Text typed on the reading screen is kept in this browser and sent once you are back.")
                if _is_api(request):
                    return JsonResponse({"detail": text, "code": "idle_timeout"}, status=401)
                messages.info(request, text)
                return redirect_to_login(request.get_full_path())
            if seen is None or now - seen >= WRITE_EVERY_SECONDS:
                mark_seen(session, now)
        return self.get_response(request)
