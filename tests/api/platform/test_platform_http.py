"""The platform surface every service shares: health, readiness, metrics, docs,
the error envelope, body limits, request ids, security headers, CORS, gzip and
the per-IP rate limit. All of it over HTTP, on both stacks."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI

from ultramarket import registry
from ultramarket.core.config import RateLimits, Settings
from ultramarket.core.container import Container
from ultramarket.core.http import create_app

SECURITY_HEADERS = (
    "content-security-policy",
    "strict-transport-security",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
)
TEN_MB = 10 * 1024 * 1024


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], list)
    assert body["request_id"] == response.headers["x-request-id"]
    return body


# -- health, readiness, metrics, docs ------------------------------------------------


async def test_health_is_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"success": True, "data": {"status": "ok"}}


async def test_ready_reports_every_check(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["status"] == "ready"
    checks = data["checks"]
    assert any(name.startswith("database:") for name in checks)
    assert {"cache", "broker", "rate_limit"} <= set(checks)
    assert set(checks.values()) == {"ok"}


async def test_ready_is_503_when_the_database_is_down(
    client: httpx.AsyncClient, container: Container, monkeypatch: Any
) -> None:
    async def down() -> None:
        raise ConnectionRefusedError("connection refused to db.internal:5432 password=secret")

    monkeypatch.setattr(container.db("auth"), "ping", down)
    response = await client.get("/ready")
    body = assert_envelope(response, 503, "UNAVAILABLE")
    checks = body["error"]["details"][0]
    db_checks = {k: v for k, v in checks.items() if k.startswith("database:")}
    assert db_checks
    assert all(v.startswith("down") for v in db_checks.values())
    assert checks["cache"] == "ok"
    # The failure is named, but its message (hosts, credentials) does not leak.
    assert "secret" not in response.text
    assert "db.internal" not in response.text
    # Liveness does not depend on the database.
    assert (await client.get("/health")).status_code == 200


async def test_ready_is_503_against_an_unreachable_postgres(settings: Settings) -> None:
    unreachable = settings.model_copy(
        update={"database_url": "postgresql+asyncpg://nobody:pw@127.0.0.1:1/none"}
    )
    app = create_app(registry.load_all(), unreachable, run_relay=False)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        response = await http.get("/ready")
        body = assert_envelope(response, 503, "UNAVAILABLE")
        assert body["error"]["details"][0]["database:postgresql"].startswith("down")
        assert "nobody" not in response.text
        assert ":pw@" not in response.text


async def test_metrics_label_requests_by_route_template(
    client: httpx.AsyncClient,
) -> None:
    account_id = uuid.uuid4()
    await client.get(f"/api/v1/auth/accounts/{account_id}")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "http_requests_total" in text
    assert "http_request_duration_seconds" in text
    pattern = (
        r'http_requests_total\{method="GET",route="/api/v1/auth/accounts/\{account_id\}",'
        r'status="401"\} [1-9]'
    )
    assert re.search(pattern, text), text[:2000]
    assert str(account_id) not in text
    # Unknown paths are folded into one label instead of one series per URL.
    await client.get(f"/no/such/{uuid.uuid4()}")
    text = (await client.get("/metrics")).text
    assert 'route="<unmatched>"' in text
    assert "/no/such/" not in text
    assert "outbox_pending_events" in text


async def test_openapi_and_docs(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/health" in schema["paths"]
    assert "/api/v1/auth/register" in schema["paths"]
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
    assert "/openapi.json" in docs.text
    # The docs page may load its assets; the API itself keeps the strict policy.
    assert "cdn.jsdelivr.net" in docs.headers["content-security-policy"]
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


# -- the error envelope --------------------------------------------------------------


async def test_unknown_route_is_a_404_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nowhere")
    assert_envelope(response, 404, "NOT_FOUND")


async def test_wrong_method_is_a_405_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/auth/register")
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in response.headers.get("allow", "")


async def test_malformed_json_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        content=b'{"email": "a@example.com", "password": ',
        headers={"content-type": "application/json"},
    )
    body = assert_envelope(response, 400, "BAD_REQUEST")
    assert "Traceback" not in response.text
    assert body["error"]["details"] == [] or isinstance(body["error"]["details"], list)


async def test_validation_error_lists_fields_without_echoing_input(
    client: httpx.AsyncClient,
) -> None:
    # Over the schema's maximum length: rejected, and must never be echoed back.
    secret = "Zq-" + "hunter2-" * 40
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": "not-an-email-zq81", "password": secret, "first_name": "A"},
    )
    body = assert_envelope(response, 422, "VALIDATION_ERROR")
    fields = {d["field"] for d in body["error"]["details"]}
    assert any(f.endswith("password") for f in fields), fields
    assert any(f.endswith("email") for f in fields), fields
    for detail in body["error"]["details"]:
        assert {"field", "message", "type"} <= set(detail)
        assert "input" not in detail
    assert secret not in response.text


async def test_body_over_10mb_with_content_length_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        content=b"x" * (TEN_MB + 1),
        headers={"content-type": "application/json"},
    )
    assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")


async def test_streamed_body_over_10mb_is_413(client: httpx.AsyncClient) -> None:
    chunk = b" " * (1024 * 1024)

    async def body() -> AsyncIterator[bytes]:
        yield b'{"email": "a@example.com", "password": "'
        for _ in range(11):
            yield chunk
        yield b'"}'

    response = await client.post(
        "/api/v1/auth/register",
        content=body(),
        headers={"content-type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")


async def test_body_just_under_the_limit_is_not_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        content=b"{" + b" " * (TEN_MB - 10) + b"}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text[:300]


async def test_unhandled_exception_is_a_500_without_internals(app: FastAPI) -> None:
    @app.get("/__boom")
    async def boom() -> None:
        raise RuntimeError("SELECT password_hash FROM auth.account -- secret internals")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get("/__boom", headers={"X-Request-ID": "boom-1"})
    body = assert_envelope(response, 500, "INTERNAL")
    assert body["request_id"] == "boom-1"
    for leak in ("Traceback", "RuntimeError", "SELECT", "password_hash", "secret"):
        assert leak not in response.text
    for header in SECURITY_HEADERS:
        assert header in response.headers


# -- request id and security headers -------------------------------------------------


async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "req-123.abc:def"})
    assert response.headers["x-request-id"] == "req-123.abc:def"
    error = await client.get("/nope", headers={"X-Request-ID": "req-456"})
    assert error.headers["x-request-id"] == "req-456"
    assert error.json()["request_id"] == "req-456"


async def test_a_long_request_id_does_not_break_a_write_that_publishes_events(
    client: httpx.AsyncClient,
) -> None:
    """The id travels with the events a request writes (the outbox keeps 64 characters of
    it): a longer one is replaced, not the cause of a 500 on PostgreSQL."""
    longest, too_long = "r" * 64, "r" * 65
    for given in (longest, too_long):
        response = await client.post(
            "/api/v1/auth/register",
            headers={"X-Request-ID": given},
            json={
                "email": f"rid-{uuid.uuid4().hex[:10]}@example.com",
                "password": "Correct-Horse-42",
                "first_name": "Req",
                "last_name": "Id",
            },
        )
        assert response.status_code == 201, response.text
        echoed = response.headers["x-request-id"]
        assert echoed == given if given == longest else re.fullmatch(r"[0-9a-f]{32}", echoed)


async def test_request_id_is_generated_when_missing(client: httpx.AsyncClient) -> None:
    first = await client.get("/health")
    second = await client.get("/health")
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_malicious_request_ids_are_replaced(client: httpx.AsyncClient) -> None:
    for bad in ("a" * 300, "a b<script>", "a\tb", "ünï"):
        response = await client.get("/nope", headers={"X-Request-ID": bad.encode("utf-8")})
        generated = response.headers["x-request-id"]
        assert generated != bad
        assert re.fullmatch(r"[0-9a-f]{32}", generated)
        assert response.json()["request_id"] == generated


async def test_request_id_with_newline_is_replaced(app: FastAPI) -> None:
    # httpx refuses to send a newline in a header, so speak ASGI directly.
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/health",
        "raw_path": b"/health",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"x-request-id", b"a\nb")],
        "client": ("203.0.113.9", 1234),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = dict(start["headers"])
    assert start["status"] == 200
    assert b"\n" not in headers[b"x-request-id"]
    assert re.fullmatch(rb"[0-9a-f]{32}", headers[b"x-request-id"])


async def test_security_headers_on_every_kind_of_response(client: httpx.AsyncClient) -> None:
    responses = [
        await client.get("/health"),
        await client.get("/ready"),
        await client.get("/metrics"),
        await client.get("/nope"),
        await client.post("/api/v1/auth/register", json={}),
        await client.post("/api/v1/auth/register", content=b"x" * (TEN_MB + 1)),
    ]
    for response in responses:
        for header in SECURITY_HEADERS:
            assert header in response.headers, (response.request.url, header)
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "max-age=" in response.headers["strict-transport-security"]
        assert response.headers["referrer-policy"]
        assert response.headers["x-request-id"]


# -- CORS and compression ------------------------------------------------------------


async def test_cors_preflight_from_an_allowed_origin(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    origin = settings.cors_origins[0]
    response = await client.options(
        "/api/v1/auth/login",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["x-request-id"]
    simple = await client.get("/health", headers={"Origin": origin})
    assert simple.headers["access-control-allow-origin"] == origin
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


async def test_cors_preflight_from_another_origin_is_refused(
    client: httpx.AsyncClient,
) -> None:
    response = await client.options(
        "/api/v1/auth/login",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in response.headers
    assert response.status_code >= 400
    simple = await client.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


async def test_large_responses_are_gzipped(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) < len(response.content)
    assert json.loads(response.content)["openapi"]  # httpx decoded it
    assert response.headers["x-request-id"]
    plain = await client.get("/openapi.json", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    small = await client.get("/health", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers


# -- per-IP rate limit ---------------------------------------------------------------


async def test_default_per_ip_rate_limit(settings: Settings) -> None:
    limited = settings.model_copy(update={"rate_limits": RateLimits(default_per_ip="3/hour")})
    app = create_app(registry.load_all(), limited, run_relay=False)
    ip = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(ip, 5000))
        other = httpx.ASGITransport(app=app, client=("192.0.2.77", 5000))
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
            httpx.AsyncClient(transport=other, base_url="http://testserver") as http2,
        ):
            for _ in range(3):
                assert (await http.get("/openapi.json")).status_code == 200
            response = await http.get("/openapi.json")
            assert_envelope(response, 429, "RATE_LIMITED")
            assert int(response.headers["retry-after"]) >= 1
            for header in SECURITY_HEADERS:
                assert header in response.headers
            # Platform endpoints stay reachable for probes and scrapers.
            assert (await http.get("/health")).status_code == 200
            assert (await http.get("/ready")).status_code == 200
            assert (await http.get("/metrics")).status_code == 200
            # Another address has its own budget.
            assert (await http2.get("/openapi.json")).status_code == 200


async def test_ipv6_clients_are_limited_by_their_64_network(settings: Settings) -> None:
    """An IPv6 subscriber holds a whole /64 and can use a new address for each request:
    the per-address limit counts the network, not the address."""
    limited = settings.model_copy(update={"rate_limits": RateLimits(default_per_ip="3/hour")})
    app = create_app(registry.load_all(), limited, run_relay=False)
    network = f"2001:db8:{uuid.uuid4().int % 0xFFFF:x}:1"
    async with app.router.lifespan_context(app):

        def client_at(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(address, 5000))
            return httpx.AsyncClient(transport=transport, base_url="http://testserver")

        for host in range(1, 4):
            async with client_at(f"{network}::{host:x}") as http:
                assert (await http.get("/openapi.json")).status_code == 200
        async with client_at(f"{network}::ffff:1234") as http:
            assert_envelope(await http.get("/openapi.json"), 429, "RATE_LIMITED")
        async with client_at(f"{network[:-1]}2::1") as http:  # the next /64
            assert (await http.get("/openapi.json")).status_code == 200


async def test_the_shop_serves_while_its_redis_is_down(settings: Settings) -> None:
    """Cache and rate limits on a Redis that does not answer: reads go to the database,
    limits let requests through, and /ready says what is down - not a 500 everywhere."""
    dead = "redis://127.0.0.1:1/0"  # nothing listens there
    down = settings.model_copy(update={"cache_url": dead, "rate_limit_url": dead})
    application = create_app(registry.load_all(), down, run_relay=False)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("203.0.113.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            for path in ("/api/v1/products", "/api/v1/categories"):
                response = await http.get(path)
                assert response.status_code == 200, response.text
            registered = await http.post(
                "/api/v1/auth/register",
                json={
                    "email": f"down-{uuid.uuid4().hex[:10]}@example.com",
                    "password": "Correct-Horse-42",
                    "first_name": "Re",
                    "last_name": "Dis",
                },
            )
            assert registered.status_code == 201, registered.text
            ready = await http.get("/ready")
            assert ready.status_code == 503
            checks = ready.json()["error"]["details"][0]
            assert checks["cache"].startswith("down")
            assert checks["rate_limit"].startswith("down")
