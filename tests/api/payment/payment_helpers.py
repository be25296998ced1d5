"""Helpers shared by the payment tests (imported by module name; not a test file)."""

from __future__ import annotations

from typing import Any

import httpx

API = "/api/v1/payments"
WALLET = "/api/v1/wallet"


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False, body
    assert body["error"]["code"] == code, body
    return body["error"]


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is True
    return body["data"]


def card(order: str = "ord-1", amount: str = "25.00", token: str = "tok_4242", **extra: Any):
    return {
        "order_id": order,
        "amount": amount,
        "currency": "USD",
        "method": "card",
        "token": token,
        **extra,
    }
