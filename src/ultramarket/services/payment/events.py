"""Events the payment service publishes (versioned; fields are only ever added)."""

from __future__ import annotations

import uuid

from ultramarket.core.events import Event


class PaymentEventBase(Event):
    payment_id: uuid.UUID
    order_id: str
    user_id: uuid.UUID
    method: str
    provider: str
    amount: int  # minor units
    currency: str


class PaymentSucceeded(PaymentEventBase):
    type = "payment.succeeded.v1"


class PaymentFailed(PaymentEventBase):
    type = "payment.failed.v1"
    decline_code: str | None = None
    # The payment had succeeded (its order may be confirmed, even shipped) and the
    # provider took the money back: a pending capture denied, a reversal.
    after_success: bool = False


class PaymentRefunded(PaymentEventBase):
    type = "payment.refunded.v1"
    refund_id: uuid.UUID
    refund_amount: int  # this refund, minor units
    refunded_amount: int  # all refunds so far
    reason: str
    fully_refunded: bool
    # Not made by the order service (at the provider - its dashboard, a dispute - or by
    # staff through POST /payments/{id}/refund): the order service records it on the order.
    external: bool = False
