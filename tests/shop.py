"""Shop set-up shared by the cart, order and end-to-end tests: known cart settings,
stocked products. (Imported as ``tests.shop``; not a test file.)"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select

from tests.support import ok
from ultramarket.core.container import Container
from ultramarket.services.cart.config import SETTINGS_KEY, CartSettings
from ultramarket.services.inventory.models import StockItem
from ultramarket.services.inventory.schemas import StockUpdate
from ultramarket.services.inventory.service import InventoryService

PRODUCTS = "/api/v1/products"


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
