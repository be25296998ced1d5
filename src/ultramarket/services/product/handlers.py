"""The product service's reactions to inventory's events: a per-variant stock mirror.

Each event carries ``variant_available`` (summed over warehouses), stored as is on
the variant, so a replay or a duplicate is harmless; the product's ``in_stock``
follows, and only an in/out-of-stock flip invalidates the cached pages. Events
delivered out of order may briefly show an older figure until the next stock event.
"""

from __future__ import annotations

from ultramarket.core.db import after_commit
from ultramarket.core.events import HandlerContext, Subscription, subscription
from ultramarket.services.inventory import events as inventory_events
from ultramarket.services.product.repository import CACHE_PREFIX
from ultramarket.services.product.service import ProductService, StockChange


async def on_stock_event(ctx: HandlerContext) -> None:
    event = inventory_events.StockEvent.model_validate(ctx.envelope.data)
    change = await ProductService(ctx.session).record_stock(
        event.variant_id, event.variant_available
    )
    if change is StockChange.FLIPPED:
        # Which products a listing (and the in_stock filter) shows changed: drop the pages
        # at once. A count that merely moved shows in cached pages until their short TTL
        # runs out, so reservation traffic does not empty the catalog cache;
        # /products/{id}/availability is always live.
        cache = ctx.services.cache
        after_commit(ctx.session, lambda: cache.invalidate_prefix(CACHE_PREFIX))


def subscriptions() -> list[Subscription]:
    return [
        subscription("product", inventory_events.StockChanged, on_stock_event),
        subscription("product", inventory_events.OutOfStock, on_stock_event),
        subscription("product", inventory_events.BackInStock, on_stock_event),
    ]
