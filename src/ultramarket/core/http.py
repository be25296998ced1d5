"""The app factory and the middleware stack every service shares."""

from __future__ import annotations

import gc
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ultramarket.core.clients import IN_PROCESS_CLIENT
from ultramarket.core.config import Settings
from ultramarket.core.container import Container
from ultramarket.core.errors import PayloadTooLarge, RateLimited, error_body, install_error_handlers
from ultramarket.core.logging import configure_logging, request_id_var
from ultramarket.core.ports import ALL_SCHEMAS
from ultramarket.core.ratelimit import client_key
from ultramarket.core.responses import JSONResponse
from ultramarket.core.service import ServiceSpec

access_log = logging.getLogger("ultramarket.access")

REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
OUTBOX_LAG = Gauge("outbox_pending_events", "Events written but not yet delivered", ["service"])

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
# The interactive docs page loads its script and styles from a CDN.
DOCS_CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https:"
)
# Spans are ours (``TracingMiddleware``, when an OTLP endpoint is configured) and so are
# the metrics: FastAPI's native telemetry would add a second span to each request and
# ask the global OpenTelemetry providers on every request whether to.
FASTAPI_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
# At most 64: what the outbox keeps of it (its request_id column) for events.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
UNMATCHED = "<unmatched>"


class PlatformMiddleware:
    """Request id, body limit, per-IP rate limit, security headers, metrics and access log.

    A plain ASGI middleware (no BaseHTTPMiddleware) so it costs little per request.
    """

    def __init__(self, app: ASGIApp, *, settings: Settings, container: Callable[[], Container]):
        self.app = app
        self.settings = settings
        self.container = container

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        status_holder = [500]
        request_id_header = (b"x-request-id", request_id.encode())
        path: str = scope["path"]

        response_started = [False]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_started[0] = True
                status_holder[0] = message["status"]
                headers = list(message.get("headers", []))
                headers.append(request_id_header)
                present = {k.lower() for k, _ in headers}
                for key, value in SECURITY_HEADERS:
                    if key not in present:
                        if key == b"content-security-policy" and path in ("/docs", "/redoc"):
                            value = DOCS_CSP
                        headers.append((key, value))
                message["headers"] = headers
            await send(message)

        try:
            rejection = await self._reject_early(scope, request_id)
            if rejection is not None:
                await rejection(scope, receive, send_wrapper)
            else:
                await self.app(scope, self._limited_receive(receive), send_wrapper)
        except Exception:
            # Starlette renders unhandled errors outside this middleware, which would
            # drop the request id and security headers: answer here, then re-raise so
            # the error handler still logs it (it sends nothing once we have).
            if not response_started[0]:
                await _envelope_app(500, "INTERNAL", "Internal server error", request_id)(
                    scope, receive, send_wrapper
                )
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            method = scope["method"]
            status = status_holder[0]
            REQUESTS.labels(method, template, str(status)).inc()
            LATENCY.labels(method, template).observe(elapsed)
            if self.settings.access_log:
                client = scope.get("client")
                access_log.info(
                    "request",
                    extra={
                        "method": method,
                        "path": scope["path"],
                        "route": template,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "client": client[0] if client else None,
                    },
                )
            request_id_var.reset(token)

    async def _reject_early(self, scope: Scope, request_id: str) -> ASGIApp | None:
        length = _header(scope, b"content-length")
        if length and length.isdigit() and int(length) > self.settings.max_body_bytes:
            return _envelope_app(413, "PAYLOAD_TOO_LARGE", "Request body too large", request_id)
        limits = self.settings.rate_limits
        if limits.enabled and scope["path"] not in ("/health", "/ready", "/metrics"):
            client = scope.get("client")
            ip = client[0] if client else "unknown"
            if client == IN_PROCESS_CLIENT:
                return None  # another service of this process, already limited at its edge
            try:
                await self.container().limiter.hit(limits.default_per_ip, "ip", client_key(ip))
            except RateLimited as exc:
                return _envelope_app(
                    429,
                    "RATE_LIMITED",
                    "Too many requests",
                    request_id,
                    {"retry-after": str(exc.retry_after)},
                )
        return None

    def _limited_receive(self, receive: Receive) -> Receive:
        limit = self.settings.max_body_bytes
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # An HTTPException, not a DomainError: FastAPI turns any other error
                    # raised while it reads the body into a 400.
                    raise StarletteHTTPException(413, PayloadTooLarge.message)
            return message

        return wrapped


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _envelope_app(
    status: int, code: str, message: str, request_id: str, headers: dict[str, str] | None = None
) -> ASGIApp:
    body = error_body(None, code, message)
    body["request_id"] = request_id
    return JSONResponse(body, status_code=status, headers=headers)


