"""The API's token authentication (`Authorization: Bearer <key>`): trial.ApiToken, a key of one person in one trial.

Chosen over DRF's authtoken (plain keys in the database, no expiry, every trial at once, minted for anyone in the
admin) and over a package (django-rest-knox hashes and expires, but knows nothing of a trial): one small model, and
this class. The key is looked up by its SHA-256 (a random 256-bit key needs no slow hash); a token reaches only
its own trial: the trial the URL names, or the trial of the object it names (CXR_API_TOKEN_OBJECT_SCOPES); an API
URL that names something else is refused to tokens. The user it gives carries the scope (`api_token_trial_id`),
which trial.access applies as well, and counts as having given a second factor: the token was made in a session
that had.
"""
from __future__ import annotations

from django.apps import apps
from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import SAFE_METHODS

from . import selectors, services
from .access import NO_ACCESS

KEYWORDS = (b"bearer", b"token")


def _url_trial_ok(request, token) -> bool:
    kwargs = (getattr(request, "parser_context", None) or {}).get("kwargs") or {}
    if "code" in kwargs:
        return kwargs["code"] == token.trial.code
    for name, value in kwargs.items():
        scope = settings.CXR_API_TOKEN_OBJECT_SCOPES.get(name)
        if scope is not None:
            label, field, trial_field = scope
            trial_id = (apps.get_model(label).objects.filter(**{field: value})
                        .values_list(trial_field, flat=True).first())
            return trial_id == token.trial_id
    # A URL of no trial at all: reading (the list of one's trials, which the token narrows to its own); a write there
    # (a new trial) is outside every trial's scope.
    return not kwargs and request.method in SAFE_METHODS


class ApiTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() not in KEYWORDS:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Give the token as “Authorization: Bearer <key>”.")
        try:
            key = header[1].decode()
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("This token is not valid.") from exc
        token = selectors.api_token_for_key(key=key)
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("This token is not valid (unknown, revoked or expired).")
        if not _url_trial_ok(request, token):
            raise exceptions.PermissionDenied(NO_ACCESS)
        services.note_token_use(token=token)
        user = token.user
        user.api_token_trial_id = token.trial_id
        user.second_factor_verified = True
        return user, token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes the token (drf-spectacular finds it by its target class)."""

    target_class = "trial.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "A token of one trial, made on your account page; it expires."}
