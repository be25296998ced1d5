"""Request and response models of the order service: its public HTTP contract.

Money leaves as decimal strings in major units beside ``currency`` (``"99.99"``);
the ``*_amount`` twins are the same figures in minor units. Moments taken in
(``estimated_delivery``, the ``from``/``to`` filters) are ISO 8601; one without an
offset is UTC, and a date alone is its midnight UTC (as the user service's
filters read them).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, model_validator

from ultramarket.core.money import DecimalAmount
from ultramarket.core.schemas import ReadSchema, Schema
from ultramarket.services.order.status import Status

Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
Required = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Quantity = Annotated[int, Field(gt=0, le=10_000, description="Units; must be positive")]
PaymentToken = Annotated[str, Field(min_length=1, max_length=200)]


def as_utc(value: datetime) -> datetime:
    """A moment in UTC; one given without an offset (or a date alone) is taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Moment = Annotated[datetime, AfterValidator(as_utc)]


# -- checkout -----------------------------------------------------------------------------------


class Address(Schema):
    first_name: Text | None = None
    last_name: Text | None = None
    company: Text | None = None
    line1: Required
    line2: Text | None = None
    city: Required
    region: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    postal_code: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9 \-]{0,19}$"),
        ]
        | None
    ) = None
    country: Annotated[
        str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{2}$")
    ]
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=40)] | None = None


class CheckoutLine(Schema):
    variant_id: uuid.UUID
    quantity: Quantity


class CardPayment(Schema):
    method: Literal["card"]
    token: PaymentToken = Field(description="The card provider's token (test: tok_4242)")


class WalletPayment(Schema):
    method: Literal["wallet"]


class PaypalPayment(Schema):
    method: Literal["paypal"]
    token: PaymentToken | None = Field(
        None, description="The PayPal order id the buyer approved (else one is created)"
    )


PaymentIn = Annotated[CardPayment | WalletPayment | PaypalPayment, Field(discriminator="method")]


class CheckoutCreate(Schema):
    """Without ``items`` the caller's cart is checked out (and emptied on success)."""

    shipping_address: Address | None = Field(
        None, description="Default: the user's default shipping address"
    )
    billing_address: Address | None = None
    shipping_rate_id: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    coupon: Annotated[str, Field(min_length=1, max_length=40)] | None = Field(
        None, description="Replaces the cart's coupon for this order"
    )
    items: Annotated[list[CheckoutLine], Field(min_length=1, max_length=100)] | None = None
    payment: PaymentIn
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None

    @model_validator(mode="after")
    def _distinct_variants(self) -> CheckoutCreate:
        if self.items is not None:
            ids = [line.variant_id for line in self.items]
            if len(set(ids)) != len(ids):
                raise ValueError("each variant may appear only once in items")
        return self


# -- reading ------------------------------------------------------------------------------------


class OrderItemRead(BaseModel):
    id: uuid.UUID
    variant_id: uuid.UUID
    product_id: uuid.UUID
    sku: str
    name: str
    quantity: int
    refunded_quantity: int
    unit_price: str
    subtotal: str
    discount: str
    tax: str
    line_total: str
    unit_price_amount: int
    line_total_amount: int


class StatusChangeRead(ReadSchema):
    from_status: str | None
    status: str
    note: str | None
    actor: str | None = Field(
        description="Staff see who (user:<id>, service:<name>, system:<step>); the order's "
        "customer sees customer, staff or system"
    )
    at: datetime


class NoteRead(ReadSchema):
    id: uuid.UUID
    body: str
    internal: bool
    author_id: str
    author_role: str | None
    created_at: datetime


class TrackingRead(BaseModel):
    order_id: uuid.UUID
    number: str
    status: str
    carrier: str | None
    tracking_number: str | None
    tracking_url: str | None
    estimated_delivery: datetime | None
    shipped_at: datetime | None
    delivered_at: datetime | None
    history: list[StatusChangeRead]


class RefundRead(BaseModel):
    id: uuid.UUID
    amount: str
    currency: str
    reason: str
    status: str
    lines: list[dict[str, Any]]
    created_at: datetime


