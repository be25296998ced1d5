"""The keyed cache against the races and outages a shop meets: a value loaded while a
write invalidated its prefix, and a cache server that does not answer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import RedisError
from tests.conftest import HAVE_REDIS, REDIS_URL

from ultramarket.core.cache import KeyedCache, MemoryCache, RedisCache

BACKENDS = [
    "memory",
    pytest.param("redis", marks=pytest.mark.skipif(not HAVE_REDIS, reason="Redis is not running")),
]


@pytest.fixture(params=BACKENDS)
async def keyed(request: pytest.FixtureRequest) -> AsyncIterator[KeyedCache]:
    backend = MemoryCache() if request.param == "memory" else RedisCache(REDIS_URL)
    yield KeyedCache(backend)
    await backend.close()


async def test_a_value_loaded_across_an_invalidation_is_not_served(keyed: KeyedCache) -> None:
    """A read misses and loads the old value; a write commits and invalidates; then the
    read stores what it loaded. It lands under the generation the read saw, so the next
    read misses instead of serving the old value until its TTL."""
    prefix = f"product:{uuid.uuid4().hex}"
    slot = await keyed.lookup(prefix, "p1")
    assert slot.value is None
    await keyed.invalidate_prefix(prefix)  # the write
    await slot.store(b"price 10.00", ttl=60)  # the read, late
    assert await keyed.get(prefix, "p1") is None
    fresh = await keyed.lookup(prefix, "p1")
    await fresh.store(b"price 99.00", ttl=60)
    assert await keyed.get(prefix, "p1") == b"price 99.00"


async def test_a_cache_that_does_not_answer_is_a_miss() -> None:
    backend = RedisCache("redis://127.0.0.1:1/0")  # nothing listens there
    keyed = KeyedCache(backend)
    slot = await keyed.lookup("product", "p1")
    assert (slot.value, await keyed.get("product", "p1")) == (None, None)
    await slot.store(b"v", ttl=60)  # dropped, not raised
    await keyed.set("product", "p1", b"v")
    with pytest.raises(RedisError):  # a write's invalidation does say it failed
        await keyed.invalidate_prefix("product")
    await backend.close()
