"""Rate limiting on the ``limits`` library: memory by default, Redis when configured.

A limit store that does not answer (Redis down) lets requests through, with a warning
in the log and ``/ready`` saying so: limits protect the shop, and a shop that refuses
every request while its limiter is away is down for everyone."""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Awaitable
from typing import Any

import redis.asyncio as aioredis
from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from ultramarket.core.errors import RateLimited

REDIS_MAX_CONNECTIONS = 100
log = logging.getLogger("ultramarket.ratelimit")


def _storage_uri(url: str) -> str:
    if url.startswith("memory"):
        return "async+memory://"
    if url.startswith(("redis://", "rediss://")):
        return "async+" + url
    return url


def client_key(ip: str) -> str:
    """What per-address limits count against: an IPv4 address as it is, an IPv6 one by
    its /64 network - one subscriber's prefix, from which a client can pick a new address
    for every request - and an IPv4-mapped IPv6 address as its IPv4 address. Anything
    else (``unknown``, a test client's name) as it is."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return ip


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
                "wrap_exceptions": True,  # a StorageError, whatever the client raised
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

    async def _allows(self, step: Awaitable[bool]) -> bool:
        try:
            return await step
        except StorageError as exc:
            log.warning("rate limit store unavailable; request let through", exc_info=exc)
            return True

    async def hit(self, rule: str, *identifiers: str, message: str | None = None) -> None:
        """Count one hit; raise ``RateLimited`` (429 + Retry-After) once over the rule."""
        if not self.enabled:
            return
        for item in self._items(rule):
            if not await self._allows(self.strategy.hit(item, *identifiers)):
                raise RateLimited(await self._retry_after(item, *identifiers), message)

    async def check(self, rule: str, *identifiers: str, message: str | None = None) -> None:
        """Raise ``RateLimited`` if the rule is exhausted, without counting a hit."""
        if not self.enabled:
            return
        for item in self._items(rule):
            if not await self._allows(self.strategy.test(item, *identifiers)):
                raise RateLimited(await self._retry_after(item, *identifiers), message)

    async def count(self, rule: str, *identifiers: str) -> None:
        """Count one hit without raising (e.g. a failed login)."""
        if not self.enabled:
            return
        for item in self._items(rule):
            await self._allows(self.strategy.hit(item, *identifiers))

    async def reset(self, rule: str, *identifiers: str) -> None:
        for item in self._items(rule):
            await self.strategy.clear(item, *identifiers)

    async def ping(self) -> None:
        if not await self.storage.check():
            raise ConnectionError("rate limit storage unreachable")
