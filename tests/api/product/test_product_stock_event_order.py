"""The stock mirror applies a stock event only when it is newer than the one the
variant's figure came from: a retried older event, or a batch committed after a newer
one, never brings back a stale availability."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from product_helpers import create

from ultramarket.core.db import utcnow
from ultramarket.core.events import BatchContext, EventEnvelope
from ultramarket.services.inventory.events import StockChanged
from ultramarket.services.product.handlers import on_stock_events
from ultramarket.services.product.models import Product, ProductVariant


def stock_event(variant_id: uuid.UUID, available: int, occurred_at: datetime) -> EventEnvelope:
    event = StockChanged(
        item_id=uuid.uuid4(), variant_id=variant_id, sku="X", warehouse_id=uuid.uuid4(),
        on_hand=available, reserved=0, available=available, variant_available=available,
        reason="test",
    )  # fmt: skip
    return EventEnvelope(
        id=uuid.uuid4(), type=event.type, source="inventory", occurred_at=occurred_at,
        data=event.model_dump(mode="json"),
    )  # fmt: skip


async def test_an_older_stock_event_never_overwrites_a_newer_figure(client, container, make_user):
    manager = await make_user("MANAGER")
    created = await create(client, manager)
    variant_id = uuid.UUID(created["variants"][0]["id"])
    t0 = utcnow()

    async def deliver(*envelopes: EventEnvelope) -> None:
        async with container.db("product").session() as session:
            await on_stock_events(BatchContext(list(envelopes), session, container))

    async def shown() -> tuple[int, bool]:
        # From the tables: cached pages may show a count up to their TTL old.
        async with container.db("product").read_session() as session:
            variant = await session.get_one(ProductVariant, variant_id)
            product = await session.get_one(Product, variant.product_id)
            return variant.available, product.in_stock

    # A relay's batch with the newer figure commits first, then another's older one.
    await deliver(stock_event(variant_id, 3, t0 + timedelta(seconds=2)))
    await deliver(stock_event(variant_id, 0, t0 + timedelta(seconds=1)))
    assert await shown() == (3, True)

    # A newer event with the same figure still counts as the latest: an event older than
    # it but newer than the figure's first event is not applied either.
    await deliver(stock_event(variant_id, 3, t0 + timedelta(seconds=5)))
    await deliver(stock_event(variant_id, 0, t0 + timedelta(seconds=4)))
    assert await shown() == (3, True)

    # Newer events apply (sold out, then back); in one batch the latest one wins.
    await deliver(stock_event(variant_id, 0, t0 + timedelta(seconds=6)))
    assert await shown() == (0, False)
    await deliver(
        stock_event(variant_id, 9, t0 + timedelta(seconds=8)),
        stock_event(variant_id, 4, t0 + timedelta(seconds=7)),
    )
    assert await shown() == (9, True)
