"""Base for typed service-to-service clients.

A client speaks HTTP. In split mode its transport is httpx over the network; in
all-in-one mode it hands the same request to the service's ASGI app in this process
(no socket, no HTTP client: a scope, the body, the answer collected). Every call
carries the request id and the calling service's identity (a short-lived service
token), idempotent calls are retried, and a remote error envelope is raised again
as the same domain error.

A service may also give a client an in-process twin (``InProcessClient``) for its hot
calls: in all-in-one mode those go straight to the functions its routes call, in the
same units of work, with the request validated by the same models and errors coming
back as the wire would bring them; its other calls still go through the app.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

import httpx
import orjson
import pydantic
from prometheus_client import Counter
from starlette.types import ASGIApp, Message

from ultramarket.core.errors import (
    ERROR_CLASSES,
    DomainError,
    RateLimited,
    Unavailable,
    ValidationFailed,
    validation_details,
)
from ultramarket.core.logging import request_id_var
from ultramarket.core.security import Principal

log = logging.getLogger("ultramarket.clients")

TokenSource = Callable[[str], Awaitable[str]]  # caller name -> service token

RETRYABLE_STATUS = {502, 503, 504}
IN_PROCESS_CLIENT = ("in-process", 0)

IN_PROCESS_CALLS = Counter(
    "service_in_process_calls_total",
    "Calls between services made in this process without HTTP, by outcome",
    ["service", "call", "outcome"],
)

T = TypeVar("T")
M = TypeVar("M", bound=pydantic.BaseModel)


@dataclass(frozen=True)
class Reply:
    status_code: int
    headers: Mapping[str, str]  # names in lower case
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        return orjson.loads(self.content)


class NoAnswer(Exception):
    """The request may not have reached the service, or its answer did not come back."""


class Transport(Protocol):
    async def send(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        params: Mapping[str, Any] | None,
        headers: dict[str, str],
    ) -> Reply: ...

    async def close(self) -> None: ...


class HttpTransport:
    """Over the network (split mode)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def send(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        params: Mapping[str, Any] | None,
        headers: dict[str, str],
    ) -> Reply:
        if json is not None:
            headers = {**headers, "content-type": "application/json"}
        try:
            response = await self.http.request(
                method,
                path,
                content=None if json is None else _json_bytes(json),
                params=params,
                headers=headers,
            )
        except httpx.TransportError as exc:
            raise NoAnswer(str(exc)) from exc
        return Reply(response.status_code, response.headers, response.content)

    async def close(self) -> None:
        await self.http.aclose()


class AppTransport:
    """To a service's ASGI app in this process (all-in-one mode): the request goes
    through the same app - its middleware, routing, validation and error handlers - as
    over the network, minus the socket and the HTTP client."""

    def __init__(self, app: ASGIApp, host: str) -> None:
        self.app = app
        self.host = host.encode()

    async def send(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        params: Mapping[str, Any] | None,
        headers: dict[str, str],
    ) -> Reply:
        body = b"" if json is None else _json_bytes(json)
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw.append((b"host", self.host))
        if json is not None:
            raw.append((b"content-type", b"application/json"))
            raw.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            # Encoded as httpx encodes ``params=`` over the network (true, empty for None).
            "query_string": str(httpx.QueryParams(params)).encode() if params else b"",
            "root_path": "",
            "headers": raw,
            "client": IN_PROCESS_CLIENT,
            "server": (self.host.decode(), 80),
        }
        status = 0
        reply_headers: dict[str, str] = {}
        chunks: list[bytes] = []
        done = asyncio.Event()
        request_sent = False

        async def receive() -> Message:
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()  # asked again: the client stays until the answer is complete
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for key, value in message.get("headers", ()):
                    reply_headers[key.decode("latin-1").lower()] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    done.set()

        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            if not done.is_set():
                log.exception("in-process call failed before answering", extra={"path": path})
                raise NoAnswer(f"{method} {path}: the app failed before answering") from exc
            # Answered (500) by the platform middleware, as a server over the network would.
            log.exception("in-process call failed", extra={"method": method, "path": path})
        if not done.is_set():
            raise NoAnswer(f"{method} {path}: no complete answer")
        return Reply(status, reply_headers, b"".join(chunks))

    async def close(self) -> None:
        return None


