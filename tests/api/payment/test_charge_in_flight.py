"""A charge is committed before its provider is asked: the payment exists (``processing``,
its key claimed, held by the request asking) while the provider answers, so a charge the
provider makes is never one we hold no record of. A retry with the same key waits for
the answer of the request holding it; once that request is gone, the retry or the
sweeper asks the provider again with the same provider key (one charge)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
from payment_helpers import API, assert_error, card, claims_of, gated_provider, ok, write_elsewhere
from sqlalchemy import select
from tests.shop import crash_after_the_charge

from ultramarket.core.db import utcnow
from ultramarket.services.payment.hold import Hold
from ultramarket.services.payment.models import Payment
from ultramarket.services.payment.providers import providers_of
from ultramarket.services.payment.providers.test import TestProvider
from ultramarket.services.payment.service import PaymentService, resume_processing


async def payments_in(container: Any) -> list[Payment]:
    async with container.db("payment").read_session() as session:
        return list(await session.scalars(select(Payment)))


async def test_the_payment_is_committed_before_the_provider_is_asked(
    client, make_user, container, monkeypatch
):
    charge = TestProvider.charge
    seen: list[tuple[str, bool, int]] = []

    async def look_first(self: TestProvider, request: Any) -> Any:
        # Read from another connection: only a committed row is visible there. A write
        # from it must not wait either (on SQLite: no write lock is held meanwhile).
        [payment] = await payments_in(container)
        await write_elsewhere(container)
        claims = await claims_of(container, "payment.create")
        held = payment.in_flight_until is not None and payment.in_flight_until > utcnow()
        seen.append((payment.status, held, claims))
        return await charge(self, request)

    monkeypatch.setattr(TestProvider, "charge", look_first)
    user = await make_user()
    headers = {**user.headers, "Idempotency-Key": "seen-first"}
    paid = ok(await client.post(API, json=card(order="o-seen"), headers=headers), 201)
    assert seen == [("processing", True, 1)]
    assert paid["status"] == "succeeded"
    [payment] = await payments_in(container)
    assert (payment.status, payment.in_flight_until) == ("succeeded", None)


async def test_a_retry_waits_for_the_answer_of_the_request_asking(
    client, make_user, container, monkeypatch
):
    asked, release, calls = gated_provider(monkeypatch)
    user = await make_user()
    headers = {**user.headers, "Idempotency-Key": "wait-for-me"}
    first = asyncio.create_task(client.post(API, json=card(order="o-w"), headers=headers))
    await asyncio.wait_for(asked.wait(), 10)
    retry = asyncio.create_task(client.post(API, json=card(order="o-w"), headers=headers))
    await asyncio.sleep(0.3)
    assert not retry.done()  # waiting for the first, not asking the provider itself
    release.set()
    made, replayed = ok(await first, 201), ok(await retry, 200)
    assert made == replayed
    assert len(calls) == 1
    assert len(await payments_in(container)) == 1


async def test_a_retry_told_to_come_back_while_the_first_is_still_asking(
    client, make_user, settings, monkeypatch
):
    settings.payments.charge_wait_seconds = 0.2
    asked, release, calls = gated_provider(monkeypatch)
    user = await make_user()
    headers = {**user.headers, "Idempotency-Key": "come-back"}
    first = asyncio.create_task(client.post(API, json=card(order="o-cb"), headers=headers))
    await asyncio.wait_for(asked.wait(), 10)
    assert_error(
        await client.post(API, json=card(order="o-cb"), headers=headers),
        503,
        "PAYMENT_PROCESSING",
    )
    release.set()
    made = ok(await first, 201)
    assert ok(await client.post(API, json=card(order="o-cb"), headers=headers), 200) == made
    assert len(calls) == 1


async def test_a_retry_after_a_crash_past_the_charge_asks_the_provider_with_the_same_key(
    app, make_user, monkeypatch
):
    """The provider charged, then the request died before recording its answer (here an
    unexpected error): the payment and the key's claim were committed before the provider
    was asked, and the request let the payment go. The retry with the same
    Idempotency-Key finds them and asks the provider with the first call's key - which
    answers with that charge - instead of making a second one."""
    keys = crash_after_the_charge(monkeypatch, PaymentService, "_apply_result")
    user = await make_user()
    headers = {**user.headers, "Idempotency-Key": "pay-crash"}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        first = await http.post(API, json=card(order="o-crash"), headers=headers)
        assert_error(first, 500, "INTERNAL")
        again = ok(await http.post(API, json=card(order="o-crash"), headers=headers), 200)
        [payment] = ok(await http.get(API, headers=user.headers))
    assert len(keys) == 2
    assert keys[0] == keys[1]  # the provider answers the first charge: one charge
    assert (payment["id"], payment["status"]) == (again["id"], "succeeded")


async def test_a_charge_whose_process_died_is_settled_once_its_hold_runs_out(
    app, make_user, container, settings, monkeypatch
):
    """The provider charged, then the process died before recording the answer (it could
    not let the payment go): the payment is there, ``processing`` and held. Retries wait
    while the hold lasts; after it the sweeper asks the provider again with the same
    key - which answers with that charge - and the key is answered with it."""
    settings.payments.charge_wait_seconds = 0.2
    keys = crash_after_the_charge(monkeypatch, PaymentService, "_apply_result")

    async def died(self: Hold) -> None:  # a dead process lets nothing go
        return None

    monkeypatch.setattr(Hold, "let_go", died)
    user = await make_user()
    headers = {**user.headers, "Idempotency-Key": "died"}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert_error(await http.post(API, json=card(order="o-d"), headers=headers), 500, "INTERNAL")
        [payment] = await payments_in(container)
        assert payment.status == "processing"  # recorded, though its answer was lost
        # Held: a retry is told to come back, the sweeper leaves it alone.
        assert_error(
            await http.post(API, json=card(order="o-d"), headers=headers),
            503,
            "PAYMENT_PROCESSING",
        )
        payments = (container.db("payment"), None, providers_of(container), settings.payments)
        assert await resume_processing(*payments, older_than=timedelta(0)) == 0
        assert len(keys) == 1
        later = utcnow() + timedelta(seconds=settings.payments.charge_lease_seconds + 5)
        assert await resume_processing(*payments, now=later) == 1
        again = ok(await http.post(API, json=card(order="o-d"), headers=headers), 200)
    assert keys == [keys[0]] * 2  # the provider answers the first charge: one charge
    [payment] = await payments_in(container)
    assert (str(payment.id), payment.status, again["status"]) == (
        again["id"],
        "succeeded",
        "succeeded",
    )
