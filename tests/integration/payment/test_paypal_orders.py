"""PayPal orders the buyer made and approved (the token) are checked before they pay
for anything: their intent, status, amount and currency must be the payment's, and
what PayPal captured or authorised must be that amount too."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from fake_paypal import SIGNATURE, FakePayPal
from tests.support import assert_error, ok

from ultramarket.core.db import utcnow
from ultramarket.services.payment.providers import providers_of
from ultramarket.services.payment.service import resume_processing

API = "/api/v1/payments"


@pytest.fixture
def paypal(container: Any) -> FakePayPal:
    fake = FakePayPal()
    providers_of(container).set(fake.provider())
    return fake


def pay(token: str | None, amount: str = "199.99", **extra: Any) -> dict[str, Any]:
    body = {"order_id": "o-pp", "amount": amount, "currency": "USD", "method": "paypal"}
    return {**body, **({"token": token} if token else {}), **extra}


def money_moves(paypal: FakePayPal) -> list[str]:
    """The calls that capture or authorise money."""
    return [p for m, p, _ in paypal.calls if m == "POST" and p.endswith(("/capture", "/authorize"))]


async def test_an_order_approved_for_a_cent_does_not_pay_a_larger_payment(
    client, make_user, paypal
):
    paypal.approved("CHEAP1", "0.01")
    user = await make_user()
    error = assert_error(
        await client.post(API, json=pay("CHEAP1"), headers=user.headers), 402, "PAYMENT_FAILED"
    )
    assert error["details"][0]["decline_code"] == "amount_mismatch"
    assert money_moves(paypal) == []  # nothing was captured
    assert paypal.orders["CHEAP1"]["status"] == "APPROVED"
    [payment] = ok(await client.get(API, headers=user.headers))
    assert payment["status"] == "failed"


@pytest.mark.parametrize(
    ("order", "decline"),
    [
        ({"value": "199.99", "currency": "EUR"}, "amount_mismatch"),
        ({"value": "199.99", "units": 2}, "amount_mismatch"),
        ({"value": "199.99", "intent": "AUTHORIZE"}, "intent_mismatch"),
        ({"value": "199.99", "status": "CREATED"}, "order_not_approved"),
        ({"value": "199.99", "status": "VOIDED"}, "order_not_approved"),
    ],
)
async def test_an_order_not_made_for_this_payment_is_declined_before_any_capture(
    client, make_user, paypal, order, decline
):
    paypal.approved("BUYER1", **order)
    user = await make_user()
    error = assert_error(
        await client.post(API, json=pay("BUYER1"), headers=user.headers), 402, "PAYMENT_FAILED"
    )
    assert error["details"][0]["decline_code"] == decline
    assert money_moves(paypal) == []


async def test_an_unknown_order_or_one_that_is_not_an_order_id_is_declined(
    client, make_user, paypal
):
    user = await make_user()
    unknown = assert_error(
        await client.post(API, json=pay("NOSUCH"), headers=user.headers), 402, "PAYMENT_FAILED"
    )
    assert unknown["details"][0]["decline_code"] == "resource_not_found"
    # A token that is no order id never reaches a URL.
    forged = "../../payments/captures/CAP1/refund"
    error = assert_error(
        await client.post(API, json=pay(forged), headers=user.headers), 402, "PAYMENT_FAILED"
    )
    assert error["details"][0]["decline_code"] == "invalid_order"
    assert [p for _, p, _ in paypal.calls if "refund" in p] == []


async def test_an_order_for_the_payment_is_captured_and_read_back(client, make_user, paypal):
    paypal.approved("GOOD1", "199.99")
    user = await make_user()
    paid = ok(await client.post(API, json=pay("GOOD1"), headers=user.headers), 201)
    assert (paid["status"], paid["provider_reference"]) == ("succeeded", "CAP1")
    assert money_moves(paypal) == ["/v2/checkout/orders/GOOD1/capture"]
    assert "/v2/checkout/orders/GOOD1/capture" in paypal.full  # its amount is read back


async def test_an_order_paid_once_does_not_pay_a_second_payment(client, make_user, paypal):
    paypal.approved("ONCE1", "199.99")
    user = await make_user()
    ok(await client.post(API, json=pay("ONCE1"), headers=user.headers), 201)
    error = assert_error(
        await client.post(API, json=pay("ONCE1", order_id="o-2"), headers=user.headers),
        402,
        "PAYMENT_FAILED",
    )
    assert error["details"][0]["decline_code"] == "order_already_captured"


async def test_a_capture_of_another_amount_is_refunded_and_declined(client, make_user, paypal):
    paypal.approved("ODD1", "199.99")
    paypal.captured_value = "0.01"  # PayPal took another amount than the order's
    user = await make_user()
    error = assert_error(
        await client.post(API, json=pay("ODD1"), headers=user.headers), 402, "PAYMENT_FAILED"
    )
    assert error["details"][0]["decline_code"] == "amount_mismatch"
    assert [(r["capture_id"], r["amount"]["value"]) for r in paypal.refunds] == [("CAP1", "0.01")]
    # PayPal's news of that capture does not find the failed payment (to refund it again).
    event = {"id": "WH-ODD", "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": {"id": "CAP1"}}
    news = await client.post(f"{API}/webhooks/paypal", content=json.dumps(event), headers=SIGNATURE)
    assert news.status_code == 200, news.text
    assert len(paypal.refunds) == 1
    [payment] = ok(await client.get(API, headers=user.headers))
    assert (payment["status"], payment["provider_reference"]) == ("failed", "ODD1")


async def test_an_authorisation_checks_the_order_too(client, make_user, paypal):
    paypal.approved("HOLD1", "199.99", intent="AUTHORIZE")
    paypal.approved("HOLD2", "0.01", intent="AUTHORIZE")
    user = await make_user()
    held = ok(await client.post(API, json=pay("HOLD1", capture=False), headers=user.headers), 201)
    assert (held["status"], held["provider_reference"]) == ("requires_capture", "AUTH1")
    error = assert_error(
        await client.post(
            API, json=pay("HOLD2", capture=False, order_id="o-2"), headers=user.headers
        ),
        402,
        "PAYMENT_FAILED",
    )
    assert error["details"][0]["decline_code"] == "amount_mismatch"
    assert money_moves(paypal) == ["/v2/checkout/orders/HOLD1/authorize"]


async def authorised(client: Any, user: Any, paypal: FakePayPal) -> dict[str, Any]:
    paypal.approved("HOLD1", "199.99", intent="AUTHORIZE")
    held = ok(await client.post(API, json=pay("HOLD1", capture=False), headers=user.headers), 201)
    assert (held["status"], held["provider_reference"]) == ("requires_capture", "AUTH1")
    return held


async def test_a_captured_authorisation_is_refunded_through_its_capture(client, make_user, paypal):
    user, manager = await make_user(), await make_user("MANAGER")
    held = await authorised(client, user, paypal)
    captured = ok(await client.post(f"{API}/{held['id']}/capture", headers=manager.headers))
    assert (captured["status"], captured["provider_reference"]) == ("succeeded", "CAP1")
    refund = ok(
        await client.post(
            f"{API}/{held['id']}/refund", json={"amount": "50.00"}, headers=manager.headers
        ),
        201,
    )
    assert refund["payment"]["refunded_amount"] == "50.00"
    assert [(r["capture_id"], r["amount"]["value"]) for r in paypal.refunds] == [("CAP1", "50.00")]


async def test_a_capture_whose_answer_was_lost_is_answered_the_same_capture_on_retry(
    client, make_user, paypal
):
    user, manager = await make_user(), await make_user("MANAGER")
    held = await authorised(client, user, paypal)
    paypal.lost.add("/v2/payments/authorizations/AUTH1/capture")
    assert_error(
        await client.post(f"{API}/{held['id']}/capture", headers=manager.headers),
        503,
        "PROVIDER_UNAVAILABLE",
    )
    again = ok(await client.post(f"{API}/{held['id']}/capture", headers=manager.headers))
    assert (again["status"], again["provider_reference"]) == ("succeeded", "CAP1")
    assert list(paypal.captures) == ["CAP1"]
    keys = [k for m, p, k in paypal.calls if p.endswith("/AUTH1/capture")]
    assert len(keys) == 2
    assert keys[0] is not None
    assert keys[0] == keys[1]


async def test_an_authorisation_paypal_will_not_void_is_not_marked_voided(
    client, make_user, paypal
):
    user, manager = await make_user(), await make_user("MANAGER")
    held = await authorised(client, user, paypal)
    paypal.void_refused.add("AUTH1")
    error = assert_error(
        await client.post(f"{API}/{held['id']}/void", headers=manager.headers),
        409,
        "VOID_FAILED",
    )
    assert error["details"][0]["decline_code"] == "authorization_already_captured"
    got = ok(await client.get(f"{API}/{held['id']}", headers=manager.headers))
    assert got["status"] == "requires_capture"


async def test_a_voided_authorisation_is_voided_at_paypal(client, make_user, paypal):
    user, manager = await make_user(), await make_user("MANAGER")
    held = await authorised(client, user, paypal)
    voided = ok(await client.post(f"{API}/{held['id']}/void", headers=manager.headers))
    assert voided["status"] == "canceled"
    assert paypal.authorizations["AUTH1"]["status"] == "VOIDED"


async def test_a_pending_capture_of_an_authorisation_waits_for_paypal(
    client, make_user, container, paypal
):
    user, manager = await make_user(), await make_user("MANAGER")
    held = await authorised(client, user, paypal)
    paypal.capture_status = "PENDING"
    assert_error(
        await client.post(f"{API}/{held['id']}/capture", headers=manager.headers),
        503,
        "PAYMENT_PROCESSING",
    )
    got = ok(await client.get(f"{API}/{held['id']}", headers=manager.headers))
    assert (got["status"], got["provider_reference"]) == ("processing", "CAP1")
    # The sweeper leaves it to PayPal's news: asked again, the authorisation would come
    # back as one to capture.
    later = utcnow() + timedelta(minutes=5)
    payments = (container.db("payment"), None, providers_of(container), container.settings.payments)
    assert await resume_processing(*payments, now=later) == 0
    got = ok(await client.get(f"{API}/{held['id']}", headers=manager.headers))
    assert (got["status"], got["provider_reference"]) == ("processing", "CAP1")
    event = {"id": "WH-CAP", "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": {"id": "CAP1"}}
    news = await client.post(f"{API}/webhooks/paypal", content=json.dumps(event), headers=SIGNATURE)
    assert news.status_code == 200, news.text
    got = ok(await client.get(f"{API}/{held['id']}", headers=manager.headers))
    assert got["status"] == "succeeded"
