"""A provider refusing a request (a 4xx: a bad payment method, an amount too small, a
refund of a charge refunded already, a revoked key) is a definitive failure - 402, or
409 REFUND_FAILED - logged with what the provider said; only no answer (the network,
the provider's 5xx, its rate limit) leaves the outcome unknown (503, processing)."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import stripe
from fake_paypal import FakePayPal
from payment_rows import add_payment, use_stripe
from tests.support import assert_error, ok

from ultramarket.services.payment.providers import providers_of
from ultramarket.services.payment.providers.stripe import StripeProvider

API = "/api/v1/payments"


def card(**extra: Any) -> dict[str, Any]:
    body = {"order_id": "o-e", "amount": "0.20", "currency": "USD", "method": "card"}
    return {**body, "token": "pm_card_visa", **extra}


@pytest.fixture
def stripe_raises(container: Any, monkeypatch: Any) -> dict[str, Any]:
    """Stripe whose PaymentIntent create and refund create raise ``errors[...]``."""
    provider = StripeProvider("sk_test_x", api_base="http://127.0.0.1:9")
    errors: dict[str, Any] = {}

    async def create(*args: Any, **kwargs: Any) -> Any:
        raise errors["create"]

    async def refund(*args: Any, **kwargs: Any) -> Any:
        raise errors["refund"]

    use_stripe(container, monkeypatch, provider, create, refund)
    return errors


@pytest.mark.parametrize(
    ("error", "decline"),
    [
        (
            stripe.InvalidRequestError(
                "Amount must be at least $0.50 usd", "amount", "amount_too_small", http_status=400
            ),
            "amount_too_small",
        ),
        (
            stripe.InvalidRequestError(
                "No such PaymentMethod: 'pm_x'",
                "payment_method",
                "resource_missing",
                http_status=400,
            ),
            "resource_missing",
        ),
        (
            stripe.AuthenticationError("Invalid API Key provided: sk_test_****x", http_status=401),
            "authentication_error",
        ),
    ],
)
async def test_a_charge_stripe_refuses_is_declined_and_logged_not_left_processing(
    client, make_user, stripe_raises, caplog, error, decline
):
    stripe_raises["create"] = error
    user = await make_user()
    with caplog.at_level(logging.WARNING, logger="ultramarket.payment.stripe"):
        refused = assert_error(
            await client.post(API, json=card(), headers=user.headers), 402, "PAYMENT_FAILED"
        )
    assert refused["details"][0]["decline_code"] == decline
    assert "sk_test" not in refused["message"]
    [payment] = ok(await client.get(API, headers=user.headers))
    assert payment["status"] == "failed"
    [record] = [r for r in caplog.records if r.name == "ultramarket.payment.stripe"]
    assert (record.error_type, record.http_status) == (type(error).__name__, error.http_status)


@pytest.mark.parametrize(
    "error",
    [
        stripe.APIConnectionError("Connection reset by peer"),
        stripe.RateLimitError("Too many requests", http_status=429),
        stripe.APIError("Something went wrong on Stripe's end", http_status=500),
    ],
)
async def test_a_charge_stripe_does_not_answer_is_left_processing(
    client, make_user, stripe_raises, error
):
    stripe_raises["create"] = error
    user = await make_user()
    assert_error(
        await client.post(API, json=card(), headers=user.headers), 503, "PAYMENT_PROCESSING"
    )
    [payment] = ok(await client.get(API, headers=user.headers))
    assert payment["status"] == "processing"


async def test_a_refund_stripe_refuses_is_409_and_refunds_nothing(
    client, make_user, container, stripe_raises
):
    stripe_raises["refund"] = stripe.InvalidRequestError(
        "Charge ch_1 has already been refunded.", None, "charge_already_refunded", http_status=400
    )
    manager = await make_user("MANAGER")
    payment_id = await add_payment(container, manager.id)
    refused = assert_error(
        await client.post(f"{API}/{payment_id}/refund", json={}, headers=manager.headers),
        409,
        "REFUND_FAILED",
    )
    assert "charge_already_refunded" in refused["message"]
    got = ok(await client.get(f"{API}/{payment_id}", headers=manager.headers))
    assert (got["status"], got["refunded_amount"]) == ("succeeded", "0.00")


# -- PayPal ------------------------------------------------------------------------------


@pytest.fixture
def paypal(container: Any) -> FakePayPal:
    fake = FakePayPal()
    fake.approved("BUYER1", "0.20")
    providers_of(container).set(fake.provider())
    return fake


def paypal_payment() -> dict[str, Any]:
    return {**card(), "method": "paypal", "token": "BUYER1"}


async def test_paypal_refusing_our_credentials_declines_with_nothing_charged(
    client, make_user, paypal
):
    paypal.token_status = 401
    user = await make_user()
    refused = assert_error(
        await client.post(API, json=paypal_payment(), headers=user.headers), 402, "PAYMENT_FAILED"
    )
    assert refused["details"][0]["decline_code"] == "invalid_client"
    [payment] = ok(await client.get(API, headers=user.headers))
    assert payment["status"] == "failed"
    assert [path for _, path, _ in paypal.calls] == ["/v1/oauth2/token"]


@pytest.mark.parametrize(
    "trouble",
    [
        {"token_error": httpx.ConnectError("connection refused")},
        {"forced": {"/v2/checkout/orders/BUYER1/capture": 429}},
        {"forced": {"/v2/checkout/orders/BUYER1/capture": 503}},
    ],
)
async def test_paypal_not_answering_leaves_the_payment_processing(
    client, make_user, paypal, trouble
):
    for name, value in trouble.items():
        setattr(paypal, name, value)
    user = await make_user()
    assert_error(
        await client.post(API, json=paypal_payment(), headers=user.headers),
        503,
        "PAYMENT_PROCESSING",
    )
    [payment] = ok(await client.get(API, headers=user.headers))
    assert payment["status"] == "processing"
