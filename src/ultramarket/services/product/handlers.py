"""The product service's reactions to other services' events: a per-variant stock
mirror fed by inventory, and best-seller counters fed by confirmed (and cancelled)
orders.

Each event carries ``variant_available`` (summed over warehouses), stored as is on
the variant with the time the event occurred, so a replay or a duplicate is harmless
and an older event (a retried one, or a batch that commits after a newer one) never
overwrites a newer figure; the product's ``in_stock`` follows, and only an
in/out-of-stock flip invalidates the cached pages.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime

from ultramarket.core.db import after_commit
from ultramarket.core.events import BatchContext, Subscription, batch_subscriptions
from ultramarket.services.inventory import events as inventory_events
from ultramarket.services.order import events as order_events
from ultramarket.services.product.repository import CACHE_PREFIX
from ultramarket.services.product.service import ProductService


async def on_stock_events(ctx: BatchContext) -> None:
    """The stock mirror: each variant's latest figure in the batch (a hot variant's
    hundred reservations in a batch are one write), written by ``record_stock_levels``
    (on PostgreSQL three statements, however many variants moved) unless the variant
    already holds a figure from a newer event."""
    latest: dict[uuid.UUID, int] = {}
    times: dict[uuid.UUID, datetime] = {}
    for envelope in ctx.envelopes:  # in the order they occurred: the last figure wins
        event = inventory_events.StockEvent.model_validate(envelope.data)
        seen = times.get(event.variant_id)
        if seen is None or envelope.occurred_at >= seen:
            latest[event.variant_id] = event.variant_available
            times[event.variant_id] = envelope.occurred_at
    flipped = await ProductService(ctx.session).record_stock_levels(latest, times)
    if flipped:
        # Which products a listing (and the in_stock filter) shows changed: drop the pages
        # at once. A count that merely moved shows in cached pages until their short TTL
        # runs out, so reservation traffic does not empty the catalog cache;
        # /products/{id}/availability is always live.
        cache = ctx.services.cache
        after_commit(ctx.session, lambda: cache.invalidate_prefix(CACHE_PREFIX))


async def on_order_events(ctx: BatchContext) -> None:
    """Best-seller counters: confirmed lines count towards ``sales_count``; a cancelled
    order that had been confirmed no longer does. The batch's sums go in as one
    statement (the inbox makes a redelivery a no-op, so each order counts once).

    No cache invalidation: every order would empty the catalogue cache. Best-seller
    order shows in cached pages once their short TTL runs out, as stock counts do."""
    sold: defaultdict[uuid.UUID, int] = defaultdict(int)
    for envelope in ctx.envelopes:
        event: order_events.OrderConfirmed | order_events.OrderCancelled
        if envelope.type == order_events.OrderConfirmed.type:
            event, sign = order_events.OrderConfirmed.model_validate(envelope.data), 1
        else:
            event, sign = order_events.OrderCancelled.model_validate(envelope.data), -1
            if not event.was_confirmed:
                continue
        for line in event.items:
            sold[line.variant_id] += sign * line.quantity
    await ProductService(ctx.session).record_sales(
        {variant: units for variant, units in sold.items() if units}
    )


def subscriptions() -> list[Subscription]:
    return [
        *batch_subscriptions(
            "product",
            (order_events.OrderConfirmed, order_events.OrderCancelled),
            on_order_events,
        ),
        *batch_subscriptions(
            "product",
            (
                inventory_events.StockChanged,
                inventory_events.OutOfStock,
                inventory_events.BackInStock,
            ),
            on_stock_events,
        ),
    ]
