"""Events the cart service publishes (versioned; fields are only ever added)."""

from __future__ import annotations

import uuid
from datetime import datetime

from ultramarket.core.events import Event


class ItemAdded(Event):
    type = "cart.item_added.v1"
    cart_id: uuid.UUID
    user_id: uuid.UUID | None
    variant_id: uuid.UUID
    product_id: uuid.UUID
    sku: str
    quantity: int  # units added by this call
    line_quantity: int  # units on the line after it
    unit_price_amount: int
    currency: str


class CartAbandoned(Event):
    type = "cart.abandoned.v1"
    cart_id: uuid.UUID
    user_id: uuid.UUID | None
    item_count: int
    subtotal_amount: int  # at the prices seen when the lines were added
    currency: str | None
    last_activity_at: datetime
