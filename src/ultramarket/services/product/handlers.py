"""The product service's reactions to inventory's events: a per-variant stock mirror.

Each event carries ``variant_available`` (summed over warehouses), stored as is on
the variant, so a replay or a duplicate is harmless; the product's ``in_stock``
follows. Events delivered out of order may briefly show an older figure until the
next stock event.
"""

from __future__ import annotations

from ultramarket.core.db import after_commit
from ultramarket.core.events import HandlerContext, Subscription, subscription
from ultramarket.services.inventory import events as inventory_events
from ultramarket.services.product.repository import CACHE_PREFIX
from ultramarket.services.product.service import ProductService


async def on_stock_event(ctx: HandlerContext) -> None:
    event = inventory_events.StockEvent.model_validate(ctx.envelope.data)
    if await ProductService(ctx.session).record_stock(event.variant_id, event.variant_available):
        cache = ctx.services.cache
        after_commit(ctx.session, lambda: cache.invalidate_prefix(CACHE_PREFIX))


def subscriptions() -> list[Subscription]:
    return [
        subscription("product", inventory_events.StockChanged, on_stock_event),
        subscription("product", inventory_events.OutOfStock, on_stock_event),
        subscription("product", inventory_events.BackInStock, on_stock_event),
    ]