class OrderRead(BaseModel):
    id: uuid.UUID
    number: str
    user_id: uuid.UUID
    status: Status
    payment_status: str
    on_hold: bool = Field(description="Held for a manager's fraud review")
    items: list[OrderItemRead]
    item_count: int
    subtotal: str
    discount: str
    shipping: str
    tax: str
    total: str
    refunded: str
    currency: str
    subtotal_amount: int
    discount_amount: int
    shipping_amount: int
    tax_amount: int
    total_amount: int
    refunded_amount: int
    coupon_code: str | None
    shipping_address: dict[str, Any]
    billing_address: dict[str, Any] | None
    shipping_rate_id: str | None
    payment_method: str
    payment_id: uuid.UUID | None
    cancel_reason: str | None
    carrier: str | None
    tracking_number: str | None
    tracking_url: str | None
    estimated_delivery: datetime | None
    status_history: list[StatusChangeRead]
    notes: list[NoteRead]
    refunds: list[RefundRead]
    created_at: datetime
    updated_at: datetime
    confirmed_at: datetime | None
    shipped_at: datetime | None
    delivered_at: datetime | None
    cancelled_at: datetime | None


class OrderSummary(BaseModel):
    """A row of the order list (no lines, history or notes)."""

    id: uuid.UUID
    number: str
    user_id: uuid.UUID
    status: str
    payment_status: str
    item_count: int
    total: str
    total_amount: int
    refunded: str
    currency: str
    created_at: datetime


# -- changes ------------------------------------------------------------------------------------


class StatusUpdate(Schema):
    status: Status
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] | None = None
    carrier: Text | None = None
    tracking_number: Text | None = None
    tracking_url: Annotated[str, Field(max_length=500, pattern=r"^https?://")] | None = None
    estimated_delivery: Moment | None = Field(
        None, description="ISO 8601 date or datetime; without an offset, UTC"
    )


class TrackingUpdate(Schema):
    """Any subset; the shipping service fills these when it books a shipment."""

    carrier: Text | None = None
    tracking_number: Text | None = None
    tracking_url: Annotated[str, Field(max_length=500, pattern=r"^https?://")] | None = None
    estimated_delivery: Moment | None = Field(
        None, description="ISO 8601 date or datetime; without an offset, UTC"
    )


class CancelRequest(Schema):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None


class RefundLine(Schema):
    order_item_id: uuid.UUID
    quantity: Quantity


class RefundCreate(Schema):
    """``amount`` or ``lines`` (neither: everything still refundable)."""

    amount: DecimalAmount | None = None
    lines: Annotated[list[RefundLine], Field(min_length=1, max_length=100)] | None = None
    reason: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)
    ] = "requested_by_customer"
    restock: bool | None = Field(
        None, description="Put refunded lines back in stock (default: when not shipped yet)"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> RefundCreate:
        if self.amount is not None and self.lines is not None:
            raise ValueError("give amount or lines, not both")
        if self.amount is not None and self.amount <= 0:
            raise ValueError("amount must be positive")
        if self.lines is not None:
            ids = [line.order_item_id for line in self.lines]
            if len(set(ids)) != len(ids):
                raise ValueError("each order line may appear only once")
        return self


class NoteCreate(Schema):
    body: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
    internal: bool = Field(False, description="Staff only: hidden from the customer")


# -- stats --------------------------------------------------------------------------------------


class CurrencyStats(BaseModel):
    """Sales in one currency: orders paid and kept (confirmed, processing, shipped,
    delivered, partially or fully refunded); cancelled and failed orders are not sales."""

    currency: str
    orders: int = Field(description="Kept orders")
    revenue: str = Field(description="What the kept orders paid, before refunds")
    refunded: str = Field(description="Refunds of kept orders that went through (not pending)")
    net_revenue: str = Field(description="revenue - refunded: the money kept")
    average_order_value: str = Field(description="net_revenue / orders")
    revenue_amount: int
    refunded_amount: int


class OrderStats(BaseModel):
    since: datetime | None
    until: datetime | None
    total_orders: int
    by_status: dict[str, int]
    revenue: list[CurrencyStats] = Field(
        description="Per currency, over kept orders (paid, not cancelled or failed), net of "
        "the refunds that went through"
    )
