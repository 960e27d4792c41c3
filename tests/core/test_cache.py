"""core.cache: one Redis client per pool, not one per cache operation."""
from __future__ import annotations

import pytest

from core.cache import RedisCache


def test_the_redis_client_is_built_once_and_works():
    redis = pytest.importorskip("redis")
    cache = RedisCache("redis://127.0.0.1:6379/15", {"KEY_PREFIX": "cxr-test-cache"})
    try:
        cache.set("k", {"v": 1}, 30)
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    client = cache._cache.get_client()
    assert cache._cache.get_client() is client and cache._cache.get_client("k", write=True) is client
    assert cache.get("k") == {"v": 1}
    cache.delete("k")
    assert cache.get("k") is None
