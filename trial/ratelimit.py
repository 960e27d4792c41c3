"""Per-key request rate limits over Django's cache, for what hospital systems send in (STOW-RS, per site; the DICOM
listener may use it per calling AE title): a count per key in fixed one-minute windows.

With a shared cache (Redis: settings.CACHES from CACHE_URL) every web process counts into one total; with the
in-process default (LocMemCache) each process counts its own, so the limit holds per process. A fixed window lets a
burst of up to twice the limit straddle two windows; that is enough to keep one misbehaving sender (a PACS retrying
in a loop) from crowding out the others, which is what it is for. If the cache cannot be reached the request is let
through (logged): a limit is a guard, and failing closed would stop every site's images with the cache.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.core.cache import cache

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60


def _now() -> float:
    # The real time, as core.security's login throttle reads it (a simulated trial clock does not slow a sender).
    return time.time()


@dataclass(frozen=True)
class Hit:
    """One request counted against a key's limit."""

    allowed: bool
    count: int          # requests in this window, this one included
    limit: int
    retry_after: int    # seconds until the window ends (the Retry-After of a refusal)

    @property
    def first_refusal(self) -> bool:
        """The first request refused in this window (to note once, not once per refused request)."""
        return self.count == self.limit + 1


def _window(now: float) -> tuple[int, int]:
    index = int(now // WINDOW_SECONDS)
    return index, max(1, int((index + 1) * WINDOW_SECONDS - now + 0.999))


def _cache_key(key: str, index: int) -> str:
    return f"ratelimit:{key}:{index}"


def hit(key: str, *, per_minute: int, now: float | None = None) -> Hit:
    """Count one request for `key` and say whether it is within `per_minute` (0 or less: no limit)."""
    index, retry_after = _window(_now() if now is None else now)
    if per_minute <= 0:
        return Hit(True, 0, per_minute, retry_after)
    name = _cache_key(key, index)
    try:
        # add() then incr(): atomic on Redis and within one LocMemCache; the key outlives its window a little.
        cache.add(name, 0, timeout=2 * WINDOW_SECONDS)
        try:
            count = cache.incr(name)
        except ValueError:  # expired (or evicted) between the two calls
            cache.set(name, 1, timeout=2 * WINDOW_SECONDS)
            count = 1
    except Exception:  # noqa: BLE001 - the cache is down: let the request through, say so
        logger.warning("Rate limit for %s not checked: the cache is unavailable", key, exc_info=True)
        return Hit(True, 0, per_minute, retry_after)
    return Hit(count <= per_minute, count, per_minute, retry_after)


def allow(key: str, *, per_minute: int) -> bool:
    """Count one request for `key`: True while within `per_minute` in the current minute."""
    return hit(key, per_minute=per_minute).allowed
