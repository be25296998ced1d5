"""Helpers shared by the order tests (imported by module name; not a test file)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import func, select
from tests.shop import configure, make_variant, set_stock  # noqa: F401 - re-exported
from tests.support import assert_error, error_reason, ok  # noqa: F401 - re-exported

from ultramarket.core.container import Container
from ultramarket.services.inventory.models import Reservation, StockItem, StockMovement
from ultramarket.services.order.config import SETTINGS_KEY, OrderSettings

API = "/api/v1/orders"
CART = "/api/v1/cart"
PAYMENTS = "/api/v1/payments"
ADDRESS = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "line1": "1 Analytical Way",
    "city": "Sacramento",
    "region": "CA",
    "postal_code": "95814",
    "country": "US",
}
CARD = {"method": "card", "token": "tok_4242"}
DECLINED = {"method": "card", "token": "tok_chargeDeclined_0002"}


def configure_orders(container: Container, **overrides: Any) -> OrderSettings:
    settings = OrderSettings(**overrides)
    container.extras[SETTINGS_KEY] = settings
    return settings


def checkout_body(
    items: list[tuple[str, int]] | None = None,
    *,
    payment: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"shipping_address": ADDRESS, "payment": payment or CARD}
    if items is not None:
        body["items"] = [{"variant_id": v, "quantity": q} for v, q in items]
    body.update(extra)
    return body


async def checkout(
    client: httpx.AsyncClient,
    user: Any,
    body: dict[str, Any],
    *,
    key: str | None = None,
) -> httpx.Response:
    headers = dict(user.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post(API, json=body, headers=headers)


async def stock(container: Container, variant_id: str) -> dict[str, int]:
    """on_hand, reserved and the sums of the movement log for the variant's item."""
    async with container.db("inventory").read_session() as session:
        item = (
            await session.execute(
                select(StockItem).where(StockItem.variant_id == uuid.UUID(variant_id))
            )
        ).scalar_one()
        moved = (
            await session.execute(
                select(
                    func.coalesce(func.sum(StockMovement.delta_on_hand), 0),
                    func.coalesce(func.sum(StockMovement.delta_reserved), 0),
                ).where(StockMovement.item_id == item.id)
            )
        ).one()
        return {
            "on_hand": item.on_hand,
            "reserved": item.reserved,
            "available": item.on_hand - item.reserved,
            "log_on_hand": int(moved[0]),
            "log_reserved": int(moved[1]),
        }


async def reservation_status(container: Container, order_id: str) -> str | None:
    async with container.db("inventory").read_session() as session:
        return await session.scalar(
            select(Reservation.status).where(Reservation.key == f"order:{order_id}")
        )


async def payments_of(client: httpx.AsyncClient, manager: Any, order_id: str) -> list[Any]:
    response = await client.get(PAYMENTS, params={"order_id": order_id}, headers=manager.headers)
    return ok(response)  # type: ignore[no-any-return]
