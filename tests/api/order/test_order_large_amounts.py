"""Orders of amounts past 32 bits (a product's price is a BIGINT): a UZS price of
25,000,000.00 is 2.5e9 minor units. On PostgreSQL an INTEGER column refuses it.

Each test runs with the payment service itself (its amounts are 64-bit too) and with a
stand-in for it, which shows the order service's part on its own."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from order_helpers import API, PAYMENTS, checkout, checkout_body, configure, make_variant, ok, stock

from ultramarket.core.db import utcnow
from ultramarket.core.money import Money
from ultramarket.services.payment.client import PaymentClient
from ultramarket.services.payment.schemas import PaymentRead, RefundRead, RefundResult

PRICE = 2_500_000_000  # 25,000,000.00 UZS in minor units
# Two units; no flat shipping is configured for UZS; CA tax 7.25% of 5,000,000,000.
TOTAL = 5_362_500_000

ReadPayment = Callable[[str], Awaitable[dict[str, Any]]]


class StandIn:
    """The payment service's charge and refund, in memory: every card pays."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.payments: dict[uuid.UUID, PaymentRead] = {}
        stand_in = self

        # PaymentClient.charge and .refund, as the order service calls them.
        async def charge(_client: Any, order_id: str, *args: Any, **_: Any) -> PaymentRead:
            user_id, amount, currency, method = args[:4]
            return stand_in.charge(order_id, user_id, amount, currency, method)

        async def refund(_client: Any, payment_id: uuid.UUID, *args: Any, **_: Any) -> RefundResult:
            amount, reason = args[:2]
            return stand_in.refund(payment_id, amount, reason)

        monkeypatch.setattr(PaymentClient, "charge", charge)
        monkeypatch.setattr(PaymentClient, "refund", refund)

    async def read(self, payment_id: str) -> dict[str, Any]:
        return self.payments[uuid.UUID(payment_id)].model_dump(mode="json")

    def charge(
        self, order_id: str, user_id: uuid.UUID, amount: str, currency: str, method: str
    ) -> PaymentRead:
        for payment in self.payments.values():
            if payment.order_id == order_id:
                return payment
        now = utcnow()
        payment = PaymentRead(
            id=uuid.uuid4(),
            order_id=order_id,
            user_id=user_id,
            method=method,
            provider="stand-in",
            status="succeeded",
            amount=amount,
            currency=currency,
            refunded_amount=str(Money(0, currency)),
            refundable_amount=amount,
            created_at=now,
            updated_at=now,
            succeeded_at=now,
        )
        self.payments[payment.id] = payment
        return payment

    def refund(self, payment_id: uuid.UUID, amount: str | None, reason: str) -> RefundResult:
        payment = self.payments[payment_id]
        c = payment.currency
        paid, back = Money.of(payment.amount, c), Money.of(payment.refunded_amount, c)
        given = Money.of(amount, c) if amount is not None else paid - back
        back = back + given
        payment = payment.model_copy(
            update={
                "status": "refunded" if back == paid else "partially_refunded",
                "refunded_amount": str(back),
                "refundable_amount": str(paid - back),
            }
        )
        self.payments[payment_id] = payment
        refund = RefundRead(
            id=uuid.uuid4(),
            payment_id=payment_id,
            amount=str(given),
            currency=c,
            reason=reason,
            status="succeeded",
            created_at=utcnow(),
        )
        return RefundResult(refund=refund, payment=payment)


@pytest.fixture(params=["payment_service", "stand_in"])
async def payment_of(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    client: httpx.AsyncClient,
    make_user: Any,
) -> ReadPayment:
    """Reads an order's payment: from the payment service, or from its stand-in."""
    if request.param == "stand_in":
        return StandIn(monkeypatch).read
    reader = await make_user(role="MANAGER")

    async def read(payment_id: str) -> dict[str, Any]:
        response = await client.get(f"{PAYMENTS}/{payment_id}", headers=reader.headers)
        return ok(response)  # type: ignore[no-any-return]

    return read


