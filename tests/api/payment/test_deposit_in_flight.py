"""A wallet deposit is committed before its card is charged: the attempt exists
(``processing``, its key claimed, held by the request asking) while the provider
answers, so a charge the provider makes is never one we hold no record of. A retry with
the same key waits for the answer of the request holding it; once that request is gone,
the retry or the sweeper asks the provider again with the same provider key (one
charge, one credit)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
from payment_helpers import WALLET, assert_error, claims_of, gated_provider, ok, write_elsewhere
from tests.shop import card_webhook, crash_after_the_charge, deposit_attempts, deposit_credits

from ultramarket.core.db import utcnow
from ultramarket.core.errors import Unavailable
from ultramarket.services.payment.hold import Hold
from ultramarket.services.payment.providers import providers_of
from ultramarket.services.payment.providers.test import TestProvider
from ultramarket.services.payment.service import (
    WalletService,
    resume_deposits,
)

DEPOSIT = f"{WALLET}/deposit"
BODY = {"amount": "40.00", "currency": "USD", "token": "tok_4242"}


async def test_the_deposit_is_committed_before_its_card_is_charged(
    client, make_user, container, monkeypatch
):
    charge = TestProvider.charge
    seen: list[tuple[str, bool, int]] = []

    async def look_first(self: TestProvider, request: Any) -> Any:
        # Read from another connection: only a committed row is visible there. A write
        # from it must not wait either (on SQLite: no write lock is held meanwhile).
        [attempt] = await deposit_attempts(container)
        await write_elsewhere(container)
        claims = await claims_of(container, "wallet.deposit")
        held = attempt.in_flight_until is not None and attempt.in_flight_until > utcnow()
        seen.append((attempt.status, held, claims))
        return await charge(self, request)

    monkeypatch.setattr(TestProvider, "charge", look_first)
    user = await make_user()
    headers = {**user.headers, "Idempotency-Key": "dep-seen-first"}
    made = ok(await client.post(DEPOSIT, json=BODY, headers=headers), 201)
    assert seen == [("processing", True, 1)]
    assert made["balance"] == "40.00"
    [attempt] = await deposit_attempts(container)
    assert (attempt.status, attempt.in_flight_until) == ("succeeded", None)


async def test_a_retry_waits_for_the_answer_of_the_deposit_charging(
    client, make_user, container, monkeypatch
):
    asked, release, keys = gated_provider(monkeypatch)
    user = await make_user()
    headers = {**user.headers, "Idempotency-Key": "dep-wait"}
    first = asyncio.create_task(client.post(DEPOSIT, json=BODY, headers=headers))
    await asyncio.wait_for(asked.wait(), 10)
    retry = asyncio.create_task(client.post(DEPOSIT, json=BODY, headers=headers))
    await asyncio.sleep(0.3)
    assert not retry.done()  # waiting for the first, not charging the card itself
    release.set()
    made, replayed = ok(await first, 201), ok(await retry, 200)
    assert made == replayed
    assert len(keys) == 1
    assert (len(await deposit_attempts(container)), await deposit_credits(container)) == (1, 1)


async def test_a_retry_told_to_come_back_while_the_deposit_is_still_charging(
    client, make_user, container, settings, monkeypatch
):
    settings.payments.charge_wait_seconds = 0.2
    asked, release, keys = gated_provider(monkeypatch)
    user = await make_user()
    headers = {**user.headers, "Idempotency-Key": "dep-come-back"}
    first = asyncio.create_task(client.post(DEPOSIT, json=BODY, headers=headers))
    await asyncio.wait_for(asked.wait(), 10)
    assert_error(await client.post(DEPOSIT, json=BODY, headers=headers), 503, "PAYMENT_PROCESSING")
    release.set()
    made = ok(await first, 201)
    assert ok(await client.post(DEPOSIT, json=BODY, headers=headers), 200) == made
    assert (len(keys), await deposit_credits(container)) == (1, 1)


async def test_a_webhook_settling_the_deposit_while_its_card_is_charged(
    client, make_user, container, monkeypatch
):
    """The provider's webhook (``payment_intent.succeeded`` naming ``deposit:<id>``) can
    arrive before the request asking records the provider's answer: it credits the
    deposit, and the request answers with that credit instead of a second one."""
    asked, release, _ = gated_provider(monkeypatch)
    user = await make_user()
    first = asyncio.create_task(client.post(DEPOSIT, json=BODY, headers=user.headers))
    await asyncio.wait_for(asked.wait(), 10)
    [attempt] = await deposit_attempts(container)

    news = {"provider_ref": "ch_hook", "payment_id": f"deposit:{attempt.id}"}
    await card_webhook(container, monkeypatch, "evt_dep_early", outcome="succeeded", **news)
    release.set()
    made = ok(await first, 201)
    assert (made["balance"], made["provider_reference"]) == ("40.00", "ch_hook")
    assert ok(await client.get(WALLET, headers=user.headers))["balance"] == "40.00"
    assert await deposit_credits(container) == 1


async def test_a_retry_after_a_crash_past_the_charge_asks_with_the_same_key(
    app, make_user, container, monkeypatch
):
    """The card was charged, then the request died before recording the answer (an
    unexpected error): the attempt and the key's claim were committed before the charge,
    and the request let the attempt go. The retry asks the provider with the first
    call's key - which answers with that charge - and credits it once."""
    keys = crash_after_the_charge(monkeypatch, WalletService, "_settle_deposit")
    user = await make_user()
    headers = {**user.headers, "Idempotency-Key": "dep-crash"}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert_error(await http.post(DEPOSIT, json=BODY, headers=headers), 500, "INTERNAL")
        [attempt] = await deposit_attempts(container)
        assert (attempt.status, attempt.in_flight_until) == ("processing", None)  # let go
        again = ok(await http.post(DEPOSIT, json=BODY, headers=headers), 200)
        balance = ok(await http.get(WALLET, headers=user.headers))["balance"]
    assert keys == [keys[0]] * 2  # the provider answers the first charge: one charge
    assert (again["balance"], balance, await deposit_credits(container)) == ("40.00", "40.00", 1)


