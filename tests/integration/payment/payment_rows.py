"""Rows and provider answers the payment tests start from (imported by module name; not
a test file)."""

from __future__ import annotations

import uuid
from typing import Any

import stripe

from ultramarket.services.payment.models import Payment
from ultramarket.services.payment.providers import providers_of
from ultramarket.services.payment.providers.stripe import StripeProvider


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


def use_stripe(
    container: Any, monkeypatch: Any, provider: StripeProvider, create: Any, refund: Any
) -> None:
    """Card payments go to ``provider``, whose PaymentIntent create and refund create are
    ``create`` and ``refund`` and whose PaymentMethods are Visa cards (no network)."""
    monkeypatch.setattr(provider.client.v1.payment_intents, "create_async", create)
    monkeypatch.setattr(provider.client.v1.refunds, "create_async", refund)
    monkeypatch.setattr(provider.client.v1.payment_methods, "retrieve_async", card_visa)
    providers_of(container).set(provider)
    container.settings.payments.card_provider = "stripe"