def _json_bytes(value: Any) -> bytes:
    # Compact UTF-8, no NaN: what httpx sends for ``json=``, encoded faster.
    return orjson.dumps(value)


class ServiceClient:
    service: ClassVar[str]

    def __init__(
        self,
        transport: Transport,
        *,
        caller: str,
        token: TokenSource,
        retries: int = 2,
    ) -> None:
        self._transport = transport
        self._caller = caller
        self._token = token
        self._retries = retries

    async def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {
            "authorization": f"Bearer {await self._token(self._caller)}",
            "x-service-name": self._caller,
        }
        request_id = request_id_var.get()
        if request_id:
            headers["x-request-id"] = request_id
        if extra:
            headers.update(extra)
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Call the service; return the envelope's ``data`` or raise its domain error."""

        retryable = method in {"GET", "HEAD", "PUT", "DELETE"} if idempotent is None else idempotent
        attempts = 1 + (self._retries if retryable else 0)
        last_error: Exception | None = None
        for attempt in range(attempts):
            try:
                response = await self._transport.send(
                    method, path, json=json, params=params, headers=await self._headers(headers)
                )
            except NoAnswer as exc:
                last_error = exc
            else:
                if response.status_code not in RETRYABLE_STATUS or attempt == attempts - 1:
                    return self._unwrap(response)
                last_error = None
            await asyncio.sleep(0.05 * 2**attempt)
        raise Unavailable(
            f"{self.service} service unreachable", code="UPSTREAM_UNAVAILABLE"
        ) from last_error

    def _unwrap(self, response: Reply) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success:
            return body.get("data") if isinstance(body, dict) else body
        error = body.get("error") if isinstance(body, dict) else None
        if response.status_code == 429:
            retry_after = response.headers.get("retry-after", "1")
            raise RateLimited(int(retry_after) if retry_after.isdigit() else 1)
        cls = ERROR_CLASSES.get(response.status_code, DomainError)
        if cls is DomainError or response.status_code in (401, 403):
            raise self._failed()
        if isinstance(error, dict):
            raise cls(
                str(error.get("message") or cls.message),
                code=error.get("reason") or error.get("code"),
                details=error.get("details") or [],
            )
        raise cls()

    def _failed(self) -> Unavailable:
        # A refused *service* identity is our failure, never the end user's: it must not
        # reach them as their own 401/403.
        return Unavailable(f"{self.service} service failed", code="UPSTREAM_ERROR")


