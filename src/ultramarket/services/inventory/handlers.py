"""The inventory service's reactions to the product service's events: every variant
gets a stock item in the default warehouse (on hand 0: low and out of stock, so with
its open alerts and their events), and keeps its SKU in step.

Idempotent on their own (insert-if-missing, absolute updates), on top of the inbox.
"""

from __future__ import annotations

from ultramarket.core.events import HandlerContext, Subscription, subscription
from ultramarket.services.inventory.service import InventoryService
from ultramarket.services.product import events as product_events


async def on_product_saved(ctx: HandlerContext) -> None:
    event = product_events.ProductUpdated.model_validate(ctx.envelope.data)
    # With the publisher: a new item starts low (at 0), so its alerts' events go out.
    service = InventoryService(ctx.session, ctx.services.publisher("inventory"), actor="product")
    for variant in event.variants:
        await service.ensure_variant(variant.variant_id, variant.sku)


def subscriptions() -> list[Subscription]:
    return [
        subscription("inventory", product_events.ProductCreated, on_product_saved),
        subscription("inventory", product_events.ProductUpdated, on_product_saved),
    ]
