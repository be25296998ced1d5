"""Product events create a stock item per new variant in the default warehouse (on hand 0),
idempotently, and carry SKU changes over."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from ultramarket.core.container import Container
from ultramarket.core.db import utcnow
from ultramarket.core.events import EventEnvelope
from ultramarket.services.inventory.models import DEFAULT_WAREHOUSE_ID, StockItem, StockMovement
from ultramarket.services.product.events import ProductCreated, ProductUpdated, VariantSnapshot


def snapshot(cls: type, product_id: uuid.UUID, variants: dict[uuid.UUID, str]) -> EventEnvelope:
    event = cls(
        product_id=product_id,
        slug="desk-lamp",
        name="Desk lamp",
        description="A lamp",
        brand=None,
        category_id=None,
        vendor_id=None,
        status="active",
        featured=False,
        attributes={},
        variants=[
            VariantSnapshot(
                variant_id=variant_id, sku=sku, options={}, price_amount=1999, currency="USD"
            )
            for variant_id, sku in variants.items()
        ],
    )
    return EventEnvelope(
        id=uuid.uuid4(),
        type=event.type,
        source="product",
        occurred_at=utcnow(),
        data=event.model_dump(mode="json"),
    )


async def items(container: Container) -> list[tuple[uuid.UUID, str, uuid.UUID, int, int]]:
    async with container.db("inventory").read_session() as session:
        rows = await session.execute(
            select(
                StockItem.variant_id,
                StockItem.sku,
                StockItem.warehouse_id,
                StockItem.on_hand,
                StockItem.reserved,
            ).order_by(StockItem.sku)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_product_events_create_and_update_items(container: Container) -> None:
    product_id, red, blue = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    created = snapshot(ProductCreated, product_id, {red: "LAMP-RED", blue: "LAMP-BLUE"})
    await container.dispatcher.dispatch(created, final_attempt=True)
    assert await items(container) == [
        (blue, "LAMP-BLUE", DEFAULT_WAREHOUSE_ID, 0, 0),
        (red, "LAMP-RED", DEFAULT_WAREHOUSE_ID, 0, 0),
    ]
    # The same event again (redelivery) changes nothing.
    await container.dispatcher.dispatch(created, final_attempt=True)
    assert len(await items(container)) == 2
    # An update renames a SKU and adds a variant; a fresh envelope bypasses the inbox.
    green = uuid.uuid4()
    updated = snapshot(
        ProductUpdated, product_id, {red: "LAMP-CRIMSON", blue: "LAMP-BLUE", green: "LAMP-GREEN"}
    )
    await container.dispatcher.dispatch(updated, final_attempt=True)
    await container.dispatcher.dispatch(
        snapshot(ProductUpdated, product_id, {red: "LAMP-CRIMSON"}), final_attempt=True
    )
    assert [(v, sku) for v, sku, *_ in await items(container)] == [
        (blue, "LAMP-BLUE"),
        (red, "LAMP-CRIMSON"),
        (green, "LAMP-GREEN"),
    ]
    async with container.db("inventory").read_session() as session:
        assert await session.scalar(select(StockMovement.id).limit(1)) is None


async def test_published_product_event_reaches_inventory(container: Container, drain) -> None:
    """Through the outbox and the relay, when the product service is installed."""
    if "product" not in container.specs:
        import pytest

        pytest.skip("the product service is not installed yet")
    variant = uuid.uuid4()
    envelope = snapshot(ProductCreated, uuid.uuid4(), {variant: "VIA-RELAY"})
    async with container.db("product").session() as session:
        await container.publisher("product").publish(
            session, ProductCreated.model_validate(envelope.data)
        )
    await drain()
    assert [(v, sku) for v, sku, *_ in await items(container)] == [(variant, "VIA-RELAY")]


async def test_demo_stock_sets_on_hand(container: Container) -> None:
    from ultramarket.services.inventory.demo import stock_demo

    variant = uuid.uuid4()
    await container.dispatcher.dispatch(
        snapshot(ProductCreated, uuid.uuid4(), {variant: "DEMO-1"}), final_attempt=True
    )
    await stock_demo(container, {variant: 42, uuid.uuid4(): 5})
    assert [(v, on_hand) for v, _, _, on_hand, _ in await items(container)] == [(variant, 42)]
