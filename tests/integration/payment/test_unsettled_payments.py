"""Payments the provider has taken but not settled (a PayPal capture PENDING, a Stripe
intent ``processing``) are neither paid nor failed until its webhook says which; a
payment the provider fails after it had succeeded fails; a charge the provider makes
for a payment that had failed goes back."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest
import stripe
from fake_paypal import SIGNATURE, FakePayPal
from payment_rows import add_payment, use_stripe
from sqlalchemy import select
from tests.support import assert_error, ok

from ultramarket.services.payment.providers import providers_of
from ultramarket.services.payment.providers.stripe import StripeProvider

API = "/api/v1/payments"
SECRET = "whsec_unsettled"


async def outbox(container: Any) -> list[tuple[str, dict[str, Any]]]:
    table = container.events("payment").outbox
    async with container.db("payment").read_session() as session:
        rows = await session.execute(
            select(table.c.event_type, table.c.payload).order_by(table.c.occurred_at)
        )
        return [(r.event_type, r.payload) for r in rows]


async def event_types(container: Any) -> list[str]:
    return [kind for kind, _ in await outbox(container)]


# -- PayPal ------------------------------------------------------------------------------


@pytest.fixture
def paypal(container: Any) -> FakePayPal:
    fake = FakePayPal()
    fake.approved("BUYER1", "50.00")
    providers_of(container).set(fake.provider())
    return fake


async def paypal_event(client: Any, event_id: str, kind: str, resource: dict[str, Any]) -> Any:
    event = {"id": event_id, "event_type": kind, "resource": resource}
    answer = await client.post(
        f"{API}/webhooks/paypal", content=json.dumps(event), headers=SIGNATURE
    )
    assert answer.status_code == 200, answer.text
    return answer


def paypal_payment(**extra: Any) -> dict[str, Any]:
    body = {"order_id": "o-pp", "amount": "50.00", "currency": "USD", "method": "paypal"}
    return {**body, "token": "BUYER1", **extra}


async def test_a_pending_paypal_capture_is_not_paid_until_paypal_completes_it(
    client, make_user, container, paypal
):
    paypal.capture_status = "PENDING"
    user = await make_user()
    headers = {**user.headers, "Idempotency-Key": "pp-pending"}
    assert_error(
        await client.post(API, json=paypal_payment(), headers=headers), 503, "PAYMENT_PROCESSING"
    )
    [pending] = ok(await client.get(API, headers=user.headers))
    assert (pending["status"], pending["provider_reference"]) == ("processing", "CAP1")
    assert "payment.succeeded.v1" not in await event_types(container)
    # A retry with the key is told it is still being settled: no second capture.
    assert_error(
        await client.post(API, json=paypal_payment(), headers=headers), 503, "PAYMENT_PROCESSING"
    )
    assert list(paypal.captures) == ["CAP1"]

    await paypal_event(client, "WH-1", "PAYMENT.CAPTURE.COMPLETED", {"id": "CAP1"})
    paid = ok(await client.get(f"{API}/{pending['id']}", headers=user.headers))
    assert paid["status"] == "succeeded"
    assert (await event_types(container)).count("payment.succeeded.v1") == 1
    again = ok(await client.post(API, json=paypal_payment(), headers=headers), 200)
    assert (again["id"], again["status"]) == (pending["id"], "succeeded")


async def test_a_pending_paypal_capture_denied_fails_the_payment(
    client, make_user, container, paypal
):
    paypal.capture_status = "PENDING"
    user = await make_user()
    assert_error(
        await client.post(API, json=paypal_payment(), headers=user.headers),
        503,
        "PAYMENT_PROCESSING",
    )
    await paypal_event(client, "WH-2", "PAYMENT.CAPTURE.DENIED", {"id": "CAP1"})
    [payment] = ok(await client.get(API, headers=user.headers))
    assert (payment["status"], payment["decline_code"]) == ("failed", "capture_denied")
    failed = [p for kind, p in await outbox(container) if kind == "payment.failed.v1"]
    assert [(p["decline_code"], p["after_success"]) for p in failed] == [("capture_denied", False)]


@pytest.mark.parametrize(
    ("kind", "resource", "decline"),
    [
        ("PAYMENT.CAPTURE.DENIED", {"id": "CAP1"}, "capture_denied"),
        (
            "PAYMENT.CAPTURE.REVERSED",
            {
                "id": "REV1",
                "links": [{"rel": "up", "href": "https://paypal.test/v2/payments/captures/CAP1"}],
            },
            "capture_reversed",
        ),
    ],
)
async def test_a_paypal_payment_taken_back_after_it_succeeded_fails_and_says_so(
    client, make_user, container, paypal, kind, resource, decline
):
    user = await make_user()
    manager = await make_user("MANAGER")
    paid = ok(await client.post(API, json=paypal_payment(), headers=user.headers), 201)
    assert paid["status"] == "succeeded"
    await paypal_event(client, "WH-3", kind, resource)
    got = ok(await client.get(f"{API}/{paid['id']}", headers=user.headers))
    assert (got["status"], got["decline_code"], got["refundable_amount"]) == (
        "failed",
        decline,
        "0.00",
    )
    failed = [p for k, p in await outbox(container) if k == "payment.failed.v1"]
    assert [(p["payment_id"], p["after_success"]) for p in failed] == [(paid["id"], True)]
    # Nothing was paid after all: nothing can be refunded.
    assert_error(
        await client.post(f"{API}/{paid['id']}/refund", json={}, headers=manager.headers),
        409,
        "ILLEGAL_PAYMENT_STATE",
    )


# -- Stripe ------------------------------------------------------------------------------


def signed(payload: bytes) -> dict[str, str]:
    at = int(time.time())
    mac = hmac.new(SECRET.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={at},v1={mac}"}


async def stripe_event(client: Any, event_id: str, kind: str, intent: str) -> None:
    obj = {"id": intent, "object": "payment_intent"}
    payload = json.dumps(
        {"id": event_id, "object": "event", "type": kind, "data": {"object": obj}}
    ).encode()
    answer = await client.post(f"{API}/webhooks/stripe", content=payload, headers=signed(payload))
    assert answer.status_code == 200, answer.text


@pytest.fixture
def stripe_answers(container: Any, monkeypatch: Any) -> dict[str, Any]:
    """Stripe (real webhook verification) whose PaymentIntent create answers ``status``,
    and whose refunds are recorded."""
    provider = StripeProvider("sk_test_x", api_base="http://127.0.0.1:9", webhook_secret=SECRET)
    answers: dict[str, Any] = {"status": "processing", "refunds": []}

    async def create(params: dict[str, Any], options: Any = None) -> Any:
        return stripe.PaymentIntent.construct_from(
            {"id": "pi_1", "object": "payment_intent", "status": answers["status"]}, "sk_test_x"
        )

    async def refund(params: dict[str, Any], options: Any = None) -> Any:
        answers["refunds"].append(params)
        return stripe.Refund.construct_from(
            {"id": "re_1", "object": "refund", "status": "succeeded"}, "sk_test_x"
        )

    use_stripe(container, monkeypatch, provider, create, refund)
    return answers


def card(**extra: Any) -> dict[str, Any]:
    body = {"order_id": "o-s", "amount": "30.00", "currency": "USD", "method": "card"}
    return {**body, "token": "pm_card_visa", **extra}


async def test_a_processing_stripe_intent_is_not_failed_and_its_success_counts(
    client, make_user, container, stripe_answers
):
    user = await make_user()
    assert_error(
        await client.post(API, json=card(), headers=user.headers), 503, "PAYMENT_PROCESSING"
    )
    [pending] = ok(await client.get(API, headers=user.headers))
    assert (pending["status"], pending["provider_reference"]) == ("processing", "pi_1")
    assert "payment.failed.v1" not in await event_types(container)
    await stripe_event(client, "evt_1", "payment_intent.succeeded", "pi_1")
    paid = ok(await client.get(f"{API}/{pending['id']}", headers=user.headers))
    assert paid["status"] == "succeeded"
    assert stripe_answers["refunds"] == []


async def test_a_charge_stripe_makes_for_a_failed_payment_is_refunded(
    client, make_user, container, stripe_answers
):
    """The provider went back on a decline (here: Stripe reports the intent succeeded
    after all): the payment had failed and its order ended, so the money goes back."""
    user = await make_user()
    payment_id = await add_payment(
        container, user.id, status="failed", amount=3000, decline_code="card_declined"
    )
    await stripe_event(client, "evt_2", "payment_intent.succeeded", "pi_1")
    got = ok(await client.get(f"{API}/{payment_id}", headers=user.headers))
    assert (got["status"], got["refunded_amount"]) == ("refunded", "30.00")
    assert stripe_answers["refunds"] == [{"payment_intent": "pi_1", "amount": 3000}]
