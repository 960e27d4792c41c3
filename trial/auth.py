"""The signed-in user of each request, from the shared cache instead of a query.

Every request of a signed-in user loads that user (Django's ModelBackend.get_user: one query, ~1 ms of ORM
and database time); a reader's autosaves and events are a few milliseconds each, so that query is a large
share of them. With a cache shared by all web processes (settings.AUTH_USER_CACHE_SECONDS > 0, set when
CACHE_URL names one), the user row is cached for a short time and dropped whenever the user is saved or
deleted (a password change, a deactivation, the last-login stamp), right away and again once the change
commits, so that no request re-caches the old row in between. Session verification is unchanged: Django
still compares the session's hash with the cached user's password hash.

What bypasses model signals (a queryset .update() or raw SQL on the user table) is seen after at most
AUTH_USER_CACHE_SECONDS; the project does neither. Not used with the in-process default cache: another web
process would keep a deactivated user.
"""
from __future__ import annotations

import django
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save

# The Django version is in the key: a pickled model is only read back by the version that wrote it.
_KEY = "auth-user:" + django.get_version() + ":{}"


def _key(user_id) -> str:
    return _KEY.format(int(user_id))


class CachedModelBackend(ModelBackend):
    def get_user(self, user_id):
        seconds = getattr(settings, "AUTH_USER_CACHE_SECONDS", 0)
        if not seconds:
            return super().get_user(user_id)
        try:
            key = _key(user_id)
        except (TypeError, ValueError):
            return None
        user = cache.get(key)
        if user is None:
            user = super().get_user(user_id)  # None for an unknown or inactive user: not cached
            if user is not None:
                cache.set(key, user, seconds)
        return user if self.user_can_authenticate(user) else None


def forget_user(user_id) -> None:
    key = _key(user_id)
    cache.delete(key)
    transaction.on_commit(lambda: cache.delete(key))  # a request between now and the commit re-caches the old row


def _on_user_change(sender, instance, **kwargs):
    if getattr(settings, "AUTH_USER_CACHE_SECONDS", 0) and instance.pk is not None:
        forget_user(instance.pk)


def connect_signals() -> None:
    user_model = get_user_model()
    post_save.connect(_on_user_change, sender=user_model, dispatch_uid="trial.auth.user_saved")
    post_delete.connect(_on_user_change, sender=user_model, dispatch_uid="trial.auth.user_deleted")
