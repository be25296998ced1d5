"""A small async cache: in memory (embedded) or Redis, with invalidation by prefix.

Prefix invalidation never scans keys: each prefix has a generation number that is
part of every key stored under it; invalidating the prefix bumps the generation,
so the old entries are never read again and expire by their TTL.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("ultramarket.cache")
T = TypeVar("T")


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl: int) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def incr(self, key: str) -> int: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...


class MemoryCache:
    def __init__(self, max_entries: int = 50_000) -> None:
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries

    async def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if expires and expires < time.monotonic():
            self._data.pop(key, None)
            return None
        self._data.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        self._data[key] = (time.monotonic() + ttl if ttl else 0.0, value)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def incr(self, key: str) -> int:
        current = await self.get(key)
        value = int(current or 0) + 1
        self._data[key] = (0.0, str(value).encode())
        return value

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._data.clear()


class RedisCache:
    def __init__(self, url: str, namespace: str = "um") -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=100, timeout=5, socket_timeout=2, socket_connect_timeout=2
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._ns = namespace

    def _k(self, key: str) -> str:
        return f"{self._ns}:{key}"

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(self._k(key))
        if value is None or isinstance(value, bytes):
            return value
        return str(value).encode()

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        await self._redis.set(self._k(key), value, ex=ttl or None)

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._k(key))

    async def incr(self, key: str) -> int:
        return int(await self._redis.incr(self._k(key)))

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


@dataclass(frozen=True)
class Slot:
    """What ``KeyedCache.lookup`` found, and where a value computed on a miss goes: under
    the generation the lookup read. A value loaded while a write invalidated the prefix
    lands in the old generation, never read again; stored under the new one it would be
    served stale until its TTL."""

    value: bytes | None
    key: str | None  # None: the cache did not answer, nothing is stored
    cache: KeyedCache

    async def store(self, value: bytes, ttl: int = 300) -> None:
        if self.key is not None:
            await self.cache._call(self.cache.backend.set(self.key, value, ttl))


class KeyedCache:
    """Namespaced keys with prefix generations, on top of any ``Cache``.

    A cache that does not answer (Redis down) is a miss, not an error: reads go to the
    database, which is what the cache is in front of."""

    def __init__(self, backend: Cache) -> None:
        self.backend = backend

    async def _call(self, operation: Awaitable[T]) -> T | None:
        try:
            return await operation
        except (RedisError, OSError) as exc:
            log.warning("cache unavailable", extra={"error": repr(exc)})
            return None

    async def _generation(self, prefix: str) -> str:
        value = await self.backend.get(f"gen:{prefix}")
        return value.decode() if value else "0"

    async def key(self, prefix: str, key: str) -> str:
        return f"{prefix}:{await self._generation(prefix)}:{key}"

    async def lookup(self, prefix: str, key: str) -> Slot:
        """The value under ``key`` (None on a miss), and the slot to store one in."""
        full = await self._call(self.key(prefix, key))
        if full is None:
            return Slot(None, None, self)
        return Slot(await self._call(self.backend.get(full)), full, self)

    async def get(self, prefix: str, key: str) -> bytes | None:
        return (await self.lookup(prefix, key)).value

    async def set(self, prefix: str, key: str, value: bytes, ttl: int = 300) -> None:
        """Store a value that was not loaded after a ``lookup`` (use its slot for those)."""
        await (await self.lookup(prefix, key)).store(value, ttl)

    async def invalidate_prefix(self, prefix: str) -> None:
        # Not swallowed: a write whose invalidation failed says so (its after-commit
        # callback logs it), and the entries expire by their TTL.
        await self.backend.incr(f"gen:{prefix}")


def make_cache(url: str, namespace: str = "um") -> Cache:
    if url.startswith("memory"):
        return MemoryCache()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisCache(url, namespace)
    raise ValueError(f"unsupported cache URL scheme: {url.split(':', 1)[0]}")
