"""Request and response models of the cart service: its public HTTP contract.

Money leaves as decimal strings in major units beside a ``currency``; the
``*_amount`` twins (minor units) are for the order service's arithmetic.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

from ultramarket.core.money import CurrencyCode, DecimalAmount
from ultramarket.core.schemas import ReadSchema, Schema

CouponType = Literal["percentage", "fixed", "free_shipping"]
CouponCode = Annotated[
    str, Field(min_length=3, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
]
# The per-line limit is configuration; this bound only keeps absurd numbers out.
Quantity = Annotated[int, Field(gt=0, le=1_000_000, description="Units; must be positive")]
Country = Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")]
# Free text with an address's bounds ("CA", "US-CA", "New York"; "" for none): the tax
# lookup finds the ISO 3166-2 code from it (CartSettings.region_code).
Region = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]


# -- cart ----------------------------------------------------------------------------------------


class ItemAdd(Schema):
    variant_id: uuid.UUID
    quantity: Quantity = 1


class ItemUpdate(Schema):
    quantity: Quantity


class CouponApply(Schema):
    code: Annotated[str, Field(min_length=1, max_length=40)]


class LineWarning(BaseModel):
    code: Literal["PRICE_CHANGED", "SHORT_STOCK", "UNAVAILABLE"]
    message: str
    previous_price: str | None = None
    available: int | None = None


class CartItemRead(BaseModel):
    id: uuid.UUID
    variant_id: uuid.UUID
    product_id: uuid.UUID
    name: str
    sku: str
    quantity: int
    unit_price: str
    line_total: str
    unit_price_amount: int
    line_total_amount: int
    available: bool = Field(description="False when the product can no longer be bought")
    warnings: list[LineWarning]


class CartCouponRead(BaseModel):
    code: str
    type: CouponType | None = None
    valid: bool
    reason: str | None = Field(None, description="Why the coupon does not apply (an error code)")
    discount: str
    free_shipping: bool = False


class CartRead(BaseModel):
    """The cart: lines at current prices and its totals. ``id`` is null for a guest
    without a cart yet; ``token`` is given once, when a guest cart is created."""

    id: uuid.UUID | None
    token: str | None = None
    user_id: uuid.UUID | None = None
    items: list[CartItemRead]
    item_count: int
    subtotal: str
    discount: str
    shipping: str
    tax: str
    total: str
    currency: str
    coupon: CartCouponRead | None
    country: str | None = None
    region: str | None = None
    subtotal_amount: int
    discount_amount: int
    shipping_amount: int
    tax_amount: int
    total_amount: int


# -- coupons -------------------------------------------------------------------------------------


class _CouponFields(Schema):
    @model_validator(mode="after")
    def _window(self) -> _CouponFields:
        starts_at = getattr(self, "starts_at", None)
        ends_at = getattr(self, "ends_at", None)
        for moment in (starts_at, ends_at):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("datetimes must carry a timezone (UTC)")
        if starts_at and ends_at and ends_at <= starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class CouponCreate(_CouponFields):
    code: CouponCode
    type: CouponType
    value: DecimalAmount | None = Field(
        None,
        description="percentage: 0-100 (up to 2 decimals); fixed: an amount; free_shipping: none",
    )
    min_subtotal: DecimalAmount | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    max_uses: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = None
    max_uses_per_user: Annotated[int, Field(ge=1, le=1000)] | None = None
    currency: CurrencyCode | None = Field(
        None, description="Required for fixed coupons and a min_subtotal; limits the coupon to it"
    )
    active: bool = True


class CouponUpdate(_CouponFields):
    """Any subset of the fields; ``null`` clears an optional one."""

    code: CouponCode | None = None
    type: CouponType | None = None
    value: DecimalAmount | None = None
    min_subtotal: DecimalAmount | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    max_uses: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = None
    max_uses_per_user: Annotated[int, Field(ge=1, le=1000)] | None = None
    currency: CurrencyCode | None = None
    active: bool | None = None


class CouponRead(ReadSchema):
    id: uuid.UUID
    code: str
    type: CouponType
    value: str | None
    min_subtotal: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    max_uses: int | None
    max_uses_per_user: int | None
    currency: str | None
    uses: int
    active: bool
    created_at: datetime
    updated_at: datetime


# -- service-to-service --------------------------------------------------------------------------


class CheckoutQuote(Schema):
    """Price a checkout: the user's cart, or ``items`` when given (at most one line per
    variant); ``coupon`` replaces the cart's coupon, ``""`` prices without one."""

    user_id: uuid.UUID
    items: Annotated[list[ItemAdd], Field(min_length=1, max_length=100)] | None = None
    coupon: Annotated[str, Field(max_length=40)] | None = None
    country: Country | None = None
    region: Region | None = None

    @model_validator(mode="after")
    def _distinct_variants(self) -> CheckoutQuote:
        if self.items is not None:
            ids = [line.variant_id for line in self.items]
            if len(set(ids)) != len(ids):
                raise ValueError("each variant may appear only once")
        return self


class RedeemCoupon(Schema):
    code: Annotated[str, Field(min_length=1, max_length=40)]
    user_id: uuid.UUID
    order_id: uuid.UUID
    subtotal_amount: Annotated[int, Field(ge=0)]
    currency: CurrencyCode


class RedemptionRead(BaseModel):
    id: uuid.UUID
    coupon_id: uuid.UUID
    code: str
    type: CouponType
    order_id: uuid.UUID
    user_id: uuid.UUID
    discount_amount: int
    discount: str
    currency: str
    free_shipping: bool
    status: Literal["redeemed", "released"]


class RemoveOrdered(Schema):
    """A confirmed order's lines, to take out of the cart it was placed from: each
    line's units are subtracted (lines added or raised meanwhile keep the rest), and the
    cart's coupon goes when it is the one the order used."""

    items: Annotated[list[ItemAdd], Field(min_length=1, max_length=100)]
    coupon: Annotated[str, Field(max_length=40)] | None = None


class ClearResult(BaseModel):
    user_id: uuid.UUID
    cleared: bool = Field(description="False when the user had no open cart")


class ReleaseCoupon(Schema):
    order_id: uuid.UUID


class ReleaseResult(BaseModel):
    order_id: uuid.UUID
    released: bool = Field(description="False when nothing was held (already released or none)")
