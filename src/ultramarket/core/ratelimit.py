"""Rate limiting on the ``limits`` library: memory by default, Redis when configured."""

from __future__ import annotations

import math
import time
from typing import Any

import redis.asyncio as aioredis
from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from ultramarket.core.errors import RateLimited

REDIS_MAX_CONNECTIONS = 100


def _storage_uri(url: str) -> str:
    if url.startswith("memory"):
        return "async+memory://"
    if url.startswith(("redis://", "rediss://")):
        return "async+" + url
    return url


class RateLimiter:
    """Checks and counts hits against named rules ("30/minute;500/hour")."""

    def __init__(
        self, url: str = "memory://", *, enabled: bool = True, namespace: str = "um"
    ) -> None:
        uri = _storage_uri(url)
        options: dict[str, Any] = {}
        if "redis" in uri:
            options = {
                "implementation": "redispy",
                "key_prefix": f"{namespace}:limits",
                # Wait for a free connection under bursts instead of failing the request.
                "connection_pool": aioredis.BlockingConnectionPool.from_url(
                    url, max_connections=REDIS_MAX_CONNECTIONS, timeout=5
                ),
            }
        storage = storage_from_string(uri, **options)
        assert isinstance(storage, Storage), "rate limit storage must be an async one"
        self.storage = storage
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.enabled = enabled
        self._parsed: dict[str, list[RateLimitItem]] = {}

    def _items(self, rule: str) -> list[RateLimitItem]:
        items = self._parsed.get(rule)
        if items is None:
            items = self._parsed[rule] = parse_many(rule)
        return items

    async def _retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        stats = await self.strategy.get_window_stats(item, *identifiers)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def hit(self, rule: str, *identifiers: str, message: str | None = None) -> None:
        """Count one hit; raise ``RateLimited`` (429 + Retry-After) once over the rule."""
        if not self.enabled:
            return
        for item in self._items(rule):
            if not await self.strategy.hit(item, *identifiers):
                raise RateLimited(await self._retry_after(item, *identifiers), message)

    async def check(self, rule: str, *identifiers: str, message: str | None = None) -> None:
        """Raise ``RateLimited`` if the rule is exhausted, without counting a hit."""
        if not self.enabled:
            return
        for item in self._items(rule):
            if not await self.strategy.test(item, *identifiers):
                raise RateLimited(await self._retry_after(item, *identifiers), message)

    async def count(self, rule: str, *identifiers: str) -> None:
        """Count one hit without raising (e.g. a failed login)."""
        if not self.enabled:
            return
        for item in self._items(rule):
            await self.strategy.hit(item, *identifiers)

    async def reset(self, rule: str, *identifiers: str) -> None:
        for item in self._items(rule):
            await self.strategy.clear(item, *identifiers)

    async def ping(self) -> None:
        if not await self.storage.check():
            raise ConnectionError("rate limit storage unreachable")
