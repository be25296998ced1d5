"""Request and response models of the payment service (the public HTTP contract).

Until the order service exists, ``POST /payments`` takes the amount and currency in
the body and ``order_id`` is only a reference (any string, usually the order's
UUID); the order service passes its own totals through ``PaymentClient``.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field, field_validator

from ultramarket.core.money import CurrencyCode, DecimalAmount, Money
from ultramarket.core.schemas import ReadSchema, Schema

Method = Literal["card", "wallet", "paypal"]
Token = Annotated[str, Field(min_length=1, max_length=200)]


def money_str(amount: int, currency: str) -> str:
    return str(Money(amount, currency))


class PaymentCreate(Schema):
    order_id: Annotated[str, Field(min_length=1, max_length=100)]
    amount: DecimalAmount
    currency: CurrencyCode
    method: Method
    token: Token | None = Field(default=None, description="Card provider token (method card)")
    capture: bool = Field(default=True, description="false: authorise only; capture or void later")

    @field_validator("amount")
    @classmethod
    def _positive(cls, value: object) -> object:
        if value is not None and value <= 0:  # type: ignore[operator]
            raise ValueError("amount must be positive")
        return value


class InternalCharge(PaymentCreate):
    """A service paying on behalf of a user (the order service's checkout)."""

    user_id: uuid.UUID
    ip: str | None = None


class PaymentRead(ReadSchema):
    id: uuid.UUID
    order_id: str
    user_id: uuid.UUID
    method: str
    provider: str
    status: str
    amount: str
    currency: str
    refunded_amount: str
    refundable_amount: str
    provider_reference: str | None = None
    decline_code: str | None = None
    failure_message: str | None = None
    risk_score: int = 0
    review_required: bool = False
    created_at: datetime
    updated_at: datetime
    succeeded_at: datetime | None = None

    @classmethod
    def of(cls, p: object) -> PaymentRead:
        amount = p.amount  # type: ignore[attr-defined]
        refunded = p.refunded_amount  # type: ignore[attr-defined]
        currency = p.currency  # type: ignore[attr-defined]
        refundable = (
            amount - refunded
            if p.status in ("succeeded", "partially_refunded")  # type: ignore[attr-defined]
            else 0
        )
        return cls(
            id=p.id,  # type: ignore[attr-defined]
            order_id=p.order_id,  # type: ignore[attr-defined]
            user_id=p.user_id,  # type: ignore[attr-defined]
            method=p.method,  # type: ignore[attr-defined]
            provider=p.provider,  # type: ignore[attr-defined]
            status=p.status,  # type: ignore[attr-defined]
            amount=money_str(amount, currency),
            currency=currency,
            refunded_amount=money_str(refunded, currency),
            refundable_amount=money_str(refundable, currency),
            provider_reference=p.provider_ref,  # type: ignore[attr-defined]
            decline_code=p.decline_code,  # type: ignore[attr-defined]
            failure_message=p.failure_message,  # type: ignore[attr-defined]
            risk_score=p.risk_score,  # type: ignore[attr-defined]
            review_required=p.review_required,  # type: ignore[attr-defined]
            created_at=p.created_at,  # type: ignore[attr-defined]
            updated_at=p.updated_at,  # type: ignore[attr-defined]
            succeeded_at=p.succeeded_at,  # type: ignore[attr-defined]
        )


class ForfeitCharge(Schema):
    order_id: Annotated[str, Field(min_length=1, max_length=100)]


class RefundCreate(Schema):
    amount: DecimalAmount | None = Field(default=None, description="Default: all refundable")
    reason: Annotated[str, Field(min_length=1, max_length=500)] = "requested_by_customer"

    @field_validator("amount")
    @classmethod
    def _positive(cls, value: object) -> object:
        if value is not None and value <= 0:  # type: ignore[operator]
            raise ValueError("amount must be positive")
        return value


class RefundRead(ReadSchema):
    id: uuid.UUID
    payment_id: uuid.UUID
    amount: str
    currency: str
    reason: str
    status: str
    provider_reference: str | None = None
    created_at: datetime


class RefundResult(ReadSchema):
    refund: RefundRead
    payment: PaymentRead


class WebhookAck(ReadSchema):
    received: bool = True
    replayed: bool = False
    event_id: str
    event_type: str


class ProviderStats(ReadSchema):
    provider: str
    currency: str
    count: int
    succeeded: int
    failed: int
    success_rate: float
    volume: str
    refunded: str


class DayStats(ReadSchema):
    day: date
    currency: str
    count: int
    succeeded: int
    failed: int
    volume: str
    refunded: str


class CurrencyTotals(ReadSchema):
    currency: str
    count: int
    succeeded: int
    failed: int
    success_rate: float
    volume: str
    refunded: str
    net: str


class PaymentAnalytics(ReadSchema):
    since: datetime
    until: datetime
    count: int
    succeeded: int
    failed: int
    success_rate: float
    totals: list[CurrencyTotals]
    by_provider: list[ProviderStats]
    by_day: list[DayStats]


# -- wallet -----------------------------------------------------------------------------


class WalletRead(ReadSchema):
    balance: str
    currency: str


class WalletDeposit(Schema):
    amount: DecimalAmount
    currency: CurrencyCode
    token: Token

    @field_validator("amount")
    @classmethod
    def _positive(cls, value: object) -> object:
        if value <= 0:  # type: ignore[operator]
            raise ValueError("amount must be positive")
        return value


class WalletWithdraw(Schema):
    amount: DecimalAmount
    currency: CurrencyCode

    @field_validator("amount")
    @classmethod
    def _positive(cls, value: object) -> object:
        if value <= 0:  # type: ignore[operator]
            raise ValueError("amount must be positive")
        return value


class WalletTransaction(ReadSchema):
    id: uuid.UUID
    transaction_id: uuid.UUID
    kind: str
    amount: str  # signed: + into the wallet, - out of it
    currency: str
    balance_after: str | None = None
    reference: str | None = None
    created_at: datetime


class WalletMoveResult(ReadSchema):
    transaction_id: uuid.UUID
    kind: str
    amount: str
    currency: str
    balance: str
    provider_reference: str | None = None