async def _placed(client, container, drain, make_user):
    configure(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(
        client, container, drain, manager, price="25000000.00", currency="UZS", stock=5
    )
    user = await make_user()
    order = ok(await checkout(client, user, checkout_body([(v["variant_id"], 2)])), 201)
    return manager, user, v, order


async def test_a_checkout_past_32_bits_confirms_refunds_in_part_and_is_counted(
    payment_of, client, container, drain, make_user
):
    manager, _user, v, order = await _placed(client, container, drain, make_user)

    assert (order["status"], order["payment_status"]) == ("confirmed", "paid")
    assert order["currency"] == "UZS"
    assert order["subtotal_amount"] == 2 * PRICE
    assert (order["shipping_amount"], order["discount_amount"]) == (0, 0)
    assert order["tax_amount"] == 362_500_000
    assert (order["total_amount"], order["total"]) == (TOTAL, "53625000.00")
    [line] = order["items"]
    assert (line["unit_price_amount"], line["line_total_amount"]) == (PRICE, TOTAL)
    payment = await payment_of(order["payment_id"])
    assert (payment["status"], payment["amount"]) == ("succeeded", "53625000.00")
    fetched = ok(await client.get(f"{API}/{order['id']}", headers=manager.headers))
    assert (fetched["total_amount"], fetched["items"][0]["unit_price_amount"]) == (TOTAL, PRICE)

    url = f"{API}/{order['id']}/refund"
    # An amount past 32 bits, then one unit: its share of the line, 2,681,250,000.
    part = ok(await client.post(url, json={"amount": "22000000.00"}, headers=manager.headers), 201)
    assert (part["status"], part["refunded_amount"]) == ("partially_refunded", 2_200_000_000)
    by_line = ok(
        await client.post(
            url,
            json={"lines": [{"order_item_id": line["id"], "quantity": 1}]},
            headers=manager.headers,
        ),
        201,
    )
    refunded = 2_200_000_000 + 2_681_250_000
    assert by_line["refunded_amount"] == refunded
    assert [(r["amount"], r["status"]) for r in by_line["refunds"]] == [
        ("22000000.00", "succeeded"),
        ("26812500.00", "succeeded"),
    ]
    assert by_line["items"][0]["refunded_quantity"] == 1
    assert (await stock(container, v["variant_id"]))["on_hand"] == 4  # one unit back
    payment = await payment_of(order["payment_id"])
    assert (payment["status"], payment["refunded_amount"]) == ("partially_refunded", "48812500.00")

    stats = ok(await client.get(f"{API}/stats", headers=manager.headers))
    [uzs] = stats["revenue"]
    assert (uzs["currency"], uzs["orders"]) == ("UZS", 1)
    assert (uzs["revenue_amount"], uzs["refunded_amount"]) == (TOTAL, refunded)
    assert (uzs["revenue"], uzs["refunded"]) == ("53625000.00", "48812500.00")
    assert (uzs["net_revenue"], uzs["average_order_value"]) == ("4812500.00", "4812500.00")


async def test_an_order_past_32_bits_is_cancelled_and_refunded_in_full(
    payment_of, client, container, drain, make_user
):
    manager, user, v, order = await _placed(client, container, drain, make_user)
    assert (await stock(container, v["variant_id"]))["on_hand"] == 3

    cancelled = ok(await client.post(f"{API}/{order['id']}/cancel", headers=user.headers))

    assert (cancelled["status"], cancelled["payment_status"]) == ("cancelled", "refunded")
    assert (cancelled["refunded_amount"], cancelled["refunded"]) == (TOTAL, "53625000.00")
    assert [(r["amount"], r["status"]) for r in cancelled["refunds"]] == [
        ("53625000.00", "succeeded")
    ]
    assert (await stock(container, v["variant_id"]))["on_hand"] == 5
    payment = await payment_of(order["payment_id"])
    assert (payment["status"], payment["refunded_amount"]) == ("refunded", "53625000.00")
    stats = ok(await client.get(f"{API}/stats", headers=manager.headers))
    assert stats["by_status"]["cancelled"] == 1
    assert stats["revenue"] == []  # a cancelled order is no sale
