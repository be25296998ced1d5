"""The order sweeper against checkouts that finish around it, on SQLite and PostgreSQL:
a decision taken from a read the checkout then outdates must not give back what a
confirmed order holds, and one sweep finishing several checkouts must describe each
order with its own lines."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from tests.shop import (
    ORDERS,
    checkout,
    checkout_body,
    configure,
    flaky_card_provider,
    make_variant,
    no_fraud_checks,
    payments_of,
    stock,
)
from tests.support import assert_error, ok

from ultramarket.core.db import utcnow
from ultramarket.services.cart.models import Coupon
from ultramarket.services.order.api import parts
from ultramarket.services.order.checkout import Checkout
from ultramarket.services.order.flows import FAULTS_KEY, SimulatedCrash
from ultramarket.services.order.models import EVENTS
from ultramarket.services.order.sweeper import sweep
from ultramarket.services.payment.providers import providers_of
from ultramarket.services.payment.schemas import PaymentRead
from ultramarket.services.payment.service import resume_processing


async def crash_after_payment(client: Any, container: Any, user: Any, body: dict) -> None:
    container.extras[FAULTS_KEY] = {"after_payment"}
    try:
        with pytest.raises(SimulatedCrash):
            await checkout(client, user, body)
    finally:
        container.extras[FAULTS_KEY] = set()


async def one_variant_shop(client: Any, container: Any, drain: Any, make_user: Any) -> Any:
    """A manager, a variant with 5 in stock, a customer."""
    configure(container)
    no_fraud_checks(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, stock=5)
    return manager, v, await make_user()


async def test_a_sweeper_outdated_by_the_finishing_checkout_gives_nothing_back(
    client, container, drain, make_user
):
    configure(container)
    no_fraud_checks(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, stock=5)
    code = f"C{uuid.uuid4().hex[:8].upper()}"
    coupon = {"code": code, "type": "percentage", "value": "10", "max_uses": 1}
    ok(await client.post("/api/v1/coupons", headers=manager.headers, json=coupon), 201)
    user = await make_user()
    await crash_after_payment(
        client, container, user, checkout_body([(v["variant_id"], 2)], coupon=code)
    )
    [order] = ok(await client.get(ORDERS, headers=user.headers))
    later = utcnow() + timedelta(minutes=5)

    # Sweeper A reads the order pending and sees no payment yet; before it acts on that,
    # the checkout finishes (played by sweeper B, which confirms the order).
    flows = parts(container)
    flows.clock = lambda: later
    stale = Checkout(flows)

    async def no_payment_yet(o: Any) -> PaymentRead | None:
        finishing = parts(container)
        finishing.clock = lambda: later
        await Checkout(finishing)._reconcile(o.id)
        return None

    stale._find_payment = no_payment_yet  # type: ignore[method-assign]
    await stale._reconcile(uuid.UUID(order["id"]))

    final = ok(await client.get(f"{ORDERS}/{order['id']}", headers=manager.headers))
    assert (final["status"], final["payment_status"]) == ("confirmed", "paid")
    assert (await stock(container, v["variant_id"]))["on_hand"] == 3  # sold, not restocked
    async with container.db("cart").read_session() as session:
        assert await session.scalar(select(Coupon.uses).where(Coupon.code == code)) == 1


async def test_one_sweep_confirming_two_checkouts_publishes_each_with_its_own_lines(
    client, container, drain, make_user
):
    configure(container)
    no_fraud_checks(container)
    manager = await make_user(role="MANAGER")
    a = await make_variant(client, container, drain, manager, stock=5, name="Alpha")
    b = await make_variant(client, container, drain, manager, stock=5, name="Bravo")
    user = await make_user()
    for v in (a, b):
        await crash_after_payment(client, container, user, checkout_body([(v["variant_id"], 1)]))

    later = utcnow() + timedelta(minutes=5)
    assert (await sweep(container, clock=lambda: later))["reconciled"] == 2

    async with container.db("order").read_session() as session:
        payloads = (
            await session.scalars(
                select(EVENTS.outbox.c.payload).where(
                    EVENTS.outbox.c.event_type == "order.confirmed.v1"
                )
            )
        ).all()
    published = {p["order_id"]: [i["sku"] for i in p["items"]] for p in payloads}
    orders = ok(await client.get(ORDERS, headers=user.headers))
    assert len(orders) == 2
    for o in orders:
        assert o["status"] == "confirmed"
        full = ok(await client.get(f"{ORDERS}/{o['id']}", headers=user.headers))
        assert published[o["id"]] == [i["sku"] for i in full["items"]]


async def test_a_payment_the_customer_made_naming_a_stalled_order_never_confirms_it(
    client, container, drain, make_user, monkeypatch
):
    """The sweeper settles a checkout from the checkout's own charge: a payment of 0.01
    the customer made through POST /payments naming the order does not confirm it."""
    configure(container)
    no_fraud_checks(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, price="199.99", stock=5)
    user = await make_user()
    flaky_card_provider(monkeypatch, failures=3)  # an outage during the checkout's charge
    declined_later = {"method": "card", "token": "tok_chargeDeclined_0002"}
    stalled = await checkout(
        client, user, checkout_body([(v["variant_id"], 1)], payment=declined_later)
    )
    assert_error(stalled, 503, "PAYMENT_PROCESSING")
    [order] = ok(await client.get(ORDERS, headers=user.headers))
    cheap = {"order_id": order["id"], "amount": "0.01", "currency": "USD", "method": "card"}
    paid = await client.post(
        "/api/v1/payments",
        headers={**user.headers, "Idempotency-Key": "mine"},
        json={**cheap, "token": "tok_4242"},
    )
    assert ok(paid, 201)["status"] == "succeeded"

    later = utcnow() + timedelta(minutes=30)
    payments = container.settings.payments
    await resume_processing(
        container.db("payment"), container.publisher("payment"), providers_of(container),
        payments, now=later,
    )  # fmt: skip
    await sweep(container, clock=lambda: later)
    final = ok(await client.get(f"{ORDERS}/{order['id']}", headers=manager.headers))
    assert (final["status"], final["payment_status"]) == ("payment_failed", "failed")
    assert (await stock(container, v["variant_id"]))["on_hand"] == 5


async def test_a_checkout_ended_by_the_sweeper_before_its_charge_is_never_charged(
    client, container, drain, make_user, monkeypatch
):
    """A slow checkout: the sweeper ends its order ("nothing was charged") before the
    charge starts. The sweeper took the charge's key, so the late charge is refused
    (409 CHARGE_FORFEITED) instead of being made - before, a charge with an unknown
    outcome was finished later by the payment sweeper, and nothing refunded it."""
    manager, v, user = await one_variant_shop(client, container, drain, make_user)
    later = utcnow() + timedelta(minutes=5)
    real_charge = Checkout._charge

    async def late_charge(self: Checkout, order: Any, body: Any, ip: Any) -> Any:
        await sweep(container, clock=lambda: later)  # the sweeper passes first
        return await real_charge(self, order, body, ip)

    monkeypatch.setattr(Checkout, "_charge", late_charge)
    calls = flaky_card_provider(monkeypatch, failures=3)
    late = await checkout(client, user, checkout_body([(v["variant_id"], 1)]))
    assert_error(late, 409, "CHARGE_FORFEITED")
    assert calls == []  # the provider was never asked
    monkeypatch.setattr(Checkout, "_charge", real_charge)

    payments = container.settings.payments
    await resume_processing(
        container.db("payment"), container.publisher("payment"), providers_of(container),
        payments, now=later,
    )  # fmt: skip
    await sweep(container, clock=lambda: later + timedelta(minutes=5))
    [order] = ok(await client.get(ORDERS, headers=user.headers))
    assert (order["status"], order["payment_status"]) == ("cancelled", "unpaid")
    assert await payments_of(client, manager, order["id"]) == []
    assert (await stock(container, v["variant_id"]))["on_hand"] == 5


async def test_the_sweeper_waits_for_a_charge_in_flight_and_confirms_with_it(
    client, container, drain, make_user, monkeypatch
):
    """The sweeper's look for the charge meets it in flight (its payment row not yet
    committed): it waits for the charge instead of ending the order as unpaid."""
    from ultramarket.services.payment.providers.test import TestProvider

    manager, v, user = await one_variant_shop(client, container, drain, make_user)
    later = utcnow() + timedelta(minutes=5)
    real = TestProvider.charge
    sweeps: list[asyncio.Task[dict[str, int]]] = []

    async def slow(self: TestProvider, request: Any) -> Any:
        # A sweeper starts while the charge is at the provider (its claim uncommitted).
        sweeps.append(asyncio.create_task(sweep(container, clock=lambda: later)))
        await asyncio.sleep(0.5)
        return await real(self, request)

    monkeypatch.setattr(TestProvider, "charge", slow)
    placed = ok(await checkout(client, user, checkout_body([(v["variant_id"], 1)])), 201)
    await asyncio.gather(*sweeps)
    assert len(sweeps) == 1
    final = ok(await client.get(f"{ORDERS}/{placed['id']}", headers=manager.headers))
    assert (final["status"], final["payment_status"]) == ("confirmed", "paid")
    [payment] = await payments_of(client, manager, placed["id"])
    assert payment["status"] == "succeeded"
    assert (await stock(container, v["variant_id"]))["on_hand"] == 4


def charging_a_cent_less(monkeypatch: Any) -> None:
    """The checkout's charge made for one cent less than the order's total."""
    real_charge = Checkout._charge

    async def short_charge(self: Checkout, order: Any, body: Any, ip: Any) -> Any:
        order.total_amount -= 1
        try:
            return await real_charge(self, order, body, ip)
        finally:
            order.total_amount += 1

    monkeypatch.setattr(Checkout, "_charge", short_charge)


async def assert_refunded_and_restocked(
    client: Any, container: Any, manager: Any, order_id: str, variant_id: str
) -> None:
    final = ok(await client.get(f"{ORDERS}/{order_id}", headers=manager.headers))
    assert (final["status"], final["payment_status"]) == ("cancelled", "refunded")
    [payment] = await payments_of(client, manager, order_id)
    assert payment["status"] == "refunded"
    level = await stock(container, variant_id)
    assert (level["on_hand"], level["reserved"]) == (5, 0)


async def test_a_charge_that_does_not_match_the_order_is_refunded_and_the_order_ends(
    client, container, drain, make_user, monkeypatch
):
    """Never confirmed with a payment that does not cover it exactly - and not left
    pending either, with the customer charged for an order that never completes."""
    manager, v, user = await one_variant_shop(client, container, drain, make_user)
    charging_a_cent_less(monkeypatch)
    refused = await checkout(client, user, checkout_body([(v["variant_id"], 1)]), key="k1")
    assert_error(refused, 409, "PAYMENT_MISMATCH")
    [order] = ok(await client.get(ORDERS, headers=user.headers))
    await assert_refunded_and_restocked(client, container, manager, order["id"], v["variant_id"])
    # A retry with the key is answered the same, and charges nothing more.
    again = await checkout(client, user, checkout_body([(v["variant_id"], 1)]), key="k1")
    assert_error(again, 409, "PAYMENT_MISMATCH")
    assert len(await payments_of(client, manager, order["id"])) == 1


async def test_the_sweeper_refunds_a_stalled_checkouts_charge_that_does_not_match(
    client, container, drain, make_user, monkeypatch
):
    manager, v, user = await one_variant_shop(client, container, drain, make_user)
    charging_a_cent_less(monkeypatch)
    await crash_after_payment(client, container, user, checkout_body([(v["variant_id"], 1)]))
    [order] = ok(await client.get(ORDERS, headers=user.headers))
    later = utcnow() + timedelta(minutes=5)
    await sweep(container, clock=lambda: later)
    await assert_refunded_and_restocked(client, container, manager, order["id"], v["variant_id"])
    await sweep(container, clock=lambda: later + timedelta(minutes=5))  # nothing more to do
    [payment] = await payments_of(client, manager, order["id"])
    assert payment["refunded_amount"] == payment["amount"]
