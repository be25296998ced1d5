"""Payments over HTTP with the built-in test provider."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

from payment_helpers import API, WALLET, assert_error, card, ok
from sqlalchemy import func, select
from tests.shop import flaky_card_provider
from tests.support import error_reason

from ultramarket.core.db import utcnow
from ultramarket.services.payment.models import Payment
from ultramarket.services.payment.providers import providers_of
from ultramarket.services.payment.providers.base import WebhookEvent
from ultramarket.services.payment.providers.test import TestProvider
from ultramarket.services.payment.service import PaymentService, resume_processing


async def outbox_types(container) -> list[str]:
    table = container.events("payment").outbox
    async with container.db("payment").read_session() as session:
        return list(await session.scalars(select(table.c.event_type)))


async def test_payment_card_succeeds_and_publishes(client, make_user, container):
    user = await make_user()
    data = ok(await client.post(API, json=card(), headers=user.headers), 201)
    assert data["status"] == "succeeded"
    assert data["amount"] == "25.00"
    assert data["currency"] == "USD"
    assert data["provider"] == "test"
    assert data["refundable_amount"] == "25.00"
    assert "payment.succeeded.v1" in await outbox_types(container)
    got = ok(await client.get(f"{API}/{data['id']}", headers=user.headers))
    assert got["id"] == data["id"]
    listed = await client.get(API, headers=user.headers)
    assert listed.json()["meta"]["total"] == 1


async def test_payment_declined_card_is_402(client, make_user, container):
    user = await make_user()
    error = assert_error(
        await client.post(API, json=card(token="tok_0002"), headers=user.headers),
        402,
        "PAYMENT_FAILED",
    )
    assert error["details"][0]["decline_code"] == "card_declined"
    error = assert_error(
        await client.post(API, json=card(token="tok_9995"), headers=user.headers),
        402,
        "PAYMENT_FAILED",
    )
    assert error["details"][0]["decline_code"] == "insufficient_funds"
    # The failed payments are kept, with their event.
    payments = ok(await client.get(API, headers=user.headers))
    assert {p["status"] for p in payments} == {"failed"}
    assert "payment.failed.v1" in await outbox_types(container)


async def test_payment_validation(client, make_user):
    user = await make_user()
    assert_error(
        await client.post(API, json=card(amount="-1"), headers=user.headers),
        422,
        "VALIDATION_ERROR",
    )
    assert_error(
        await client.post(API, json=card(amount="1.001"), headers=user.headers),
        422,
        "VALIDATION_ERROR",
    )
    assert_error(await client.post(API, json=card()), 401, "UNAUTHENTICATED")


async def test_payment_idempotency_key(client, make_user, container):
    user = await make_user()
    headers = {**user.headers, "Idempotency-Key": "pay-1"}
    first = ok(await client.post(API, json=card(), headers=headers), 201)
    again = ok(await client.post(API, json=card(), headers=headers), 200)
    assert again["id"] == first["id"]
    assert_error(
        await client.post(API, json=card(amount="30.00"), headers=headers), 409, "CONFLICT"
    )
    # A decline is replayed as the same 402, and charges nothing more.
    decline = {**user.headers, "Idempotency-Key": "pay-2"}
    for _ in range(2):
        assert_error(
            await client.post(API, json=card(token="tok_0002"), headers=decline),
            402,
            "PAYMENT_FAILED",
        )
    async with container.db("payment").read_session() as session:
        assert await session.scalar(select(func.count()).select_from(Payment)) == 2


async def test_payment_same_key_retried_concurrently_charges_once(client, make_user, container):
    user = await make_user()
    headers = {**user.headers, "Idempotency-Key": "retry-me"}
    responses = await asyncio.gather(
        *(client.post(API, json=card(order="ord-r"), headers=headers) for _ in range(20))
    )
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert len({r.json()["data"]["id"] for r in responses}) == 1
    async with container.db("payment").read_session() as session:
        assert await session.scalar(select(func.count()).select_from(Payment)) == 1
    events = await outbox_types(container)
    assert events.count("payment.succeeded.v1") == 1


async def test_payment_refunds_partial_full_and_over(client, make_user, container):
    user = await make_user()
    manager = await make_user("MANAGER")
    payment = ok(await client.post(API, json=card(amount="100.00"), headers=user.headers), 201)
    url = f"{API}/{payment['id']}/refund"
    assert_error(
        await client.post(url, json={"amount": "10", "reason": "x"}, headers=user.headers),
        403,
        "FORBIDDEN",
    )
    part = ok(
        await client.post(
            url, json={"amount": "30.00", "reason": "damaged"}, headers=manager.headers
        ),
        201,
    )
    assert part["refund"]["amount"] == "30.00"
    assert part["payment"]["status"] == "partially_refunded"
    assert part["payment"]["refundable_amount"] == "70.00"
    assert_error(
        await client.post(url, json={"amount": "70.01", "reason": "x"}, headers=manager.headers),
        409,
        "REFUND_EXCEEDS_REFUNDABLE",
    )
    rest = ok(await client.post(url, json={"reason": "returned"}, headers=manager.headers), 201)
    assert rest["refund"]["amount"] == "70.00"
    assert rest["payment"]["status"] == "refunded"
    assert_error(
        await client.post(url, json={"reason": "again"}, headers=manager.headers),
        409,
        "ILLEGAL_PAYMENT_STATE",
    )
    assert (await outbox_types(container)).count("payment.refunded.v1") == 2


async def test_payment_two_concurrent_full_refunds_refund_once(client, make_user, container):
    user = await make_user()
    manager = await make_user("MANAGER")
    payment = ok(await client.post(API, json=card(amount="50.00"), headers=user.headers), 201)
    url = f"{API}/{payment['id']}/refund"
    responses = await asyncio.gather(
        *(client.post(url, json={"reason": "race"}, headers=manager.headers) for _ in range(2))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201, 409], [r.text for r in responses]
    loser = next(r for r in responses if r.status_code == 409)
    assert error_reason(loser) in {"REFUND_EXCEEDS_REFUNDABLE", "ILLEGAL_PAYMENT_STATE"}
    got = ok(await client.get(f"{API}/{payment['id']}", headers=manager.headers))
    assert got["refunded_amount"] == "50.00"
    assert got["status"] == "refunded"
    assert (await outbox_types(container)).count("payment.refunded.v1") == 1


async def test_payment_customer_cannot_read_anothers(client, make_user):
    alice, bob = await make_user(), await make_user()
    manager = await make_user("MANAGER")
    payment = ok(await client.post(API, json=card(), headers=alice.headers), 201)
    assert_error(
        await client.get(f"{API}/{payment['id']}", headers=bob.headers), 404, "PAYMENT_NOT_FOUND"
    )
    assert ok(await client.get(API, headers=bob.headers)) == []
    assert ok(await client.get(f"{API}/{payment['id']}", headers=manager.headers))
    everyone = await client.get(API, headers=manager.headers)
    assert everyone.json()["meta"]["total"] == 1


async def test_payment_analytics_manager_only(client, make_user):
    user = await make_user()
    manager = await make_user("MANAGER")
    ok(await client.post(API, json=card(amount="10.00"), headers=user.headers), 201)
    assert_error(
        await client.post(API, json=card(token="tok_0002"), headers=user.headers),
        402,
        "PAYMENT_FAILED",
    )
    assert_error(await client.get(f"{API}/analytics", headers=user.headers), 403, "FORBIDDEN")
    data = ok(await client.get(f"{API}/analytics", headers=manager.headers))
    assert data["count"] == 2
    assert data["succeeded"] == 1
    assert data["failed"] == 1
    assert data["success_rate"] == 0.5
    assert data["totals"][0]["volume"] == "10.00"
    assert data["by_provider"][0]["provider"] == "test"
    assert len(data["by_day"]) == 1


async def test_payment_authorize_capture_void(client, make_user):
    user = await make_user()
    manager = await make_user("MANAGER")
    held = ok(await client.post(API, json=card(capture=False), headers=user.headers), 201)
    assert held["status"] == "requires_capture"
    captured = ok(await client.post(f"{API}/{held['id']}/capture", headers=manager.headers))
    assert captured["status"] == "succeeded"
    assert_error(
        await client.post(f"{API}/{held['id']}/void", headers=manager.headers),
        409,
        "ILLEGAL_PAYMENT_STATE",
    )
    other = ok(
        await client.post(API, json=card(order="o2", capture=False), headers=user.headers), 201
    )
    voided = ok(await client.post(f"{API}/{other['id']}/void", headers=manager.headers))
    assert voided["status"] == "canceled"


async def test_payment_fraud_review_and_block(client, make_user, settings):
    user = await make_user()
    # A first payment over the new-account threshold is held for review.
    settings.payments.fraud_new_account_amount = type(settings.payments.fraud_new_account_amount)(
        "100"
    )
    settings.payments.fraud_review_score = 40
    held = ok(await client.post(API, json=card(amount="500.00"), headers=user.headers), 201)
    assert held["status"] == "requires_capture"
    assert held["review_required"] is True
    assert held["risk_score"] >= 40
    # One card used by many accounts is blocked.
    settings.payments.fraud_fingerprint_max_users = 1
    settings.payments.fraud_block_score = 50
    other = await make_user()
    error = assert_error(
        await client.post(API, json=card(amount="500.00"), headers=other.headers),
        402,
        "PAYMENT_BLOCKED",
    )
    assert "card_fingerprint" in error["details"][0]["rules"]


async def test_a_provider_that_does_not_answer_leaves_a_payment_to_resume_not_a_second_charge(
    client, make_user, monkeypatch
):
    """The card provider times out: the outcome is unknown, so the payment stays
    ``processing`` with its key (503 PAYMENT_PROCESSING). The retry with the same key asks
    the provider again with the same provider key and finishes THAT payment."""
    calls = flaky_card_provider(monkeypatch)
    user = await make_user()
    headers = {**user.headers, "Idempotency-Key": "pay-1"}

    first = await client.post(API, json=card(order="o-flaky"), headers=headers)
    assert_error(first, 503, "PAYMENT_PROCESSING")
    [pending] = ok(await client.get(API, headers=user.headers))
    assert pending["status"] == "processing"

    again = ok(await client.post(API, json=card(order="o-flaky"), headers=headers), 200)
    assert again["id"] == pending["id"]
    assert again["status"] == "succeeded"
    assert calls[0] == calls[1]  # the same provider key: the provider cannot charge twice
    assert len(ok(await client.get(API, headers=user.headers))) == 1


async def test_a_retried_key_finishes_its_own_payment_not_a_newer_one_for_the_order(
    client, make_user, container, monkeypatch
):
    """The key's payment is the one written with its claim: another key's payment for the
    same order (here a cheaper one, made meanwhile) is never the answer to the retry."""
    calls = flaky_card_provider(monkeypatch)
    user = await make_user()
    first = card(order="o-resume", amount="250.00")
    retry_headers = {**user.headers, "Idempotency-Key": "pay-first"}
    assert_error(
        await client.post(API, json=first, headers=retry_headers), 503, "PAYMENT_PROCESSING"
    )
    cheap = card(order="o-resume", amount="0.01")
    headers = {**user.headers, "Idempotency-Key": "pay-cheap"}
    assert ok(await client.post(API, json=cheap, headers=headers), 201)["amount"] == "0.01"

    again = ok(await client.post(API, json=first, headers=retry_headers), 200)
    assert (again["amount"], again["status"]) == ("250.00", "succeeded")
    assert calls[0] == calls[2]  # the first payment's own provider key, asked again
    statuses = {p["amount"]: p["status"] for p in ok(await client.get(API, headers=user.headers))}
    assert statuses == {"250.00": "succeeded", "0.01": "succeeded"}


async def test_provider_keys_are_scoped_like_our_own_records(
    client, make_user, container, monkeypatch
):
    """Providers answer a repeated idempotency key with the first result (Stripe,
    PayPal-Request-Id): two managers' refunds with the same key are two refunds there
    too, and one key used for a deposit and then a card payment is two charges."""
    from ultramarket.services.payment.providers.test import TestProvider

    charge, refund = TestProvider.charge, TestProvider.refund
    charges: list[str] = []
    refunds: dict[str, int] = {}

    async def charge_once(self: TestProvider, request: Any) -> Any:
        charges.append(request.idempotency_key)
        return await charge(self, request)

    async def refund_once(self: TestProvider, ref: str, amount: int, *args: Any) -> Any:
        refunds.setdefault(args[-1], amount)  # a repeated key moves nothing more
        return await refund(self, ref, amount, *args)

    monkeypatch.setattr(TestProvider, "charge", charge_once)
    monkeypatch.setattr(TestProvider, "refund", refund_once)
    user = await make_user()
    key = {"Idempotency-Key": "same-key"}
    deposit = {"amount": "40.00", "currency": "USD", "token": "tok_4242"}
    ok(await client.post(WALLET + "/deposit", json=deposit, headers={**user.headers, **key}), 201)
    paid = ok(
        await client.post(API, json=card(amount="100.00"), headers={**user.headers, **key}), 201
    )
    assert len(set(charges)) == 2

    for manager in (await make_user(role="MANAGER"), await make_user(role="MANAGER")):
        url = f"{API}/{paid['id']}/refund"
        ok(
            await client.post(url, json={"amount": "30.00"}, headers={**manager.headers, **key}),
            201,
        )
    got = ok(await client.get(f"{API}/{paid['id']}", headers=user.headers))
    assert got["refunded_amount"] == "60.00"
    assert sorted(refunds.values()) == [3000, 3000]  # what the provider moved


async def test_the_new_account_threshold_is_the_payments_own_currencys(client, make_user, settings):
    """1,000 is a lot of dollars and little in yen: each currency has its own threshold
    (in its own units: JPY has no decimals, KWD three), configurable."""
    settings.payments.fraud_review_score = 40  # the new-account rule alone holds for review
    user = await make_user()

    async def held(amount: str, currency: str) -> bool:
        body = {**card(order=f"o-{amount}-{currency}", amount=amount), "currency": currency}
        paid = ok(await client.post(API, json=body, headers=user.headers), 201)
        return bool(paid["review_required"])

    assert await held("5000", "JPY") is False  # ~33 USD
    assert await held("200000", "JPY") is True
    assert await held("500.000", "KWD") is True  # ~1,600 USD
    assert await held("999.00", "USD") is False
    settings.payments.fraud_new_account_amounts["JPY"] = Decimal("1000")
    assert await held("5000", "JPY") is True


async def test_a_charge_returned_after_its_payment_had_failed_counts_as_a_failure(
    client, make_user, container, monkeypatch
):
    """A payment given up (its provider never answered) whose charge the provider
    reports later is refunded at once: a failed payment, not a sale refunded."""
    user, manager = await make_user(), await make_user("MANAGER")
    ok(await client.post(API, json=card(amount="10.00"), headers=user.headers), 201)
    flaky_card_provider(monkeypatch, failures=10**6)
    lost = await client.post(API, json=card(order="o-lost", amount="25.00"), headers=user.headers)
    assert_error(lost, 503, "PAYMENT_PROCESSING")
    payment_id = lost.json()["error"]["details"][0]["payment_id"]
    payments = (providers_of(container), container.settings.payments)
    later = utcnow() + timedelta(hours=25)
    assert await resume_processing(container.db("payment"), None, *payments, now=later) == 1

    async def late_news(self: Any, payload: bytes, headers: Any) -> WebhookEvent:
        return WebhookEvent(
            id="evt_late", type="charge.succeeded", payload={}, provider_ref="ch_late",
            outcome="succeeded", payment_id=payment_id,
        )  # fmt: skip

    monkeypatch.setattr(TestProvider, "verify_webhook", late_news)
    async with container.db("payment").session() as session:
        webhooks = PaymentService(session, None, *payments, actor="webhook")
        await webhooks.webhook("test", b"{}", {})
    returned = ok(await client.get(f"{API}/{payment_id}", headers=manager.headers))
    assert (returned["status"], returned["refunded_amount"]) == ("refunded", "25.00")

    data = ok(await client.get(f"{API}/analytics", headers=manager.headers))
    assert (data["count"], data["succeeded"], data["failed"]) == (2, 1, 1)
    [usd] = data["totals"]
    assert (usd["volume"], usd["refunded"], usd["net"]) == ("10.00", "0.00", "10.00")
    assert [(d["succeeded"], d["failed"]) for d in data["by_provider"]] == [(1, 1)]


async def test_card_payments_past_32_bits_refund_and_add_up(client, make_user):
    """UZS payments past 2,147,483,647 minor units: the payment's amount and refunded
    amount, the refund's amount and the analytics' sums of them are 64-bit."""
    user = await make_user()
    manager = await make_user("MANAGER")
    big = {"currency": "UZS", "amount": "53625000.00"}  # 5,362,500,000 minor units
    first = ok(await client.post(API, json=card("o-big-1", **big), headers=user.headers), 201)
    second = ok(await client.post(API, json=card("o-big-2", **big), headers=user.headers), 201)
    assert (first["status"], first["amount"]) == ("succeeded", "53625000.00")
    refund = ok(
        await client.post(
            f"{API}/{first['id']}/refund",
            json={"amount": "48812500.00", "reason": "x"},
            headers=manager.headers,
        ),
        201,
    )
    assert refund["refund"]["amount"] == "48812500.00"
    assert refund["payment"]["refunded_amount"] == "48812500.00"
    assert refund["payment"]["refundable_amount"] == "4812500.00"
    assert ok(await client.get(f"{API}/{second['id']}", headers=user.headers))["amount"] == (
        "53625000.00"
    )

    data = ok(await client.get(f"{API}/analytics", headers=manager.headers))
    [uzs] = data["totals"]
    assert (uzs["currency"], uzs["succeeded"]) == ("UZS", 2)
    assert (uzs["volume"], uzs["refunded"], uzs["net"]) == (
        "107250000.00",
        "48812500.00",
        "58437500.00",
    )
