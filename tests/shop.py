"""Shop set-up shared by the cart, order and end-to-end tests: known cart settings,
stocked products. (Imported as ``tests.shop``; not a test file.)"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from tests.support import ok
from ultramarket.core.container import Container
from ultramarket.services.cart.config import SETTINGS_KEY, CartSettings
from ultramarket.services.inventory.models import Reservation, StockItem, StockMovement
from ultramarket.services.inventory.schemas import StockUpdate
from ultramarket.services.inventory.service import InventoryService
from ultramarket.services.order.config import SETTINGS_KEY as ORDER_SETTINGS_KEY
from ultramarket.services.order.config import OrderSettings

PRODUCTS = "/api/v1/products"
ORDERS = "/api/v1/orders"
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


def configure(container: Container, **overrides: Any) -> CartSettings:
    """Known cart settings, whatever the environment says."""
    values: dict[str, Any] = {
        "max_quantity_per_line": 99,
        "default_currency": "USD",
        "shipping_flat": {"USD": 599, "EUR": 499},
        "free_shipping_threshold": {"USD": 5000, "EUR": 5000},
        "tax_rates_bp": {"US": 0, "US-CA": 725, "DE": 1900},
        "default_tax_rate_bp": 0,
        "default_country": None,
        # Fresh prices and stock on every read (the cache has its own test).
        "cache_seconds": 0,
    }
    values.update(overrides)
    settings = CartSettings(**values)
    container.extras[SETTINGS_KEY] = settings
    return settings


async def set_stock(container: Container, variant_id: str, on_hand: int) -> None:
    async with container.db("inventory").session() as session:
        item_id = await session.scalar(
            select(StockItem.id).where(StockItem.variant_id == uuid.UUID(variant_id))
        )
        assert item_id is not None, "the inventory item was not created (drain first)"
        service = InventoryService(session, container.publisher("inventory"), actor="test")
        await service.update_item(item_id, StockUpdate(on_hand=on_hand))


async def make_variant(
    client: httpx.AsyncClient,
    container: Container,
    drain: Any,
    manager: Any,
    *,
    price: str = "19.99",
    currency: str = "USD",
    stock: int = 50,
    name: str = "Trail Runner Shoe",
) -> dict[str, Any]:
    """An active product with one variant, stocked: {variant_id, product_id, sku, ...}."""
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    body = {
        "name": name,
        "description": "For the cart tests.",
        "status": "active",
        "variants": [{"sku": sku, "options": {"size": "M"}, "price": price, "currency": currency}],
    }
    product = ok(await client.post(PRODUCTS, headers=manager.headers, json=body), 201)
    variant = product["variants"][0]
    await drain()
    await set_stock(container, variant["id"], stock)
    return {
        "variant_id": variant["id"],
        "product_id": product["id"],
        "sku": sku,
        "name": name,
        "currency": currency,
        "price": price,
    }


def configure_orders(container: Container, **overrides: Any) -> OrderSettings:
    settings = OrderSettings(**overrides)
    container.extras[ORDER_SETTINGS_KEY] = settings
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
    return await client.post(ORDERS, json=body, headers=headers)


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


def no_fraud_checks(container: Container) -> None:
    """Races place many orders from one IP and few users in seconds: exactly what the
    velocity rules exist to stop. Tests that are not about fraud switch them off."""
    container.settings.payments.fraud_enabled = False


def flaky_card_provider(monkeypatch: Any, failures: int = 1) -> list[str]:
    """The test card provider times out on its first ``failures`` charges; returns the
    provider idempotency keys it was called with."""
    from ultramarket.core.errors import Unavailable
    from ultramarket.services.payment.providers.test import TestProvider

    real, calls = TestProvider.charge, []

    async def flaky(self: TestProvider, request: Any) -> Any:
        calls.append(request.idempotency_key)
        if len(calls) <= failures:
            raise Unavailable("timed out", code="PROVIDER_UNAVAILABLE")
        return await real(self, request)

    monkeypatch.setattr(TestProvider, "charge", flaky)
    return calls


def crash_after_the_charge(monkeypatch: Any, owner: type, recorder: str) -> list[str]:
    """The test card provider charges, then the first request dies before recording the
    answer: ``owner.recorder`` (the method recording it) raises an unexpected error once.
    Returns the provider idempotency keys the provider was asked with."""
    from ultramarket.services.payment.providers.test import TestProvider

    charge, record = TestProvider.charge, getattr(owner, recorder)
    keys: list[str] = []
    crashes = [RuntimeError("the process died after the charge")]

    async def recorded(self: TestProvider, request: Any) -> Any:
        keys.append(request.idempotency_key)
        return await charge(self, request)

    async def crash_once(self: Any, *args: Any) -> Any:
        if crashes:
            raise crashes.pop()
        return await record(self, *args)

    monkeypatch.setattr(TestProvider, "charge", recorded)
    monkeypatch.setattr(owner, recorder, crash_once)
    return keys


async def card_webhook(container: Container, monkeypatch: Any, event_id: str, **event: Any) -> None:
    """A delivery of the card provider's webhook (the test provider's, verified as is)."""
    from ultramarket.services.payment.providers import providers_of
    from ultramarket.services.payment.providers.base import WebhookEvent
    from ultramarket.services.payment.providers.test import TestProvider
    from ultramarket.services.payment.service import PaymentService

    async def verified(self: Any, payload: bytes, headers: Any) -> WebhookEvent:
        return WebhookEvent(id=event_id, type="payment_intent.x", payload={}, **event)

    monkeypatch.setattr(TestProvider, "verify_webhook", verified)
    async with container.db("payment").session() as session:
        service = PaymentService(
            session,
            container.publisher("payment"),
            providers_of(container),
            container.settings.payments,
            actor="webhook",
        )
        await service.webhook("test", b"{}", {})


async def deposit_attempts(container: Container) -> list[Any]:
    """Every wallet deposit's attempt, as committed."""
    from ultramarket.services.payment.models import DepositAttempt

    async with container.db("payment").read_session() as session:
        return list(await session.scalars(select(DepositAttempt)))


async def deposit_credits(container: Container) -> int:
    """How many deposits were credited to a wallet (the ledger's credit entries)."""
    from ultramarket.services.payment.models import LedgerEntry

    async with container.db("payment").read_session() as session:
        rows = await session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "deposit"))
        return sum(1 for r in rows if r.amount > 0)
