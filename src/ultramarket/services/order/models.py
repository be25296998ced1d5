"""Tables owned by the order service.

An order is written ``pending`` before any stock or money moves, so every later step
of the checkout has a row to record against, and a crash leaves a row the sweeper
can reconcile. Its status only changes by a conditional UPDATE (``WHERE status IN
...``), so two actors (the checkout and the sweeper, two managers) cannot both move
it. ``refunded_amount`` and each line's ``refunded_quantity`` only grow by
conditional UPDATEs bounded by what was paid, so concurrent refunds cannot exceed it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ultramarket.core.db import IdMixin, JSONType, TimestampMixin, service_base, utcnow
from ultramarket.core.events import event_tables

Base = service_base("order")
EVENTS = event_tables(Base.metadata, "order")


class Order(TimestampMixin, IdMixin, Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("number"),
        UniqueConstraint("user_id", "idempotency_key"),
        Index(None, "user_id", "created_at"),
        Index(None, "status", "created_at"),
        Index(None, "created_at"),
        Index(None, "settled", "status"),
        CheckConstraint("refunded_amount >= 0", name="refunded_not_negative"),
        CheckConstraint("refunded_amount <= paid_amount", name="refunded_within_paid"),
    )

    number: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[uuid.UUID]
    email: Mapped[str | None] = mapped_column(String(320))
    # pending -> confirmed -> processing -> shipped -> delivered; payment_failed, cancelled,
    # refunded, partially_refunded (see status.py)
    status: Mapped[str] = mapped_column(String(24), default="pending")
    # unpaid | authorized | paid | partially_refunded | refunded | failed | voided
    payment_status: Mapped[str] = mapped_column(String(24), default="unpaid")
    # Held for a manager's review (fraud score over the review threshold): not swept.
    on_hold: Mapped[bool] = mapped_column(default=False)
    currency: Mapped[str] = mapped_column(String(3))
    # Money in minor units, 64-bit as the product's price is.
    subtotal_amount: Mapped[int] = mapped_column(BigInteger)
    discount_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    shipping_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    tax_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    total_amount: Mapped[int] = mapped_column(BigInteger)
    paid_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    coupon_code: Mapped[str | None] = mapped_column(String(40))
    shipping_address: Mapped[dict[str, Any]] = mapped_column(JSONType)
    billing_address: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    shipping_rate_id: Mapped[str | None] = mapped_column(String(100))
    payment_method: Mapped[str] = mapped_column(String(16))
    payment_id: Mapped[uuid.UUID | None]
    from_cart: Mapped[bool] = mapped_column(default=False)
    # The checkout's Idempotency-Key (unique per user) and a hash of its body.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # Why the checkout failed, replayed as the same error to a retry with the same key.
    failure: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    cancel_reason: Mapped[str | None] = mapped_column(String(500))
    # False while a failed or cancelled order still holds something to give back (its
    # stock, its coupon use): the sweeper retries until it is settled.
    settled: Mapped[bool] = mapped_column(default=True)
    tracking_number: Mapped[str | None] = mapped_column(String(100))
    carrier: Mapped[str | None] = mapped_column(String(100))
    tracking_url: Mapped[str | None] = mapped_column(String(500))
    estimated_delivery: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    shipped_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]


class OrderItem(IdMixin, Base):
    __tablename__ = "order_item"
    __table_args__ = (
        Index(None, "order_id"),
        Index(None, "variant_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(
            "refunded_quantity >= 0 AND refunded_quantity <= quantity", name="refunds_within_qty"
        ),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("order.orders.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(default=0)
    variant_id: Mapped[uuid.UUID]
    product_id: Mapped[uuid.UUID]
    sku: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[int]
    # Money in minor units, 64-bit as the product's price is.
    unit_price_amount: Mapped[int] = mapped_column(BigInteger)
    subtotal_amount: Mapped[int] = mapped_column(BigInteger)  # unit price x quantity
    # The order's discount and tax shared out over its lines (they sum to the order's):
    # what the line cost the customer, and what a refund of its units gives back.
    discount_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    tax_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    total_amount: Mapped[int] = mapped_column(BigInteger)
    refunded_quantity: Mapped[int] = mapped_column(default=0)


class OrderStatusChange(IdMixin, Base):
    __tablename__ = "order_status_history"
    __table_args__ = (Index(None, "order_id", "created_at"),)

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("order.orders.id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str] = mapped_column(String(24))
    note: Mapped[str | None] = mapped_column(String(1000))
    actor: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OrderNote(IdMixin, Base):
    __tablename__ = "order_note"
    __table_args__ = (Index(None, "order_id", "created_at"),)

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("order.orders.id", ondelete="CASCADE"))
    author_id: Mapped[str] = mapped_column(String(100))
    author_role: Mapped[str | None] = mapped_column(String(16))
    # Internal notes are for staff only; the customer sees the others.
    internal: Mapped[bool] = mapped_column(default=False)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OrderRefund(TimestampMixin, IdMixin, Base):
    __tablename__ = "order_refund"
    __table_args__ = (
        UniqueConstraint("order_id", "idempotency_key"),
        Index(None, "status", "created_at"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("order.orders.id", ondelete="CASCADE"))
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units, 64-bit
    reason: Mapped[str] = mapped_column(String(500))
    # [{order_item_id, variant_id, quantity}] for a refund by lines; [] by amount.
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # pending (claimed, money not moved yet) -> succeeded | failed
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # True while the refunded (unshipped) units are still to go back to stock: set with
    # the claim, cleared once inventory has them back (the sweeper retries until then).
    restock: Mapped[bool] = mapped_column(default=False)
    payment_refund_id: Mapped[uuid.UUID | None]
    failure: Mapped[str | None] = mapped_column(String(500))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(100))
