"""THE RACES of checkout, each fired for real (concurrent requests through the whole
stack, each its own units of work) on SQLite and on PostgreSQL:

- 100 checkouts for a variant with 30 in stock: 30 orders, 70 clean 409s, 30 charges;
- one checkout retried 20 times at once with one Idempotency-Key: one order, one charge;
- declined payments after reserving: every unit back, no order left pending;
- a crash between reserving and paying: after the TTL and the sweepers, stock is back
  and the order is cancelled;
- two concurrent full refunds of one order: one refund.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from tests.shop import (
    DECLINED,
    ORDERS,
    checkout,
    checkout_body,
    configure,
    flaky_card_provider,
    make_variant,
    no_fraud_checks,
    payments_of,
    reservation_status,
    stock,
)
from tests.support import assert_error, error_reason, ok

from ultramarket.core.container import Container
from ultramarket.core.db import utcnow
from ultramarket.services.inventory.service import release_expired
from ultramarket.services.order.flows import FAULTS_KEY, SimulatedCrash
from ultramarket.services.order.models import Order
from ultramarket.services.order.sweeper import sweep
from ultramarket.services.payment.models import Payment, PaymentRefund
from ultramarket.services.payment.providers import providers_of
from ultramarket.services.payment.providers.base import WebhookEvent
from ultramarket.services.payment.providers.test import TestProvider
from ultramarket.services.payment.service import PaymentService, resume_processing


async def order_counts(container: Container) -> dict[str, int]:
    async with container.db("order").read_session() as session:
        rows = await session.execute(select(Order.status, func.count()).group_by(Order.status))
        return {status: int(n) for status, n in rows}


async def shop(
    client, container, drain, make_user, *, units: int
) -> tuple[Any, dict[str, Any], Any]:
    """Known settings, no fraud rules, a manager, one variant with ``units``, a buyer."""
    configure(container)
    no_fraud_checks(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, stock=units)
    return manager, v, await make_user()


async def crash_at(
    client, container, user, point: str, variant: dict[str, Any], units: int
) -> None:
    """Check out with the fault hook armed at ``point``: the request dies there."""
    container.extras[FAULTS_KEY] = {point}
    try:
        # The in-process transport re-raises what a server would log and answer 500 for.
        with pytest.raises(SimulatedCrash):
            await checkout(client, user, checkout_body([(variant["variant_id"], units)]))
    finally:
        container.extras[FAULTS_KEY] = set()


async def test_100_checkouts_for_30_units(client, container, drain, make_user):
    manager, v, first = await shop(client, container, drain, make_user, units=30)
    buyers = [first, *[await make_user() for _ in range(9)]]

    responses = await asyncio.gather(
        *(
            checkout(client, buyers[n % 10], checkout_body([(v["variant_id"], 1)]))
            for n in range(100)
        )
    )

    confirmed = [ok(r, 201) for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code != 201]
    assert len(confirmed) == 30
    assert len(refused) == 70
    for response in refused:
        assert_error(response, 409, "INSUFFICIENT_STOCK")
    assert {o["status"] for o in confirmed} == {"confirmed"}
    assert await stock(container, v["variant_id"]) == {
        "on_hand": 0,
        "reserved": 0,
        "available": 0,
        "log_on_hand": 0,
        "log_reserved": 0,
    }
    assert await order_counts(container) == {"confirmed": 30, "cancelled": 70}
    charged = 0
    for order in confirmed:
        payments = await payments_of(client, manager, order["id"])
        assert [p["status"] for p in payments] == ["succeeded"]
        charged += 1
    assert charged == 30
    all_payments = ok(
        await client.get("/api/v1/payments", headers=manager.headers, params={"limit": 100})
    )
    assert len(all_payments) == 30


async def test_20_retries_with_one_key_make_one_order_and_one_charge(
    client, container, drain, make_user
):
    manager, v, user = await shop(client, container, drain, make_user, units=10)
    body = checkout_body([(v["variant_id"], 2)])

    responses = await asyncio.gather(
        *(checkout(client, user, body, key="same-key") for _ in range(20))
    )

    ids = {ok(r, 201)["id"] for r in responses}
    assert len(ids) == 1
    [order_id] = ids
    assert len(await payments_of(client, manager, order_id)) == 1
    assert await order_counts(container) == {"confirmed": 1}
    assert (await stock(container, v["variant_id"]))["on_hand"] == 8


async def test_declines_after_reserving_return_every_unit(client, container, drain, make_user):
    _manager, v, first = await shop(client, container, drain, make_user, units=5)
    users = [first, *[await make_user() for _ in range(3)]]

    responses = await asyncio.gather(
        *(
            checkout(client, users[n % 4], checkout_body([(v["variant_id"], 1)], payment=DECLINED))
            for n in range(20)
        )
    )

    reasons = {error_reason(r) for r in responses}
    # Each either reserved and was declined (402), or found the units held by another
    # checkout at that moment (409); none was left holding anything.
    assert reasons <= {"PAYMENT_FAILED", "INSUFFICIENT_STOCK"}
    assert "PAYMENT_FAILED" in reasons
    s = await stock(container, v["variant_id"])
    assert (s["on_hand"], s["reserved"], s["log_reserved"]) == (5, 0, 0)
    counts = await order_counts(container)
    assert "pending" not in counts
    assert sum(counts.values()) == 20


async def test_crash_between_reserving_and_paying_is_put_right_by_the_sweepers(
    client, container, drain, make_user
):
    manager, v, user = await shop(client, container, drain, make_user, units=5)
    await crash_at(client, container, user, "after_reserve", v, 3)
    [order] = ok(await client.get(ORDERS, headers=user.headers))
    assert order["status"] == "pending"
    assert (await stock(container, v["variant_id"]))["reserved"] == 3

    # Before the timeouts nothing is touched.
    assert (await sweep(container))["reconciled"] == 0
    assert (await stock(container, v["variant_id"]))["reserved"] == 3

    later = utcnow() + timedelta(hours=1)
    assert await release_expired(container.db("inventory"), None, now=later) == 1
    result = await sweep(container, clock=lambda: later)
    assert result["reconciled"] == 1

    after = ok(await client.get(f"{ORDERS}/{order['id']}", headers=user.headers))
    assert after["status"] == "cancelled"
    assert await reservation_status(container, order["id"]) == "expired"
    s = await stock(container, v["variant_id"])
    assert (s["on_hand"], s["reserved"], s["log_reserved"]) == (5, 0, 0)
    assert await payments_of(client, manager, order["id"]) == []


async def test_crash_after_payment_is_confirmed_by_the_sweeper(client, container, drain, make_user):
    manager, v, user = await shop(client, container, drain, make_user, units=5)
    await crash_at(client, container, user, "after_payment", v, 2)

    later = utcnow() + timedelta(minutes=5)  # past the pending timeout, within the TTL
    assert (await sweep(container, clock=lambda: later))["reconciled"] == 1
    [order] = ok(await client.get(ORDERS, headers=user.headers))
    assert order["status"] == "confirmed"
    assert (await stock(container, v["variant_id"]))["on_hand"] == 3
    assert [p["status"] for p in await payments_of(client, manager, order["id"])] == ["succeeded"]


async def test_two_sweepers_finishing_one_checkout_confirm_it_once_and_keep_the_money(
    client, container, drain, make_user
):
    """Every web process runs a sweeper: two finish the same crashed-after-payment
    checkout at once. One confirms it; the other must see that, not refund it."""
    manager, v, user = await shop(client, container, drain, make_user, units=5)
    await crash_at(client, container, user, "after_payment", v, 2)
    [order] = ok(await client.get(ORDERS, headers=user.headers))
    # Nobody may cancel it while its outcome is unknown (the owner, or staff).
    for who in (user, manager):
        refused = await client.post(f"{ORDERS}/{order['id']}/cancel", headers=who.headers)
        assert_error(refused, 409, "CHECKOUT_SETTLING")

    later = utcnow() + timedelta(minutes=5)
    await asyncio.gather(*(sweep(container, clock=lambda: later) for _ in range(2)))

    final = ok(await client.get(f"{ORDERS}/{order['id']}", headers=user.headers))
    assert final["status"] == "confirmed"
    assert final["payment_status"] == "paid"
    [payment] = await payments_of(client, manager, order["id"])
    assert (payment["status"], payment["refunded_amount"]) == ("succeeded", "0.00")
    assert (await stock(container, v["variant_id"]))["on_hand"] == 3


async def test_two_concurrent_full_refunds_refund_once(client, container, drain, make_user):
    manager, v, user = await shop(client, container, drain, make_user, units=5)
    order = ok(await checkout(client, user, checkout_body([(v["variant_id"], 2)])), 201)
    url = f"{ORDERS}/{order['id']}/refund"

    responses: list[Any] = await asyncio.gather(
        *(client.post(url, json={}, headers=manager.headers) for _ in range(2))
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409]
    refused = next(r for r in responses if r.status_code == 409)
    assert error_reason(refused) in {"REFUND_EXCEEDS_PAID", "NOT_REFUNDABLE"}
    final = ok(await client.get(f"{ORDERS}/{order['id']}", headers=manager.headers))
    assert final["refunded"] == order["total"]
    assert [r["status"] for r in final["refunds"]] == ["succeeded"]
    [payment] = await payments_of(client, manager, order["id"])
    assert payment["refunded_amount"] == order["total"]


async def test_a_long_provider_outage_is_settled_by_the_payment_and_order_sweepers(
    client, container, drain, make_user, monkeypatch
):
    """The card provider does not answer any of the checkout's attempts: 503, the payment
    stays ``processing``, the order pending. Once the provider answers again, the payment
    sweeper asks it (same provider key) and the order sweeper confirms the order."""
    manager, v, user = await shop(client, container, drain, make_user, units=5)
    calls = flaky_card_provider(monkeypatch, failures=3)  # the client's three attempts
    stalled = await checkout(client, user, checkout_body([(v["variant_id"], 1)]))
    assert_error(stalled, 503, "PAYMENT_PROCESSING")
    [order] = ok(await client.get(ORDERS, headers=user.headers))
    assert order["status"] == "pending"

    later = utcnow() + timedelta(minutes=5)
    settled = await resume_processing(
        container.db("payment"), container.publisher("payment"), providers_of(container),
        container.settings.payments, now=later,
    )  # fmt: skip
    assert settled == 1
    assert len(set(calls)) == 1  # one provider key across every attempt: one charge
    assert (await sweep(container, clock=lambda: later))["reconciled"] == 1
    final = ok(await client.get(f"{ORDERS}/{order['id']}", headers=user.headers))
    assert final["status"] == "confirmed"
    assert [p["status"] for p in await payments_of(client, manager, order["id"])] == ["succeeded"]
    assert (await stock(container, v["variant_id"]))["on_hand"] == 4


async def test_a_provider_that_never_answers_is_given_up_and_a_late_charge_refunded(
    client, container, drain, make_user, monkeypatch
):
    """The card provider never answers: past ``processing_give_up_hours`` the payment
    sweeper fails the payment, the order sweeper ends the order and gives the stock back,
    a retry with the key is refused. When the provider reports the charge after all, the
    money goes back at once."""
    manager, v, user = await shop(client, container, drain, make_user, units=5)
    flaky_card_provider(monkeypatch, failures=10**6)
    body = checkout_body([(v["variant_id"], 2)])
    stalled = await checkout(client, user, body, key="never-answered")
    assert_error(stalled, 503, "PAYMENT_PROCESSING")
    [order] = ok(await client.get(ORDERS, headers=user.headers))

    payments = (
        container.db("payment"), container.publisher("payment"), providers_of(container),
        container.settings.payments,
    )  # fmt: skip
    # Within the deadline the sweeper keeps asking; nothing is given up.
    assert await resume_processing(*payments, now=utcnow() + timedelta(hours=23)) == 0
    [payment] = await payments_of(client, manager, order["id"])
    assert payment["status"] == "processing"

    later = utcnow() + timedelta(hours=25)
    assert await resume_processing(*payments, now=later) == 1
    [payment] = await payments_of(client, manager, order["id"])
    assert (payment["status"], payment["decline_code"]) == ("failed", "provider_unreachable")
    assert (await sweep(container, clock=lambda: later))["reconciled"] == 1
    final = ok(await client.get(f"{ORDERS}/{order['id']}", headers=user.headers))
    assert final["status"] == "payment_failed"
    left = await stock(container, v["variant_id"])
    assert (left["on_hand"], left["reserved"]) == (5, 0)
    retried = await checkout(client, user, body, key="never-answered")
    assert_error(retried, 402, "PAYMENT_FAILED")
    assert retried.json()["error"]["details"][0]["decline_code"] == "provider_unreachable"

    # The provider's late news of the charge: refunded in full, once (twice delivered).
    async def late_news(self: Any, payload: bytes, headers: Any) -> WebhookEvent:
        return WebhookEvent(
            id=payload.decode(), type="charge.succeeded", payload={}, provider_ref="ch_late",
            outcome="succeeded", payment_id=payment["id"],
        )  # fmt: skip

    monkeypatch.setattr(TestProvider, "verify_webhook", late_news)
    for event_id in (b"evt_1", b"evt_2"):
        async with container.db("payment").session() as session:
            service = PaymentService(
                session, container.publisher("payment"), providers_of(container),
                container.settings.payments, actor="webhook",
            )  # fmt: skip
            await service.webhook("test", event_id, {})
    [payment] = await payments_of(client, manager, order["id"])
    assert (payment["status"], payment["refunded_amount"]) == ("refunded", payment["amount"])
    async with container.db("payment").read_session() as session:
        charged = await session.get_one(Payment, uuid.UUID(payment["id"]))
        refunds = list(await session.scalars(select(PaymentRefund)))
    assert [(r.amount, r.status) for r in refunds] == [(charged.amount, "succeeded")]
