"""Tables owned by the cart service: carts and their lines, coupons and redemptions.

One open cart per user is a unique constraint on ``open_user_id`` (the user's id while
the cart is open, NULL once it is merged or closed; NULLs never collide). A guest cart
is found by the SHA-256 of its token, never the token itself. A coupon's code is
unique case-insensitively through ``code_key`` (lower-cased; NULL once deleted, so a
deleted code can be reused). ``coupon.uses`` only changes by one conditional UPDATE,
and a redemption holds a per-user ``slot`` (1..max_uses_per_user) that is unique per
coupon and user, so neither limit can be passed by concurrent checkouts.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ultramarket.core.db import IdMixin, TimestampMixin, service_base, utcnow
from ultramarket.core.events import event_tables

Base = service_base("cart")
EVENTS = event_tables(Base.metadata, "cart")


class Cart(TimestampMixin, IdMixin, Base):
    __tablename__ = "cart"
    __table_args__ = (
        UniqueConstraint("open_user_id"),
        UniqueConstraint("token_hash"),
        Index(None, "user_id"),
        Index(None, "status", "updated_at"),
    )

    user_id: Mapped[uuid.UUID | None]
    # The owner's id while the cart is open; NULL otherwise (one open cart per user).
    open_user_id: Mapped[uuid.UUID | None]
    token_hash: Mapped[str | None] = mapped_column(String(64))  # guests only
    # open -> merged (a guest cart folded into a user's) | closed
    status: Mapped[str] = mapped_column(String(16), default="open")
    currency: Mapped[str | None] = mapped_column(String(3))  # set by the first line
    coupon_code: Mapped[str | None] = mapped_column(String(40))
    merged_into_id: Mapped[uuid.UUID | None]
    abandoned_at: Mapped[datetime | None]


class CartItem(TimestampMixin, IdMixin, Base):
    __tablename__ = "cart_item"
    __table_args__ = (
        UniqueConstraint("cart_id", "variant_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )

    cart_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cart.cart.id", ondelete="CASCADE"))
    variant_id: Mapped[uuid.UUID]
    product_id: Mapped[uuid.UUID]
    # Snapshots taken when added: shown if the product disappears later.
    sku: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[int]
    # The unit price seen when the line was added or last changed (minor units; 64-bit,
    # as the product's price is).
    price_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))


class Coupon(TimestampMixin, IdMixin, Base):
    __tablename__ = "coupon"
    __table_args__ = (
        UniqueConstraint("code_key"),
        CheckConstraint("uses >= 0", name="uses_not_negative"),
        CheckConstraint("max_uses IS NULL OR uses <= max_uses", name="uses_within_max"),
    )

    code: Mapped[str] = mapped_column(String(40))
    code_key: Mapped[str | None] = mapped_column(String(40))  # lower(code); NULL when deleted
    type: Mapped[str] = mapped_column(String(16))  # percentage | fixed | free_shipping
    # percentage: basis points (1250 = 12.5%); fixed: minor units of ``currency``.
    value: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str | None] = mapped_column(String(3))
    min_subtotal_amount: Mapped[int | None] = mapped_column(BigInteger)
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    max_uses: Mapped[int | None]
    max_uses_per_user: Mapped[int | None]
    uses: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(default=True)
    deleted_at: Mapped[datetime | None]


class CouponRedemption(IdMixin, Base):
    __tablename__ = "coupon_redemption"
    __table_args__ = (
        UniqueConstraint("order_id"),
        UniqueConstraint("coupon_id", "user_id", "slot"),
        Index(None, "coupon_id", "user_id"),
    )

    coupon_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cart.coupon.id"))
    order_id: Mapped[uuid.UUID]
    user_id: Mapped[uuid.UUID]
    # The n-th use by this user (1..max_uses_per_user); NULL when unlimited or released.
    slot: Mapped[int | None]
    discount_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="redeemed")  # redeemed | released
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    released_at: Mapped[datetime | None]
