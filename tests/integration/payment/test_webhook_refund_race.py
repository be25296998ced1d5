"""Stripe's ``charge.refunded`` events racing, on SQLite and PostgreSQL, with real
signature checks: the event of a refund of ours whose provider call is still returning,
and two dashboard refunds' events at once. The money recorded as refunded is what the
provider refunded, once."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from ultramarket.core.errors import Unavailable
from ultramarket.services.payment.models import Payment, PaymentRefund
from ultramarket.services.payment.providers import providers_of
from ultramarket.services.payment.providers.base import ProviderResult
from ultramarket.services.payment.providers.stripe import StripeProvider

API = "/api/v1/payments"
SECRET = "whsec_race_test"


def signed(payload: bytes) -> dict[str, str]:
    at = int(time.time())
    mac = hmac.new(SECRET.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={at},v1={mac}"}


class SlowRefunds(StripeProvider):
    """Real webhook verification; a refund call that takes a moment and answers re_ours."""

    def __init__(self) -> None:
        super().__init__("sk_test_race", api_base="http://127.0.0.1:9", webhook_secret=SECRET)
        self.refunds: list[int] = []

    async def refund(self, provider_ref: str, amount: int, currency: str, key: str) -> Any:
        self.refunds.append(amount)
        await asyncio.sleep(0.8)
        return ProviderResult("succeeded", "re_ours")


def charge_refunded(event_id: str, total: int, newest_ref: str, newest_amount: int) -> bytes:
    charge = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": "pi_1",
        "amount": 10000,
        "amount_refunded": total,
        "refunds": {"data": [{"id": newest_ref, "amount": newest_amount}]},
    }
    event = {"id": event_id, "object": "event", "type": "charge.refunded"}
    return json.dumps({**event, "data": {"object": charge}}).encode()


async def paid_with_stripe(container: Any, user_id: str) -> uuid.UUID:
    payment_id = uuid.uuid4()
    async with container.db("payment").session() as session:
        session.add(
            Payment(
                id=payment_id,
                user_id=uuid.UUID(user_id),
                order_id="o-1",
                method="card",
                provider="stripe",
                status="succeeded",
                amount=10000,
                currency="USD",
                refunded_amount=0,
                provider_ref="pi_1",
            )
        )
    return payment_id


async def refunded(container: Any, payment_id: uuid.UUID) -> tuple[int, list[tuple[int, str]]]:
    async with container.db("payment").read_session() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        rows = await session.scalars(
            select(PaymentRefund).where(PaymentRefund.payment_id == payment_id)
        )
        return payment.refunded_amount, sorted((r.amount, r.provider_ref or "") for r in rows)


async def test_the_event_of_our_own_refund_in_flight_records_nothing_more(
    client, make_user, container
):
    provider = SlowRefunds()
    providers_of(container).set(provider)
    manager = await make_user(role="MANAGER")
    payment_id = await paid_with_stripe(container, (await make_user()).id)

    async def refund() -> Any:
        headers = {**manager.headers, "Idempotency-Key": "r1"}
        return await client.post(
            f"{API}/{payment_id}/refund", json={"amount": "30.00"}, headers=headers
        )

    async def webhook() -> Any:
        await asyncio.sleep(0.3)  # Stripe tells us while our refund call is still returning
        payload = charge_refunded("evt_1", 3000, "re_ours", 3000)
        return await client.post(f"{API}/webhooks/stripe", content=payload, headers=signed(payload))

    ours, event = await asyncio.gather(refund(), webhook())
    assert (ours.status_code, event.status_code) == (201, 200)
    assert provider.refunds == [3000]
    assert await refunded(container, payment_id) == (3000, [(3000, "re_ours")])


async def test_two_dashboard_refunds_events_at_once_record_what_the_provider_refunded(
    client, make_user, container
):
    providers_of(container).set(SlowRefunds())
    payment_id = await paid_with_stripe(container, (await make_user()).id)
    # Two refunds made in Stripe's dashboard: 20.00 (re_a), then 30.00 (re_b).
    first = charge_refunded("evt_a", 2000, "re_a", 2000)
    second = charge_refunded("evt_b", 5000, "re_b", 3000)
    answers = await asyncio.gather(
        *(
            client.post(f"{API}/webhooks/stripe", content=p, headers=signed(p))
            for p in (first, second)
        )
    )
    assert [a.status_code for a in answers] == [200, 200]
    total, _ = await refunded(container, payment_id)
    assert total == 5000


class LostAnswerRefunds(StripeProvider):
    """Real webhook verification; refunds keyed as Stripe keys them (a repeated key is
    answered the first refund), the first answer lost on the way back (after Stripe made
    the refund), every later call taking a moment."""

    def __init__(self) -> None:
        super().__init__("sk_test_race", api_base="http://127.0.0.1:9", webhook_secret=SECRET)
        self.made: dict[str, int] = {}  # idempotency key -> amount refunded at Stripe

    async def refund(self, provider_ref: str, amount: int, currency: str, key: str) -> Any:
        first = key not in self.made
        self.made.setdefault(key, amount)
        if first:
            raise Unavailable("timed out", code="PROVIDER_UNAVAILABLE")
        await asyncio.sleep(0.3)
        return ProviderResult("succeeded", "re_lost")


async def refunded_events(container: Any) -> int:
    table = container.events("payment").outbox
    async with container.db("payment").read_session() as session:
        rows = await session.scalars(
            select(table.c.event_type).where(table.c.event_type == "payment.refunded.v1")
        )
        return len(list(rows))


@pytest.mark.parametrize("first", ["webhook", "retry"])
async def test_a_retried_refund_and_the_event_of_its_lost_first_try_record_it_once(
    client, make_user, container, first
):
    """Our refund call timed out after Stripe refunded (503: nothing of ours kept). Its
    ``charge.refunded`` event and the retry with the same key - Stripe answers it the
    same refund - come at once, in either order: the refund is recorded once."""
    provider = LostAnswerRefunds()
    providers_of(container).set(provider)
    manager = await make_user(role="MANAGER")
    payment_id = await paid_with_stripe(container, (await make_user()).id)
    headers = {**manager.headers, "Idempotency-Key": "r1"}
    url = f"{API}/{payment_id}/refund"
    lost = await client.post(url, json={"amount": "30.00"}, headers=headers)
    assert lost.status_code == 503, lost.text
    assert await refunded(container, payment_id) == (0, [])

    async def retry() -> Any:
        await asyncio.sleep(0.1 if first == "webhook" else 0)
        return await client.post(url, json={"amount": "30.00"}, headers=headers)

    async def webhook() -> Any:
        await asyncio.sleep(0.1 if first == "retry" else 0)
        payload = charge_refunded("evt_lost", 3000, "re_lost", 3000)
        return await client.post(f"{API}/webhooks/stripe", content=payload, headers=signed(payload))

    ours, event = await asyncio.gather(retry(), webhook())
    assert (ours.status_code, event.status_code) == (201, 200), ours.text
    answer = ours.json()["data"]
    assert (answer["refund"]["provider_reference"], answer["refund"]["amount"]) == (
        "re_lost",
        "30.00",
    )
    assert answer["payment"]["refunded_amount"] == "30.00"
    assert list(provider.made.values()) == [3000]  # what Stripe refunded
    assert await refunded(container, payment_id) == (3000, [(3000, "re_lost")])
    assert await refunded_events(container) == 1
