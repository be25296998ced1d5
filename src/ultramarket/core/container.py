"""The application container: every long-lived part, built once at start-up.

Which database, cache, bus and transport a service uses is configuration only;
the same service code runs all-in-one (one process, embedded parts) and split.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import Request

from ultramarket.core.cache import Cache, KeyedCache, make_cache
from ultramarket.core.clients import C, ClientFactory, InProcessClient, ServiceClient
from ultramarket.core.config import Settings
from ultramarket.core.db import Database
from ultramarket.core.events import (
    Dispatcher,
    EventBus,
    EventPublisher,
    EventTables,
    InProcessBus,
    OutboxRelay,
    OutboxSource,
)
from ultramarket.core.mail import Mailer, make_mailer
from ultramarket.core.ratelimit import RateLimiter
from ultramarket.core.security import Principal, TokenVerifier
from ultramarket.core.service import ServiceSpec

log = logging.getLogger("ultramarket.container")


@dataclass
class Container:
    settings: Settings
    specs: dict[str, ServiceSpec]
    databases: dict[str, Database]
    cache_backend: Cache
    cache: KeyedCache
    limiter: RateLimiter
    verifier: TokenVerifier
    mailer: Mailer
    dispatcher: Dispatcher
    bus: EventBus
    relay: OutboxRelay
    clients: ClientFactory
    # Set by the auth service when it runs in this process: mints service tokens.
    service_token_minter: Callable[[str], str] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    _relay_task: asyncio.Task[None] | None = None
    _periodic_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _service_tokens: dict[str, tuple[str, float]] = field(default_factory=dict)

    # -- lookups ------------------------------------------------------------------

    def db(self, service: str) -> Database:
        return self.databases[service]

    def events(self, service: str) -> EventTables:
        return self.specs[service].events

    def publisher(self, service: str) -> EventPublisher:
        return EventPublisher(self.specs[service].events)

    def client(self, cls: type[C], caller: str) -> C:
        """The typed client of another service, as used by the service ``caller``."""
        return self.clients.get(cls, caller)

    async def principal_hook(self, request: Request, principal: Principal) -> None:
        if principal.kind == "user":
            await self.limiter.hit(
                self.settings.rate_limits.default_per_user, "user", principal.subject
            )

    async def service_token(self, caller: str) -> str:
        """A short-lived token that says which service is calling."""
        cached = self._service_tokens.get(caller)
        if cached and cached[1] > time.monotonic() + 30:
            return cached[0]
        ttl = self.settings.auth.service_token_ttl_seconds
        if self.service_token_minter is not None:
            token = self.service_token_minter(caller)
        else:
            token = await self._exchange_api_key()
        self._service_tokens[caller] = (token, time.monotonic() + ttl)
        return token

    async def _exchange_api_key(self) -> str:
        key = self.settings.service_api_key
        if key is None:
            raise RuntimeError(
                "split mode needs ULTRAMARKET_SERVICE_API_KEY to call other services"
            )
        url = self.settings.service_url("auth", 3002) + "/api/v1/auth/token"
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.post(
                url, json={"grant_type": "client_credentials", "api_key": key.get_secret_value()}
            )
            response.raise_for_status()
            return str(response.json()["data"]["access_token"])

    # -- life cycle ---------------------------------------------------------------

    @classmethod
    def build(
        cls,
        settings: Settings,
        specs: Sequence[ServiceSpec],
        *,
        local_app: Callable[[str], Any | None],
        all_schemas: Sequence[str],
    ) -> Container:
        by_name = {spec.name: spec for spec in specs}
        databases: dict[str, Database] = {}
        shared: dict[str, Database] = {}
        for spec in specs:
            url = settings.database_url_for(spec.name)
            if url not in shared:
                shared[url] = Database(
                    url,
                    schemas=all_schemas,
                    pool_size=settings.db_pool_size,
                    max_overflow=settings.db_max_overflow,
                    driver_pool_size=settings.db_driver_pool_size,
                )
            databases[spec.name] = shared[url]
        cache_backend = make_cache(settings.cache_url, settings.redis_namespace)
        limiter = RateLimiter(
            settings.rate_limit_url or settings.cache_url,
            enabled=settings.rate_limits.enabled,
            namespace=settings.redis_namespace,
        )
        verifier = TokenVerifier(
            issuer=settings.auth.issuer,
            audience=settings.auth.audience,
            jwks_url=settings.auth.jwks_url,
        )
        # Development trusts the key files its auth service wrote. Production trusts only
        # the configured keystore (added by the auth service at start-up) and the JWKS:
        # a development key left in the data directory must never verify a token there.
        keys_dir = settings.data_dir / "keys"
        if not settings.is_production and keys_dir.is_dir():
            verifier.add_jwk_files(keys_dir)
        container_ref: list[Container] = []
        subscriptions = [sub for spec in specs for sub in spec.subscriptions()]
        dispatcher = Dispatcher(
            subscriptions,
            databases=lambda name: databases[name],
            tables=lambda name: by_name[name].events,
        )
        bus = make_bus(settings.broker_url, dispatcher)
        relay = OutboxRelay(
            [OutboxSource(s.name, databases[s.name], s.events) for s in specs], bus, settings.events
        )

        async def token(caller: str) -> str:
            return await container_ref[0].service_token(caller)

        def twin(cls: type[ServiceClient]) -> type[InProcessClient] | None:
            spec = by_name.get(cls.service)
            if spec is None or not settings.direct_calls:
                return None
            return spec.twins().get(cls)

        clients = ClientFactory(
            token=token,
            base_url=lambda name: settings.service_url(name, _port(name)),
            local_app=local_app,
            twin=twin,
        )
        container = cls(
            settings=settings,
            specs=by_name,
            databases=databases,
            cache_backend=cache_backend,
            cache=KeyedCache(cache_backend),
            limiter=limiter,
            verifier=verifier,
            mailer=make_mailer(settings),
            dispatcher=dispatcher,
            bus=bus,
            relay=relay,
            clients=clients,
        )
        container_ref.append(container)
        clients.services = container
        dispatcher.services = container
        for db in set(databases.values()):
            db.after_commit_hooks.append(relay.wake)
        return container

    async def start(self, *, run_relay: bool) -> None:
        for spec in self.specs.values():
            if spec.on_startup is not None:
                await spec.on_startup(self)
        if run_relay:
            self._stop.clear()
            self._relay_task = asyncio.create_task(self.relay.run_forever(self._stop))
            self._periodic_tasks.append(
                asyncio.create_task(
                    self._run_periodic(
                        "events:prune", self.settings.events.prune_interval_seconds, _prune
                    )
                )
            )
            for spec in self.specs.values():
                for seconds, job in spec.periodic:
                    name = f"{spec.name}:{getattr(job, '__qualname__', job)}"
                    self._periodic_tasks.append(
                        asyncio.create_task(self._run_periodic(name, seconds, job))
                    )

    async def _run_periodic(
        self, name: str, seconds: float, job: Callable[[Container], Awaitable[None]]
    ) -> None:
        """Run ``job`` every ``seconds`` until stop(); a failing run is logged and retried."""
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=seconds)
                return
            except TimeoutError:
                pass
            try:
                await job(self)
            except Exception:
                log.exception("periodic job failed", extra={"job": name})

    async def stop(self) -> None:
        self._stop.set()
        if self._relay_task is not None:
            try:
                await asyncio.wait_for(self._relay_task, timeout=5)
            except TimeoutError:
                self._relay_task.cancel()
            self._relay_task = None
        for task in self._periodic_tasks:
            # They stop at the next tick of _stop; wait_for cancels one stuck in a run.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(task, timeout=5)
        self._periodic_tasks.clear()
        await self.clients.close()
        await self.bus.close()
        await self.cache_backend.close()
        for db in set(self.databases.values()):
            await db.dispose()

    async def readiness(self) -> dict[str, str]:
        """Check every part in use; each entry is "ok" or the failure."""
        checks: dict[str, Callable[[], Awaitable[None]]] = {
            "cache": self.cache_backend.ping,
            "broker": self.bus.ping,
            "rate_limit": self.limiter.ping,
        }
        for db in set(self.databases.values()):
            checks[f"database:{db.dialect}"] = db.ping
        result: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), timeout=2)
                result[name] = "ok"
            except Exception as exc:
                result[name] = f"down: {type(exc).__name__}"
        return result


def make_bus(url: str, dispatcher: Dispatcher) -> EventBus:
    if url.startswith("memory"):
        return InProcessBus(dispatcher)
    raise ValueError(
        f"broker {url.split(':', 1)[0]!r} is not available yet; use memory:// (in-process)"
    )


def _port(name: str) -> int:
    from ultramarket.core.ports import SERVICE_PORTS

    return SERVICE_PORTS.get(name, 3000)


async def _prune(container: Container) -> None:
    """Published events and processed inbox rows past their retention."""
    deleted = await container.relay.prune()
    if any(deleted.values()):
        log.info("old event rows pruned", extra={"deleted": deleted})