async def test_a_deposit_whose_process_died_is_settled_once_its_hold_runs_out(
    app, make_user, container, settings, monkeypatch
):
    """The card was charged, then the process died before recording the answer (it could
    not let the attempt go): the attempt is there, ``processing`` and held. Retries are
    told to come back while the hold lasts, the sweeper leaves it; after it the sweeper
    asks the provider again with the same key, credits once and answers the key."""
    settings.payments.charge_wait_seconds = 0.2
    keys = crash_after_the_charge(monkeypatch, WalletService, "_settle_deposit")

    async def died(self: Hold) -> None:  # a dead process lets nothing go
        return None

    monkeypatch.setattr(Hold, "let_go", died)
    user = await make_user()
    headers = {**user.headers, "Idempotency-Key": "dep-died"}
    database, providers = container.db("payment"), providers_of(container)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert_error(await http.post(DEPOSIT, json=BODY, headers=headers), 500, "INTERNAL")
        [attempt] = await deposit_attempts(container)
        assert attempt.status == "processing"  # recorded, though its answer was lost
        assert_error(
            await http.post(DEPOSIT, json=BODY, headers=headers), 503, "PAYMENT_PROCESSING"
        )
        swept = (database, providers, settings.payments)
        assert await resume_deposits(*swept, older_than=timedelta(0)) == 0  # held
        assert len(keys) == 1
        later = utcnow() + timedelta(seconds=settings.payments.charge_lease_seconds + 5)
        assert await resume_deposits(*swept, now=later) == 1
        again = ok(await http.post(DEPOSIT, json=BODY, headers=headers), 200)
        balance = ok(await http.get(WALLET, headers=user.headers))["balance"]
    assert keys == [keys[0]] * 2  # the provider answers the first charge: one charge
    assert (again["balance"], balance, await deposit_credits(container)) == ("40.00", "40.00", 1)
    [attempt] = await deposit_attempts(container)
    assert (attempt.status, attempt.in_flight_until) == ("succeeded", None)


async def test_nothing_is_locked_while_a_retry_charges_the_card_again(
    client, make_user, container, monkeypatch
):
    """The first request's charge went unanswered; the retry takes the deposit over and
    asks again: meanwhile another write goes through (on SQLite: the retry holds no
    write lock while the provider answers)."""
    charge = TestProvider.charge
    calls: list[str] = []

    async def unanswered_then_look(self: TestProvider, request: Any) -> Any:
        calls.append(request.idempotency_key)
        if len(calls) == 1:
            raise Unavailable("timed out", code="PROVIDER_UNAVAILABLE")
        await asyncio.wait_for(write_elsewhere(container), 5)
        return await charge(self, request)

    monkeypatch.setattr(TestProvider, "charge", unanswered_then_look)
    user = await make_user()
    headers = {**user.headers, "Idempotency-Key": "dep-retry-unlocked"}
    assert_error(await client.post(DEPOSIT, json=BODY, headers=headers), 503, "PAYMENT_PROCESSING")
    done = ok(await client.post(DEPOSIT, json=BODY, headers=headers), 200)
    assert (done["balance"], calls, await deposit_credits(container)) == (
        "40.00",
        [calls[0]] * 2,
        1,
    )


async def test_a_charge_that_went_through_for_a_dropped_deposit_is_refunded(
    client, make_user, container, monkeypatch
):
    """While the request charged the card, the deposit was dropped (the sweeper gave up
    on it): the charge this request made is refunded, and the request is told so."""
    asked, release, _ = gated_provider(monkeypatch)
    refunded: list[str] = []
    refund = TestProvider.refund

    async def recorded(self: TestProvider, ref: str, amount: int, currency: str, key: str) -> Any:
        refunded.append(ref)
        return await refund(self, ref, amount, currency, key)

    monkeypatch.setattr(TestProvider, "refund", recorded)
    user = await make_user()
    first = asyncio.create_task(client.post(DEPOSIT, json=BODY, headers=user.headers))
    await asyncio.wait_for(asked.wait(), 10)
    [attempt] = await deposit_attempts(container)
    async with container.db("payment").session() as session:
        wallet = WalletService(session, providers_of(container), container.settings.payments)
        later = utcnow() + timedelta(hours=25)
        assert await wallet.give_up_deposit(attempt.id, later)
    release.set()
    error = assert_error(await first, 402, "PAYMENT_FAILED")
    assert error["details"] == [{"deposit_id": str(attempt.id)}]
    [attempt] = await deposit_attempts(container)
    assert (attempt.status, len(refunded), await deposit_credits(container)) == ("refunded", 1, 0)
