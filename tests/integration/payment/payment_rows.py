"""Rows and provider answers the payment tests start from (imported by module name; not
a test file)."""

from __future__ import annotations

import uuid
from typing import Any

import stripe

from ultramarket.services.payment.models import Payment


async def add_payment(container: Any, user_id: str, **fields: Any) -> uuid.UUID:
    """A Stripe card payment of 50.00 USD (``fields`` change it), written as it stands."""
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "user_id": uuid.UUID(user_id),
        "order_id": "o-1",
        "method": "card",
        "provider": "stripe",
        "status": "succeeded",
        "amount": 5000,
        "currency": "USD",
        "refunded_amount": 0,
        "provider_ref": "pi_1",
        **fields,
    }
    async with container.db("payment").session() as session:
        session.add(Payment(**values))
    return uuid.UUID(str(values["id"]))


async def card_visa(token: str, *args: Any, **kwargs: Any) -> Any:
    """Stripe's PaymentMethod for ``token``: a Visa card (a stand-in for its retrieve)."""
    return stripe.PaymentMethod.construct_from(
        {"id": token, "object": "payment_method", "type": "card", "card": {"fingerprint": "fpV"}},
        "sk_test_x",
    )
