"""Behind the gateway, granian is served ``create_behind_proxy()``: the client address
comes from ``X-Forwarded-For`` when the request comes from a trusted proxy (as uvicorn's
``proxy_headers`` does), and only then."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from ultramarket import app as app_module
from ultramarket.core.config import get_settings


async def echo_client(scope: Scope, receive: Receive, send: Send) -> None:
    host = scope["client"][0].encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": host})


@pytest.fixture
def behind_proxy(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("ULTRAMARKET_FORWARDED_ALLOW_IPS", "10.0.0.5, 10.1.0.0/16")
    monkeypatch.setattr(app_module, "create", lambda: echo_client)
    get_settings.cache_clear()
    yield app_module.create_behind_proxy()
    get_settings.cache_clear()


async def client_seen(app: Any, peer: str, forwarded: str | None) -> str:
    transport = httpx.ASGITransport(app=app, client=(peer, 50000))
    headers = {"x-forwarded-for": forwarded} if forwarded else {}
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        return (await client.get("/", headers=headers)).text


async def test_a_trusted_proxy_names_the_client(behind_proxy: Any) -> None:
    assert await client_seen(behind_proxy, "10.0.0.5", "203.0.113.9") == "203.0.113.9"
    # Through two proxies of ours: the last address that is not one of them.
    chain = "203.0.113.9, 10.1.4.4"
    assert await client_seen(behind_proxy, "10.1.2.3", chain) == "203.0.113.9"


async def test_anyone_else_is_the_client_whatever_they_claim(behind_proxy: Any) -> None:
    assert await client_seen(behind_proxy, "198.51.100.7", "203.0.113.9") == "198.51.100.7"
    assert await client_seen(behind_proxy, "10.0.0.5", None) == "10.0.0.5"
