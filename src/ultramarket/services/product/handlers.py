"""The product service's reactions to other services' events: a per-variant stock
mirror fed by inventory, and best-seller counters fed by confirmed (and cancelled)
orders.

Each event carries ``variant_available`` (summed over warehouses), stored as is on
the variant, so a replay or a duplicate is harmless; the product's ``in_stock``
follows, and only an in/out-of-stock flip invalidates the cached pages. Events
delivered out of order may briefly show an older figure until the next stock event.
"""

from __future__ import annotations

import uuid

from ultramarket.core.db import after_commit
from ultramarket.core.events import HandlerContext, Subscription, subscription
from ultramarket.services.inventory import events as inventory_events
from ultramarket.services.order import events as order_events
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


async def on_order_confirmed(ctx: HandlerContext) -> None:
    """Confirmed lines count towards ``sales_count`` (the inbox makes a redelivery a
    no-op, so each order counts once)."""
    event = order_events.OrderConfirmed.model_validate(ctx.envelope.data)
    await _record(ctx, {line.variant_id: line.quantity for line in event.items}, sign=1)


async def on_order_cancelled(ctx: HandlerContext) -> None:
    """A cancelled order that had been confirmed no longer counts as sold."""
    event = order_events.OrderCancelled.model_validate(ctx.envelope.data)
    if event.was_confirmed:
        await _record(ctx, {line.variant_id: line.quantity for line in event.items}, sign=-1)


async def _record(ctx: HandlerContext, quantities: dict[uuid.UUID, int], *, sign: int) -> None:
    # No cache invalidation: every order would empty the catalogue cache. Best-seller
    # order shows in cached pages once their short TTL runs out, as stock counts do.
    await ProductService(ctx.session).record_sales(
        {variant: sign * units for variant, units in quantities.items()}
    )


def subscriptions() -> list[Subscription]:
    return [
        subscription("product", order_events.OrderConfirmed, on_order_confirmed),
        subscription("product", order_events.OrderCancelled, on_order_cancelled),
        subscription("product", inventory_events.StockChanged, on_stock_event),
        subscription("product", inventory_events.OutOfStock, on_stock_event),
        subscription("product", inventory_events.BackInStock, on_stock_event),
    ]
