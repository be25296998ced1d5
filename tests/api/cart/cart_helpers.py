"""Helpers shared by the cart tests (imported by module name; not a test file)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from tests.shop import configure, make_variant, set_stock  # noqa: F401 - re-exported
from tests.support import assert_error, ok  # noqa: F401 - re-exported for the tests

API = "/api/v1/cart"
COUPONS = "/api/v1/coupons"
PRODUCTS = "/api/v1/products"
TOKEN = "X-Cart-Token"


async def change_price(
    client: httpx.AsyncClient, manager: Any, v: dict[str, Any], price: str
) -> None:
    body = {
        "variants": [
            {
                "id": v["variant_id"],
                "sku": v["sku"],
                "options": {"size": "M"},
                "price": price,
                "currency": v["currency"],
            }
        ]
    }
    ok(await client.patch(f"{PRODUCTS}/{v['product_id']}", headers=manager.headers, json=body))
    v["price"] = price


async def set_status(
    client: httpx.AsyncClient, manager: Any, v: dict[str, Any], status: str
) -> None:
    body = {"status": status}
    ok(await client.patch(f"{PRODUCTS}/{v['product_id']}", headers=manager.headers, json=body))


async def add(
    client: httpx.AsyncClient,
    variant_id: str,
    quantity: int = 1,
    *,
    headers: dict[str, str] | None = None,
    status: int = 201,
) -> dict[str, Any]:
    response = await client.post(
        f"{API}/items", json={"variant_id": variant_id, "quantity": quantity}, headers=headers or {}
    )
    return ok(response, status)  # type: ignore[no-any-return]


async def make_coupon(client: httpx.AsyncClient, manager: Any, **fields: Any) -> dict[str, Any]:
    body = {"code": f"C{uuid.uuid4().hex[:8].upper()}", "type": "percentage", "value": "10"}
    body.update(fields)
    return ok(await client.post(COUPONS, headers=manager.headers, json=body), 201)  # type: ignore[no-any-return]
