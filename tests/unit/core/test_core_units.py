"""Unit tests of the platform kit: cache, rate limiter, permissions, settings and the
service-to-service client."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError
from tests.conftest import HAVE_REDIS, REDIS_URL

from ultramarket.core.cache import KeyedCache, MemoryCache, RedisCache, make_cache
from ultramarket.core.clients import HttpTransport, ServiceClient
from ultramarket.core.config import DEV_SECRET, AuthSettings, MailSettings, Settings
from ultramarket.core.errors import (
    Conflict,
    DomainError,
    NotFound,
    Unavailable,
    ValidationFailed,
)
from ultramarket.core.logging import request_id_var
from ultramarket.core.ratelimit import RateLimiter, client_key
from ultramarket.core.security import grants

BACKENDS = [
    "memory",
    pytest.param("redis", marks=pytest.mark.skipif(not HAVE_REDIS, reason="Redis is not running")),
]


# -- cache ---------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
async def keyed(request: pytest.FixtureRequest) -> AsyncIterator[KeyedCache]:
    backend = MemoryCache() if request.param == "memory" else RedisCache(REDIS_URL)
    await backend.ping()
    yield KeyedCache(backend)
    await backend.close()


async def test_keyed_cache_get_set(keyed: KeyedCache) -> None:
    prefix = f"product:{uuid.uuid4().hex}"
    assert await keyed.get(prefix, "a") is None
    await keyed.set(prefix, "a", b"alpha", ttl=60)
    await keyed.set(prefix, "b", b"beta")
    assert await keyed.get(prefix, "a") == b"alpha"
    assert await keyed.get(prefix, "b") == b"beta"
    await keyed.set(prefix, "a", b"alpha2", ttl=60)
    assert await keyed.get(prefix, "a") == b"alpha2"
    await keyed.backend.delete(await keyed.key(prefix, "b"))
    assert await keyed.get(prefix, "b") is None


async def test_keyed_cache_invalidate_prefix(keyed: KeyedCache) -> None:
    prefix = f"category:{uuid.uuid4().hex}"
    other = f"{prefix}x"  # shares the text prefix but is a different namespace
    await keyed.set(prefix, "tree", b"v1")
    await keyed.set(prefix, "list", b"v1")
    await keyed.set(other, "tree", b"keep")
    await keyed.invalidate_prefix(prefix)
    assert await keyed.get(prefix, "tree") is None
    assert await keyed.get(prefix, "list") is None
    assert await keyed.get(other, "tree") == b"keep"
    await keyed.set(prefix, "tree", b"v2")
    assert await keyed.get(prefix, "tree") == b"v2"
    await keyed.invalidate_prefix(prefix)
    await keyed.invalidate_prefix(prefix)
    assert await keyed.get(prefix, "tree") is None


async def test_memory_cache_expires_and_evicts(monkeypatch: pytest.MonkeyPatch) -> None:
    import ultramarket.core.cache as cache_module

    now = [1000.0]
    monkeypatch.setattr(cache_module.time, "monotonic", lambda: now[0])
    cache = MemoryCache(max_entries=2)
    await cache.set("a", b"1", ttl=10)
    await cache.set("forever", b"f", ttl=0)
    now[0] += 11
    assert await cache.get("a") is None
    assert await cache.get("forever") == b"f"
    await cache.set("b", b"2", ttl=10)
    await cache.set("c", b"3", ttl=10)  # over max_entries: the oldest goes
    assert await cache.get("forever") is None
    assert await cache.get("c") == b"3"
    assert await cache.incr("n") == 1
    assert await cache.incr("n") == 2


def test_make_cache_by_url() -> None:
    assert isinstance(make_cache("memory://"), MemoryCache)
    assert isinstance(make_cache("redis://127.0.0.1:6379/15"), RedisCache)
    with pytest.raises(ValueError, match="unsupported"):
        make_cache("memcached://localhost")


# -- rate limiter --------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    return RateLimiter("memory://" if request.param == "memory" else REDIS_URL)


async def test_rate_limiter_hit_raises_once_over(limiter: RateLimiter) -> None:
    key = uuid.uuid4().hex
    for _ in range(3):
        await limiter.hit("3/hour", "ip", key)
    with pytest.raises(DomainError) as caught:
        await limiter.hit("3/hour", "ip", key, message="Slow down")
    exc = caught.value
    assert exc.status_code == 429
    assert exc.code == "RATE_LIMITED"
    assert exc.message == "Slow down"
    assert 1 <= exc.retry_after <= 3600  # type: ignore[attr-defined]
    assert int(exc.headers["Retry-After"]) >= 1
    # Another identifier has its own budget.
    await limiter.hit("3/hour", "ip", uuid.uuid4().hex)
    await limiter.ping()


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("unknown", "unknown"),
        ("testclient", "testclient"),
    ],
)
def test_rate_limit_key_of_an_address(address: str, key: str) -> None:
    assert client_key(address) == key


async def test_rate_limiter_check_does_not_count(limiter: RateLimiter) -> None:
    key = uuid.uuid4().hex
    for _ in range(5):
        await limiter.check("2/hour", "login", key)
    await limiter.count("2/hour", "login", key)
    await limiter.check("2/hour", "login", key)
    await limiter.count("2/hour", "login", key)
    await limiter.count("2/hour", "login", key)  # count never raises
    with pytest.raises(DomainError) as caught:
        await limiter.check("2/hour", "login", key)
    assert caught.value.retry_after >= 1  # type: ignore[attr-defined]
    await limiter.reset("2/hour", "login", key)
    await limiter.check("2/hour", "login", key)
    await limiter.hit("2/hour", "login", key)


async def test_rate_limiter_applies_every_rule(limiter: RateLimiter) -> None:
    key = uuid.uuid4().hex
    rule = "100/hour;2/day"
    await limiter.hit(rule, "x", key)
    await limiter.hit(rule, "x", key)
    with pytest.raises(DomainError) as caught:
        await limiter.hit(rule, "x", key)
    assert caught.value.retry_after >= 1  # type: ignore[attr-defined]


async def test_disabled_rate_limiter_never_raises() -> None:
    limiter = RateLimiter("memory://", enabled=False)
    for _ in range(5):
        await limiter.hit("1/minute", "ip", "a")
        await limiter.check("1/minute", "ip", "a")


# -- permissions ---------------------------------------------------------------------


def test_grants() -> None:
    assert grants(["*"], "product:write")
    assert grants(["*"], "order:read:any")
    assert grants(["product:write"], "product:write")
    assert not grants(["product:write"], "product:read")
    assert not grants(["product:read"], "product:read:any")
    assert grants(["product:*"], "product:write")
    assert grants(["product:*"], "product:read:any")
    assert not grants(["product:*"], "order:read")
    assert not grants(["product:*"], "products:write")
    assert grants(["order:read:*"], "order:read:any")
    assert not grants(["order:read:*"], "order:write")
    assert not grants([], "product:read")
    assert grants(["cart:read", "order:read:own"], "order:read:own")


# -- settings ------------------------------------------------------------------------


PEM = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIP4nB1J0hdCjOa3E2tE4rBfWHvJ9uYkZJSlvQ0W1yQ1c\n-----END PRIVATE KEY-----\n"  # noqa: E501
PG = "postgresql+asyncpg://um:pw@db:5432/ultramarket"


def production(**values: Any) -> Settings:
    values.setdefault("cache_url", "redis://redis:6379/0")
    values.setdefault("mail", MailSettings(backend="smtp", smtp_host="smtp.example.com"))
    values.setdefault("public_url", "https://shop.example.com")
    return Settings(environment="production", _env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(autouse=False)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("ULTRAMARKET_"):
            monkeypatch.delenv(name)


def test_production_refuses_the_default_secret(clean_env: None) -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        production(database_url=PG, auth=AuthSettings(private_key=SecretStr(PEM)))
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        production(
            secret_key=SecretStr(DEV_SECRET),
            database_url=PG,
            auth=AuthSettings(private_key=SecretStr(PEM)),
        )


def test_production_refuses_a_short_secret(clean_env: None) -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        production(
            secret_key=SecretStr("x" * 31),
            database_url=PG,
            auth=AuthSettings(private_key=SecretStr(PEM)),
        )


def test_production_refuses_sqlite_and_missing_keys(clean_env: None) -> None:
    with pytest.raises(ValidationError) as caught:
        production(secret_key=SecretStr("k" * 48))
    text = str(caught.value)
    assert "DATABASE_URL" in text
    assert "PRIVATE_KEY" in text
    assert "k" * 48 not in text  # a secret never appears in the error


def test_production_refuses_process_local_rate_limits(clean_env: None) -> None:
    with pytest.raises(ValidationError) as caught:
        production(
            secret_key=SecretStr("a-proper-random-secret-0123456789abcdef"),
            database_url=PG,
            auth=AuthSettings(private_key=SecretStr(PEM)),
            cache_url="memory://",
        )
    assert "RATE_LIMIT_URL" in str(caught.value)


def test_production_accepts_proper_settings(clean_env: None) -> None:
    settings = production(
        secret_key=SecretStr("a-proper-random-secret-0123456789abcdef"),
        database_url=PG,
        auth=AuthSettings(private_key=SecretStr(PEM)),
    )
    assert settings.is_production
    # Other services need no private key, only where to fetch the public ones.
    production(
        secret_key=SecretStr("b" * 32),
        database_url=PG,
        auth=AuthSettings(jwks_url="http://auth:3002/api/v1/auth/.well-known/jwks.json"),
    )


def proper(**values: Any) -> Settings:
    values.setdefault("secret_key", SecretStr("a-proper-random-secret-0123456789abcdef"))
    values.setdefault("database_url", PG)
    values.setdefault("auth", AuthSettings(private_key=SecretStr(PEM)))
    return production(**values)


@pytest.mark.parametrize("backend", ["file", "console"])
def test_production_refuses_the_local_mail_sink(clean_env: None, backend: str) -> None:
    # Reset and verification links carry raw tokens: never to disk or to the logs.
    with pytest.raises(ValidationError) as caught:
        proper(mail=MailSettings(backend=backend))  # type: ignore[arg-type]
    assert "ULTRAMARKET_MAIL__BACKEND must be smtp" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:3000",
        "http://localhost:3000",
        "https://LOCALHOST",
        "http://shop.localhost",
        "http://[::1]:8080",
        "http://0.0.0.0",
        "https://127.1.2.3/shop",
        "shop.example.com",
        "ftp://shop.example.com",
        "",
    ],
)
def test_production_refuses_a_local_public_url(clean_env: None, url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        proper(public_url=url)
    assert "ULTRAMARKET_PUBLIC_URL" in str(caught.value)


def test_production_accepts_a_public_url_and_smtp(clean_env: None) -> None:
    settings = proper(public_url="https://shop.example.com/", mail=MailSettings(backend="smtp"))
    assert settings.public_url == "https://shop.example.com/"
    # Development keeps its local defaults.
    dev = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (dev.mail.backend, dev.public_url) == ("file", "http://127.0.0.1:3000")


def _container(settings: Settings) -> Any:
    from ultramarket.core.container import Container

    return Container.build(settings, [], local_app=lambda name: None, all_schemas=[])


def test_production_verifier_ignores_leftover_dev_keys(clean_env: None, tmp_path: Any) -> None:
    from ultramarket.services.auth.keys import ensure_dev_key, public_jwk

    dev_kid = public_jwk(ensure_dev_key(tmp_path / "keys").public_key())["kid"]
    jwks = AuthSettings(jwks_url="http://auth.invalid/api/v1/auth/.well-known/jwks.json")
    container = _container(proper(data_dir=tmp_path, auth=jwks))
    assert dev_kid not in container.verifier.key_ids
    # Development (one process, no keystore configured) still trusts its own key files.
    container = _container(Settings(data_dir=tmp_path, _env_file=None))  # type: ignore[call-arg]
    assert dev_kid in container.verifier.key_ids


def test_development_defaults_need_nothing(clean_env: None) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url_for("auth").startswith("sqlite+aiosqlite:///")
    assert settings.max_body_bytes == 10 * 1024 * 1024


# -- service client ------------------------------------------------------------------


class ProductClient(ServiceClient):
    service = "product"


def envelope_error(status: int, code: str, message: str, details: list[Any] | None = None):
    body = {
        "success": False,
        "error": {"code": code, "message": message, "details": details or []},
        "request_id": "r1",
    }
    return httpx.Response(
        status, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )


def ok(data: Any) -> httpx.Response:
    return httpx.Response(200, json={"success": True, "data": data})


def make_client(handler: Any, calls: list[httpx.Request]) -> ProductClient:
    def record(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return handler(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(record), base_url="http://product")

    async def token(caller: str) -> str:
        return f"token-for-{caller}"

    return ProductClient(HttpTransport(http), caller="order", token=token)


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (404, "NOT_FOUND", NotFound),
        (409, "INSUFFICIENT_STOCK", Conflict),
        (409, "CONFLICT", Conflict),
        (422, "VALIDATION_ERROR", ValidationFailed),
    ],
)
async def test_remote_error_envelope_is_raised_as_the_same_domain_error(
    status: int, code: str, cls: type[DomainError]
) -> None:
    calls: list[httpx.Request] = []
    details = [{"field": "quantity", "message": "too many"}]
    client = make_client(lambda r: envelope_error(status, code, "Remote says no", details), calls)
    with pytest.raises(cls) as caught:
        await client.request("GET", "/api/v1/products/x")
    assert caught.value.status_code == status
    assert caught.value.code == code
    assert caught.value.message == "Remote says no"
    assert caught.value.details == details
    assert len(calls) == 1  # domain errors are not retried


@pytest.mark.parametrize(("status", "code"), [(401, "UNAUTHENTICATED"), (403, "FORBIDDEN")])
async def test_a_refused_service_identity_is_an_upstream_failure_not_the_users(
    status: int, code: str
) -> None:
    calls: list[httpx.Request] = []
    client = make_client(lambda r: envelope_error(status, code, "Services only"), calls)
    with pytest.raises(Unavailable) as caught:
        await client.request("GET", "/api/v1/products/x")
    assert caught.value.status_code == 503
    assert caught.value.code == "UPSTREAM_ERROR"


async def test_client_sends_identity_and_request_id() -> None:
    calls: list[httpx.Request] = []
    client = make_client(lambda r: ok({"id": 1}), calls)
    token = request_id_var.set("req-abc")
    try:
        assert await client.request("GET", "/api/v1/products/1") == {"id": 1}
    finally:
        request_id_var.reset(token)
    sent = calls[0].headers
    assert sent["authorization"] == "Bearer token-for-order"
    assert sent["x-service-name"] == "order"
    assert sent["x-request-id"] == "req-abc"


async def test_get_is_retried_on_503_then_succeeds() -> None:
    calls: list[httpx.Request] = []
    replies = iter([envelope_error(503, "UNAVAILABLE", "busy"), ok({"id": 2})])
    client = make_client(lambda r: next(replies), calls)
    assert await client.request("GET", "/api/v1/products/2") == {"id": 2}
    assert len(calls) == 2


async def test_get_gives_up_after_its_retries() -> None:
    calls: list[httpx.Request] = []
    client = make_client(lambda r: envelope_error(503, "UNAVAILABLE", "down"), calls)
    with pytest.raises(Unavailable):
        await client.request("GET", "/api/v1/products/3")
    assert len(calls) == 3  # one try and two retries


async def test_get_is_retried_on_transport_errors() -> None:
    calls: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = make_client(refuse, calls)
    with pytest.raises(Unavailable) as caught:
        await client.request("GET", "/api/v1/products/4")
    assert caught.value.code == "UPSTREAM_UNAVAILABLE"
    assert len(calls) == 3


async def test_post_is_not_retried() -> None:
    calls: list[httpx.Request] = []
    replies = iter([envelope_error(503, "UNAVAILABLE", "busy"), ok({"id": 5})])
    client = make_client(lambda r: next(replies), calls)
    with pytest.raises(Unavailable):
        await client.request("POST", "/api/v1/products", json={"name": "x"})
    assert len(calls) == 1
    # An explicitly idempotent POST (with an idempotency key) may be retried.
    calls.clear()
    replies = iter([envelope_error(503, "UNAVAILABLE", "busy"), ok({"id": 6})])
    client = make_client(lambda r: next(replies), calls)
    result = await client.request(
        "POST", "/api/v1/orders", json={}, headers={"Idempotency-Key": "k"}, idempotent=True
    )
    assert result == {"id": 6}
    assert len(calls) == 2


async def test_remote_500_does_not_leak_its_body() -> None:
    calls: list[httpx.Request] = []
    client = make_client(
        lambda r: httpx.Response(500, text="Traceback: SELECT * FROM secret"), calls
    )
    with pytest.raises(Unavailable) as caught:
        await client.request("GET", "/api/v1/products/7")
    assert caught.value.code == "UPSTREAM_ERROR"
    assert "SELECT" not in caught.value.message
