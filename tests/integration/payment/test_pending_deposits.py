"""A wallet deposit whose card charge goes unanswered is kept ``processing`` (503
PAYMENT_PROCESSING), not rolled back with the charge perhaps made: the retry with its
key, the sweeper or the provider's webhook settles it - credited once on success,
dropped on a decline, refunded when charged after it was dropped."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from tests.shop import card_webhook, deposit_attempts, deposit_credits, flaky_card_provider
from tests.support import assert_error, ok

from ultramarket.core.db import utcnow
from ultramarket.services.payment.providers import providers_of
from ultramarket.services.payment.providers.test import TestProvider
from ultramarket.services.payment.service import resume_deposits

WALLET = "/api/v1/wallet"


def deposit(amount: str = "40.00", token: str = "tok_4242") -> dict[str, str]:
    return {"amount": amount, "currency": "USD", "token": token}


async def balance(client: Any, user: Any) -> str:
    return str(ok(await client.get(WALLET, headers=user.headers))["balance"])


async def sweep(container: Any, **later: float) -> int:
    return await resume_deposits(
        container.db("payment"),
        providers_of(container),
        container.settings.payments,
        now=utcnow() + timedelta(**later),
    )


async def unanswered(client: Any, user: Any, key: str, **body: str) -> None:
    headers = {**user.headers, "Idempotency-Key": key}
    assert_error(
        await client.post(f"{WALLET}/deposit", json=deposit(**body), headers=headers),
        503,
        "PAYMENT_PROCESSING",
    )


async def test_a_retry_finishes_the_deposit_its_charge_left_unanswered(
    client, make_user, container, monkeypatch
):
    calls = flaky_card_provider(monkeypatch)
    user = await make_user()
    await unanswered(client, user, "dep-1")
    [pending] = await deposit_attempts(container)
    assert pending.status == "processing"
    assert await balance(client, user) == "0.00"

    headers = {**user.headers, "Idempotency-Key": "dep-1"}
    done = ok(await client.post(f"{WALLET}/deposit", json=deposit(), headers=headers), 200)
    assert done["balance"] == "40.00"
    assert calls[0] == calls[1]  # the same provider key: one charge
    again = ok(await client.post(f"{WALLET}/deposit", json=deposit(), headers=headers), 200)
    assert again["transaction_id"] == done["transaction_id"]
    assert (await balance(client, user), await deposit_credits(container)) == ("40.00", 1)
    assert [a.status for a in await deposit_attempts(container)] == ["succeeded"]


async def test_the_sweeper_credits_a_deposit_once_and_its_key_replays_it(
    client, make_user, container, monkeypatch
):
    calls = flaky_card_provider(monkeypatch)
    user = await make_user()
    await unanswered(client, user, "dep-2")
    assert await sweep(container, seconds=10) == 0  # not due yet
    assert await sweep(container, minutes=5) == 1
    assert await sweep(container, minutes=6) == 0
    assert calls[0] == calls[1]
    assert (await balance(client, user), await deposit_credits(container)) == ("40.00", 1)
    headers = {**user.headers, "Idempotency-Key": "dep-2"}
    replay = ok(await client.post(f"{WALLET}/deposit", json=deposit(), headers=headers), 200)
    assert replay["balance"] == "40.00"
    assert len(calls) == 2


async def test_a_deposit_the_provider_declines_when_asked_again_is_dropped(
    client, make_user, container, monkeypatch
):
    flaky_card_provider(monkeypatch)
    user = await make_user()
    await unanswered(client, user, "dep-3", token="tok_0002")
    assert await sweep(container, minutes=5) == 1
    assert [a.status for a in await deposit_attempts(container)] == ["failed"]
    headers = {**user.headers, "Idempotency-Key": "dep-3"}
    error = assert_error(
        await client.post(f"{WALLET}/deposit", json=deposit(token="tok_0002"), headers=headers),
        402,
        "PAYMENT_FAILED",
    )
    assert error["details"][0]["decline_code"] == "card_declined"
    assert await balance(client, user) == "0.00"


async def test_the_providers_webhook_settles_a_pending_deposit_named_by_its_id(
    client, make_user, container, monkeypatch
):
    flaky_card_provider(monkeypatch, failures=10**6)
    user = await make_user()
    await unanswered(client, user, "dep-4")
    [pending] = await deposit_attempts(container)
    news = {"provider_ref": "ch_dep", "payment_id": f"deposit:{pending.id}"}
    for event_id in ("evt_1", "evt_2"):  # however often it comes: one credit
        await card_webhook(container, monkeypatch, event_id, outcome="succeeded", **news)
    assert (await balance(client, user), await deposit_credits(container)) == ("40.00", 1)
    headers = {**user.headers, "Idempotency-Key": "dep-4"}
    replay = ok(await client.post(f"{WALLET}/deposit", json=deposit(), headers=headers), 200)
    assert (replay["balance"], replay["provider_reference"]) == ("40.00", "ch_dep")


async def test_a_deposit_never_answered_is_dropped_and_a_late_charge_refunded(
    client, make_user, container, monkeypatch
):
    flaky_card_provider(monkeypatch, failures=10**6)
    user = await make_user()
    await unanswered(client, user, "dep-5")
    assert await sweep(container, hours=23) == 0  # within the deadline: asked again
    assert await sweep(container, hours=25) == 1
    [dropped] = await deposit_attempts(container)
    assert dropped.status == "failed"
    headers = {**user.headers, "Idempotency-Key": "dep-5"}
    error = assert_error(
        await client.post(f"{WALLET}/deposit", json=deposit(), headers=headers),
        402,
        "PAYMENT_FAILED",
    )
    assert error["details"][0]["decline_code"] == "provider_unreachable"

    original = TestProvider.refund
    refunds_made: list[tuple[str, int]] = []

    async def recorded(self: Any, ref: str, amount: int, currency: str, key: str) -> Any:
        refunds_made.append((ref, amount))
        return await original(self, ref, amount, currency, key)

    monkeypatch.setattr(TestProvider, "refund", recorded)
    news = {"provider_ref": "ch_late", "payment_id": f"deposit:{dropped.id}"}
    for event_id in ("evt_a", "evt_b"):
        await card_webhook(container, monkeypatch, event_id, outcome="succeeded", **news)
    assert refunds_made == [("ch_late", 4000)]
    assert [a.status for a in await deposit_attempts(container)] == ["refunded"]
    assert (await balance(client, user), await deposit_credits(container)) == ("0.00", 0)


async def test_the_retry_the_sweeper_and_the_webhook_at_once_credit_a_deposit_once(
    client, make_user, container, monkeypatch
):
    flaky_card_provider(monkeypatch)
    user = await make_user()
    await unanswered(client, user, "dep-6")
    [pending] = await deposit_attempts(container)
    headers = {**user.headers, "Idempotency-Key": "dep-6"}
    news = {"provider_ref": "ch_test_x", "payment_id": f"deposit:{pending.id}"}
    retry, swept, _ = await asyncio.gather(
        client.post(f"{WALLET}/deposit", json=deposit(), headers=headers),
        sweep(container, minutes=5),
        card_webhook(container, monkeypatch, "evt_race", outcome="succeeded", **news),
    )
    assert retry.status_code == 200, retry.text
    assert swept in (0, 1)
    assert (await balance(client, user), await deposit_credits(container)) == ("40.00", 1)
    replay = ok(await client.post(f"{WALLET}/deposit", json=deposit(), headers=headers), 200)
    assert replay["balance"] == "40.00"