def tune_gc() -> None:
    """Move everything built at start-up out of the collector's way and collect the
    young generation less often: per-request garbage is short-lived, and full
    collections over a large heap were the main source of tail latency."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def platform_router() -> APIRouter:
    router = APIRouter(tags=["platform"])

    @router.get("/health", summary="Liveness")
    async def health() -> JSONResponse:
        return JSONResponse({"success": True, "data": {"status": "ok"}})

    @router.get("/ready", summary="Readiness: database, cache and broker reachable")
    async def ready(request: Request) -> JSONResponse:
        container: Container = request.app.state.container
        checks = await container.readiness()
        ok = all(v == "ok" for v in checks.values())
        if ok:
            return JSONResponse({"success": True, "data": {"status": "ready", "checks": checks}})
        body = error_body(request, "UNAVAILABLE", "Not ready", [checks])
        return JSONResponse(body, status_code=503)

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        container: Container = request.app.state.container
        try:
            for service, pending in (await container.relay.lag()).items():
                OUTBOX_LAG.labels(service).set(pending)
        except Exception:  # noqa: S110 - metrics must render even when a database is down
            pass
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def create_app(
    specs: Sequence[ServiceSpec],
    settings: Settings,
    *,
    title: str = "UltraMarket API",
    run_relay: bool | None = None,
) -> FastAPI:
    """Build the ASGI app serving ``specs`` (all of them in all-in-one mode)."""

    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        container: Container = app.state.container
        await container.start(
            run_relay=settings.embedded_worker if run_relay is None else run_relay
        )
        if settings.gc_tuning:
            tune_gc()
        try:
            yield
        finally:
            await container.stop()

    app = FastAPI(
        telemetry=FASTAPI_TELEMETRY,
        title=title,
        version="1.0.0",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        description="UltraMarket e-commerce backend. Every response is an envelope: "
        "`{success, data}` or `{success: false, error: {code, message, details}, request_id}`.",
    )
    app.state.settings = settings
    # What in-process clients call: each service as its own app, as in split mode.
    service_apps: dict[str, FastAPI] = {}
    app.state.container = container = Container.build(
        settings, specs, local_app=service_apps.get, all_schemas=ALL_SCHEMAS
    )
    install_error_handlers(app)
    app.include_router(platform_router())
    for spec in specs:
        for router in spec.routers():
            app.include_router(router)
        service_apps[spec.name] = _service_app(spec, settings, container)

    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["X-Request-ID", "X-Cart-Token", "Retry-After"],
        max_age=600,
    )
    app.add_middleware(PlatformMiddleware, settings=settings, container=lambda: app.state.container)
    if settings.otlp_endpoint:
        _install_tracing(app, settings)
    return app


def _service_app(spec: ServiceSpec, settings: Settings, container: Container) -> FastAPI:
    """One service's routes behind the platform middleware (request id, body limit,
    metrics), sharing the platform's container: what another service of this process
    calls. Routing looks at this service's routes only, not at every service's."""
    app = FastAPI(
        telemetry=FASTAPI_TELEMETRY,
        title=spec.name,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.container = container
    install_error_handlers(app)
    for router in spec.routers():
        app.include_router(router)
    app.add_middleware(PlatformMiddleware, settings=settings, container=lambda: container)
    if settings.otlp_endpoint:
        from opentelemetry import trace

        app.add_middleware(TracingMiddleware, tracer=trace.get_tracer("ultramarket"))
    return app


def _install_tracing(app: FastAPI, settings: Settings) -> None:
    """Export OpenTelemetry spans, one per request, when an OTLP endpoint is configured."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": app.title}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
    )
    trace.set_tracer_provider(provider)
    app.add_middleware(TracingMiddleware, tracer=trace.get_tracer("ultramarket"))


class TracingMiddleware:
    def __init__(self, app: ASGIApp, *, tracer: Any) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind

        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with self.tracer.start_as_current_span(
            f"{scope['method']} {scope['path']}", context=extract(carrier), kind=SpanKind.SERVER
        ) as span:
            span.set_attribute("http.request.method", scope["method"])
            try:
                await self.app(scope, receive, send)
            finally:
                route = scope.get("route")
                if route is not None:
                    span.update_name(f"{scope['method']} {route.path}")
                span.set_attribute("request_id", scope.get("state", {}).get("request_id", ""))
