"""The signed-in user of each request, from the shared cache instead of a query.

Every request of a signed-in user loads that user (Django's ModelBackend.get_user: one query, ~1 ms of ORM
and database time); a reader's autosaves and events are a few milliseconds each, so that query is a large
share of them. With a cache shared by all web processes (settings.AUTH_USER_CACHE_SECONDS > 0, set when
CACHE_URL names one), the user row is cached for a short time. Whenever the user is saved or deleted (a
password change, a deactivation; not the last-login stamp alone) the entry is replaced by a "changed" mark, right
away and again once the change commits, for a few seconds: while it stands, the user is read from the database
and not cached, and entries are only ever added where there is none (cache.add), so a request that read the old row
before the commit cannot put it back. Session verification is unchanged: Django still compares the session's
hash with the user's password hash.

A cache that fails is passed by (logged): the user is read from the database, as cached_db sessions do. What
bypasses model signals (a queryset .update() or raw SQL on the user table), or a change made while the cache
could not be reached, is seen after at most AUTH_USER_CACHE_SECONDS. Not used with the in-process default
cache: another web process would keep a deactivated user.
"""
from __future__ import annotations

import logging

import django
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models.signals import post_delete, post_save

# The Django version is in the key: a pickled model is only read back by the version that wrote it.
_KEY = "auth-user:" + django.get_version() + ":{}"
_CHANGED = "changed"  # the mark of a user saved or deleted lately: read from the database, do not cache

logger = logging.getLogger(__name__)


def _key(user_id) -> str:
    return _KEY.format(int(user_id))


def _cache_call(method: str, *args):
    try:
        return getattr(cache, method)(*args)
    except Exception:  # noqa: BLE001 - any cache failure: the database answers instead
        logger.warning("auth user cache: %s failed; using the database", method, exc_info=True)
        return None


class CachedModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            # Stop here: the plain ModelBackend listed after this one (for sessions signed in before it) would
            # check the same password again, doubling the cost of every failed login.
            raise PermissionDenied
        return user

    def get_user(self, user_id):
        seconds = getattr(settings, "AUTH_USER_CACHE_SECONDS", 0)
        if not seconds:
            return super().get_user(user_id)
        try:
            key = _key(user_id)
        except (TypeError, ValueError, OverflowError):
            return None
        cached = _cache_call("get", key)
        if isinstance(cached, get_user_model()):
            user = cached
        else:
            user = super().get_user(user_id)  # None for an unknown or inactive user: not cached
            if user is not None and cached != _CHANGED:
                _cache_call("add", key, user, seconds)
        return user if self.user_can_authenticate(user) else None


# How long the "changed" mark stands: longer than a request takes between reading the user row and caching it.
CHANGED_MARK_SECONDS = 10


def forget_user(user_id) -> None:
    """Mark the user changed, now and once the change commits (see the module's doc)."""
    key, seconds = _key(user_id), min(CHANGED_MARK_SECONDS, settings.AUTH_USER_CACHE_SECONDS)
    _cache_call("set", key, _CHANGED, seconds)
    transaction.on_commit(lambda: _cache_call("set", key, _CHANGED, seconds))


def _on_user_change(sender, instance, update_fields=None, created=False, **kwargs):
    if created or (update_fields is not None and set(update_fields) <= {"last_login"}):
        return  # nobody can have cached a new user; every login stamps last_login, and no sign-in depends on it
    if getattr(settings, "AUTH_USER_CACHE_SECONDS", 0) and instance.pk is not None:
        forget_user(instance.pk)


def connect_signals() -> None:
    user_model = get_user_model()
    post_save.connect(_on_user_change, sender=user_model, dispatch_uid="core.auth.user_saved")
    post_delete.connect(_on_user_change, sender=user_model, dispatch_uid="core.auth.user_deleted")