class InProcessClient(ServiceClient):
    """The in-process twin of a service's client (all-in-one mode): it overrides the hot
    calls to run the functions the service's routes run, in the same units of work, as
    the calling service (a service principal, as its service token would give). What
    the wire would change is kept: the request is validated by the route's own model
    (422 ``VALIDATION_ERROR``), a domain error comes back as a new error of its status's
    class with the same code, message and details (never the callee's own exception:
    its ``persist_changes`` would commit the *caller's* unit of work), a refused
    identity or an unexpected failure is the caller's 503 ``UPSTREAM_ERROR``, and
    idempotent calls are retried on a 502/503/504. Calls not overridden go through the
    service's app as before."""

    def __init__(
        self,
        transport: Transport,
        *,
        caller: str,
        token: TokenSource,
        services: Any,
        retries: int = 2,
    ) -> None:
        super().__init__(transport, caller=caller, token=token, retries=retries)
        self.services = services  # the container
        self.principal = Principal(
            subject=f"service:{caller}",
            kind="service",
            service=caller,
            permissions=frozenset({"*"}),  # what the platform's service tokens hold
        )

    @staticmethod
    def parse(
        model: type[M],
        data: Any,
        *,
        headers: Sequence[tuple[str, pydantic.TypeAdapter[Any], Any]] = (),
    ) -> M:
        """The request as the route would validate it: its ``headers`` (name, the route's
        constraint, value) and then its body, every error in one 422 located as the
        route locates it."""
        errors: list[Any] = []
        for name, constraint, value in headers:
            try:
                constraint.validate_python(value)
            except pydantic.ValidationError as exc:
                errors += [{**err, "loc": ("header", name, *err["loc"])} for err in exc.errors()]
        try:
            request = model.model_validate(data)
        except pydantic.ValidationError as exc:
            errors += [{**err, "loc": ("body", *err["loc"])} for err in exc.errors()]
        if errors:
            raise ValidationFailed(
                "Request validation failed",
                code="VALIDATION_ERROR",
                details=validation_details(errors),
            ) from None
        return request

    async def call(self, name: str, run: Callable[[], Awaitable[T]], *, idempotent: bool) -> T:
        """Run one call (``run``, a unit of work of the called service) as the wire would."""
        attempts = 1 + (self._retries if idempotent else 0)
        for attempt in range(attempts):
            try:
                result = await run()
            except DomainError as exc:
                status = exc.status_code
                if status in RETRYABLE_STATUS and attempt < attempts - 1:
                    await asyncio.sleep(0.05 * 2**attempt)
                    continue
                IN_PROCESS_CALLS.labels(self.service, name, str(status)).inc()
                raise self._as_received(exc) from exc
            except Exception as exc:
                IN_PROCESS_CALLS.labels(self.service, name, "500").inc()
                log.exception("in-process call failed", extra={"call": f"{self.service}.{name}"})
                raise self._failed() from exc
            IN_PROCESS_CALLS.labels(self.service, name, "ok").inc()
            return result
        raise AssertionError("unreachable")

    def _as_received(self, exc: DomainError) -> DomainError:
        status = exc.status_code
        if status == 429:
            return RateLimited(max(1, int(getattr(exc, "retry_after", 1))))  # as Retry-After
        cls = ERROR_CLASSES.get(status, DomainError)
        if cls is DomainError or status in (401, 403):
            return self._failed()
        # The details as JSON carries them (ids and amounts as strings).
        details = orjson.loads(orjson.dumps(exc.details, default=str))
        return cls(exc.message, code=exc.code, details=details)


C = TypeVar("C", bound=ServiceClient)


class ClientFactory:
    """Builds and caches one client per service, on the right transport."""

    def __init__(
        self,
        *,
        token: TokenSource,
        base_url: Callable[[str], str],
        local_app: Callable[[str], Any | None],
        twin: Callable[[type[ServiceClient]], type[InProcessClient] | None] = lambda cls: None,
        services: Any = None,
        timeout: float = 5.0,
    ) -> None:
        self._token = token
        self._base_url = base_url
        self._local_app = local_app
        self._twin = twin
        self.services = services  # what twins work with (the container, set once built)
        self._timeout = timeout
        self._clients: dict[tuple[type[ServiceClient], str], ServiceClient] = {}
        self._transports: dict[str, Transport] = {}

    def _transport_for(self, service: str) -> Transport:
        transport = self._transports.get(service)
        if transport is None:
            app = self._local_app(service)
            if app is not None:
                transport = AppTransport(app, f"{service}.internal")
            else:
                transport = HttpTransport(
                    httpx.AsyncClient(base_url=self._base_url(service), timeout=self._timeout)
                )
            self._transports[service] = transport
        return transport

    def get(self, cls: type[C], caller: str) -> C:
        """The client of ``cls.service`` used by the service named ``caller``."""
        client = self._clients.get((cls, caller))
        if client is None:
            transport = self._transport_for(cls.service)
            twin = self._twin(cls) if isinstance(transport, AppTransport) else None
            if twin is not None:
                client = twin(transport, caller=caller, token=self._token, services=self.services)
            else:
                client = cls(transport, caller=caller, token=self._token)
            self._clients[(cls, caller)] = client
        assert isinstance(client, cls)
        return client

    async def close(self) -> None:
        for transport in self._transports.values():
            await transport.close()
        self._transports.clear()
        self._clients.clear()
