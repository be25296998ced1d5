"""Helpers shared by the payment tests (imported by module name; not a test file)."""

from __future__ import annotations

from typing import Any

from tests.support import assert_error, ok  # noqa: F401 - re-exported for the tests

API = "/api/v1/payments"
WALLET = "/api/v1/wallet"


def card(order: str = "ord-1", amount: str = "25.00", token: str = "tok_4242", **extra: Any):
    return {
        "order_id": order,
        "amount": amount,
        "currency": "USD",
        "method": "card",
        "token": token,
        **extra,
    }
