"""Base for typed service-to-service clients.

A client speaks HTTP through httpx. In all-in-one mode its transport is the
in-process ASGI app (no socket); in split mode it is the network. Every call
carries the request id and the calling service's identity (a short-lived service
token), idempotent calls are retried, and a remote error envelope is raised again
as the same domain error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

import httpx

from ultramarket.core.errors import ERROR_CLASSES, DomainError, RateLimited, Unavailable
from ultramarket.core.logging import request_id_var

TokenSource = Callable[[str], Awaitable[str]]  # caller name -> service token

RETRYABLE_STATUS = {502, 503, 504}
IN_PROCESS_CLIENT = ("in-process", 0)


class ServiceClient:
    service: ClassVar[str]

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        caller: str,
        token: TokenSource,
        retries: int = 2,
    ) -> None:
        self._http = http
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
                response = await self._http.request(
                    method, path, json=json, params=params, headers=await self._headers(headers)
                )
            except httpx.TransportError as exc:
                last_error = exc
            else:
                if response.status_code not in RETRYABLE_STATUS or attempt == attempts - 1:
                    return self._unwrap(response)
                last_error = None
            await asyncio.sleep(0.05 * 2**attempt)
        raise Unavailable(
            f"{self.service} service unreachable", code="UPSTREAM_UNAVAILABLE"
        ) from last_error

    def _unwrap(self, response: httpx.Response) -> Any:
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
            # A refused *service* identity is our failure, never the end user's: it must
            # not reach them as their own 401/403.
            raise Unavailable(f"{self.service} service failed", code="UPSTREAM_ERROR")
        if isinstance(error, dict):
            raise cls(
                str(error.get("message") or cls.message),
                code=error.get("reason") or error.get("code"),
                details=error.get("details") or [],
            )
        raise cls()


C = TypeVar("C", bound=ServiceClient)


class ClientFactory:
    """Builds and caches one client per service, on the right transport."""

    def __init__(
        self,
        *,
        token: TokenSource,
        base_url: Callable[[str], str],
        local_app: Callable[[str], Any | None],
        timeout: float = 5.0,
    ) -> None:
        self._token = token
        self._base_url = base_url
        self._local_app = local_app
        self._timeout = timeout
        self._clients: dict[tuple[type[ServiceClient], str], ServiceClient] = {}
        self._http: dict[str, httpx.AsyncClient] = {}

    def _http_for(self, service: str) -> httpx.AsyncClient:
        http = self._http.get(service)
        if http is None:
            app = self._local_app(service)
            if app is not None:
                http = httpx.AsyncClient(
                    # A client address no socket can have: the platform middleware
                    # leaves in-process calls out of the per-IP rate limit.
                    transport=httpx.ASGITransport(app=app, client=IN_PROCESS_CLIENT),
                    base_url=f"http://{service}.internal",
                    timeout=self._timeout,
                )
            else:
                http = httpx.AsyncClient(base_url=self._base_url(service), timeout=self._timeout)
            self._http[service] = http
        return http

    def get(self, cls: type[C], caller: str) -> C:
        """The client of ``cls.service`` used by the service named ``caller``."""
        client = self._clients.get((cls, caller))
        if client is None:
            client = cls(self._http_for(cls.service), caller=caller, token=self._token)
            self._clients[(cls, caller)] = client
        assert isinstance(client, cls)
        return client

    async def close(self) -> None:
        for http in self._http.values():
            await http.aclose()
        self._http.clear()
        self._clients.clear()
