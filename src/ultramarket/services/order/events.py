"""Events the order service publishes (versioned; fields are only ever added).

``order.confirmed`` is the one most services react to: notifications, analytics,
recommendations, search popularity, review eligibility, and the product service's
best-seller counters.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel

from ultramarket.core.events import Event


class OrderLine(BaseModel):
    item_id: uuid.UUID
    variant_id: uuid.UUID
    product_id: uuid.UUID
    sku: str
    name: str
    quantity: int
    unit_price_amount: int
    total_amount: int


class _OrderEvent(Event):
    order_id: uuid.UUID
    number: str
    user_id: uuid.UUID
    currency: str


class OrderConfirmed(_OrderEvent):
    type = "order.confirmed.v1"
    email: str | None
    items: list[OrderLine]
    subtotal_amount: int
    discount_amount: int
    shipping_amount: int
    tax_amount: int
    total_amount: int
    coupon_code: str | None
    payment_method: str
    shipping_country: str | None
    confirmed_at: datetime


class OrderPaymentFailed(_OrderEvent):
    type = "order.payment_failed.v1"
    total_amount: int
    reason: str


class OrderCancelled(_OrderEvent):
    type = "order.cancelled.v1"
    previous_status: str
    reason: str | None
    # Lines that had been sold (confirmed before the cancellation): their units return.
    items: list[OrderLine]
    was_confirmed: bool
    refund_amount: int


class OrderRefunded(_OrderEvent):
    type = "order.refunded.v1"
    refund_id: uuid.UUID
    amount: int
    total_refunded: int
    full: bool
    reason: str
    # [{order_item_id, variant_id, quantity}] for a refund by lines; [] by amount.
    lines: list[dict[str, object]]


class OrderStatusChanged(_OrderEvent):
    type = "order.status_changed.v1"
    from_status: str
    to_status: str
    note: str | None
    tracking_number: str | None
    carrier: str | None
