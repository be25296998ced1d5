"""The stock mirror tells a moved count from an in/out-of-stock flip: only a flip drops
the cached catalog pages, so reservation traffic does not empty the cache."""

from __future__ import annotations

import uuid

from product_helpers import API, create, ok

from ultramarket.core.db import utcnow
from ultramarket.core.events import BatchContext, EventEnvelope
from ultramarket.services.inventory.events import StockChanged
from ultramarket.services.product.handlers import on_stock_events
from ultramarket.services.product.service import ProductService, StockChange


async def test_record_stock_tells_a_count_from_a_flip(client, container, make_user):
    manager = await make_user("MANAGER")
    created = await create(client, manager)
    variant_id = uuid.UUID(created["variants"][0]["id"])

    async def record(available: int) -> StockChange:
        async with container.db("product").session() as session:
            return await ProductService(session).record_stock(variant_id, available, utcnow())

    assert await record(5) is StockChange.FLIPPED  # 0 -> 5: now in stock
    assert await record(5) is StockChange.NONE  # a replay changes nothing
    assert await record(3) is StockChange.FIGURE  # still in stock
    assert await record(0) is StockChange.FLIPPED  # sold out
    assert await record(7) is StockChange.FLIPPED  # back


async def test_only_a_flip_drops_cached_listings(client, container, make_user):
    manager = await make_user("MANAGER")
    created = await create(client, manager)
    variant_id = uuid.UUID(created["variants"][0]["id"])

    async def stock_event(available: int) -> None:
        event = StockChanged(
            item_id=uuid.uuid4(), variant_id=variant_id, sku="X", warehouse_id=uuid.uuid4(),
            on_hand=available, reserved=0, available=available, variant_available=available,
            reason="test",
        )  # fmt: skip
        envelope = EventEnvelope(
            id=uuid.uuid4(), type=event.type, source="inventory", occurred_at=utcnow(),
            data=event.model_dump(mode="json"),
        )  # fmt: skip
        async with container.db("product").session() as session:
            await on_stock_events(BatchContext([envelope], session, container))

    def ids(page: list[dict]) -> list[str]:
        return [p["id"] for p in page]

    await stock_event(5)
    listed = ok(await client.get(API, params={"in_stock": "true"}))
    assert created["id"] in ids(listed)
    shown = next(p for p in listed if p["id"] == created["id"])

    await stock_event(4)  # a count moved: the cached page stays (short TTL)
    again = ok(await client.get(API, params={"in_stock": "true"}))
    assert next(p for p in again if p["id"] == created["id"]) == shown

    await stock_event(0)  # sold out: the page is dropped at once
    assert created["id"] not in ids(ok(await client.get(API, params={"in_stock": "true"})))
    live = ok(await client.get(f"{API}/{created['id']}"))
    assert live["variants"][0]["available"] == 0
