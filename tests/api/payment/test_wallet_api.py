"""The wallet over HTTP: deposit, withdraw, pay, refund to the wallet, history."""

from __future__ import annotations

from payment_helpers import API, WALLET, assert_error, ok


async def test_wallet_deposit_withdraw_pay_refund(client, make_user):
    user = await make_user()
    manager = await make_user("MANAGER")
    assert ok(await client.get(WALLET, headers=user.headers)) == {
        "balance": "0.00",
        "currency": "USD",
    }
    dep = ok(
        await client.post(
            f"{WALLET}/deposit",
            json={"amount": "50.00", "currency": "USD", "token": "tok_4242"},
            headers=user.headers,
        ),
        201,
    )
    assert dep["balance"] == "50.00"
    out = ok(
        await client.post(
            f"{WALLET}/withdraw", json={"amount": 20, "currency": "USD"}, headers=user.headers
        ),
        201,
    )
    assert out["balance"] == "30.00"
    assert_error(
        await client.post(
            f"{WALLET}/withdraw", json={"amount": "30.01", "currency": "USD"}, headers=user.headers
        ),
        409,
        "INSUFFICIENT_FUNDS",
    )
    paid = ok(
        await client.post(
            API,
            json={"order_id": "o-w", "amount": "25.00", "currency": "USD", "method": "wallet"},
            headers=user.headers,
        ),
        201,
    )
    assert paid["status"] == "succeeded"
    assert paid["provider"] == "wallet"
    assert ok(await client.get(WALLET, headers=user.headers))["balance"] == "5.00"
    error = assert_error(
        await client.post(
            API,
            json={"order_id": "o-x", "amount": "6.00", "currency": "USD", "method": "wallet"},
            headers=user.headers,
        ),
        402,
        "PAYMENT_FAILED",
    )
    assert error["details"][0]["decline_code"] == "insufficient_funds"
    ok(
        await client.post(
            f"{API}/{paid['id']}/refund",
            json={"amount": "10.00", "reason": "x"},
            headers=manager.headers,
        ),
        201,
    )
    assert ok(await client.get(WALLET, headers=user.headers))["balance"] == "15.00"
    history = await client.get(f"{WALLET}/transactions", headers=user.headers)
    body = history.json()
    assert body["meta"]["total"] == 4
    assert [t["kind"] for t in body["data"]] == ["refund", "payment", "withdrawal", "deposit"]
    assert body["data"][0]["amount"] == "10.00"
    assert body["data"][1]["amount"] == "-25.00"


async def test_wallet_deposit_declined_and_idempotent(client, make_user):
    user = await make_user()
    assert_error(
        await client.post(
            f"{WALLET}/deposit",
            json={"amount": "10", "currency": "USD", "token": "tok_0002"},
            headers=user.headers,
        ),
        402,
        "PAYMENT_FAILED",
    )
    headers = {**user.headers, "Idempotency-Key": "dep-1"}
    body = {"amount": "10", "currency": "USD", "token": "tok_4242"}
    first = ok(await client.post(f"{WALLET}/deposit", json=body, headers=headers), 201)
    again = ok(await client.post(f"{WALLET}/deposit", json=body, headers=headers), 200)
    assert again == first
    assert_error(
        await client.post(f"{WALLET}/deposit", json={**body, "amount": "11"}, headers=headers),
        409,
        "CONFLICT",
    )
    assert ok(await client.get(WALLET, headers=user.headers))["balance"] == "10.00"


async def test_wallet_deposits_pass_the_fraud_rules(client, container, make_user):
    """A new account topping up more than the new-account threshold from a card that
    several other users have used: refused (402 PAYMENT_BLOCKED), nothing credited,
    and the refusal replays for the same key."""
    payments = container.settings.payments
    payments.fraud_fingerprint_max_users = 1
    payments.fraud_new_account_amount = 100
    card = "tok_4242_shared"
    first, second = await make_user(), await make_user()
    ok(
        await client.post(
            f"{WALLET}/deposit",
            json={"amount": "20", "currency": "USD", "token": card},
            headers=first.headers,
        ),
        201,
    )
    # The second user pays with the same card (fingerprint +50) a large first deposit (+40).
    paid = {"order_id": "o-1", "amount": "5.00", "currency": "USD", "method": "card", "token": card}
    ok(await client.post(API, json=paid, headers=first.headers), 201)
    headers = {**second.headers, "Idempotency-Key": "big-1"}
    body = {"amount": "500", "currency": "USD", "token": card}
    for _ in range(2):
        blocked = await client.post(f"{WALLET}/deposit", json=body, headers=headers)
        error = assert_error(blocked, 402, "PAYMENT_BLOCKED")
        assert set(error["details"][0]["rules"]) == {"card_fingerprint", "new_account_amount"}
    assert ok(await client.get(WALLET, headers=second.headers))["balance"] == "0.00"
    # A small top-up from the user's own new card is fine.
    own = {"amount": "20", "currency": "USD", "token": "tok_4242_own"}
    ok(await client.post(f"{WALLET}/deposit", json=own, headers=second.headers), 201)


async def test_declined_deposits_count_for_the_fraud_rules_like_declined_payments(
    client, make_user
):
    """Card testing through the wallet: three declined deposits (the rules' limit of
    recent declines) and the next deposit is refused, whatever card it uses; the same
    declines hold the user's next card payment for review."""
    user = await make_user()
    for n in range(3):
        body = {"amount": "10.00", "currency": "USD", "token": f"tok_{n}_0002"}
        declined = await client.post(f"{WALLET}/deposit", json=body, headers=user.headers)
        assert_error(declined, 402, "PAYMENT_FAILED")
    body = {"amount": "10.00", "currency": "USD", "token": "tok_other_4242"}
    blocked = await client.post(f"{WALLET}/deposit", json=body, headers=user.headers)
    error = assert_error(blocked, 402, "PAYMENT_BLOCKED")
    assert error["details"][0]["rules"] == ["recent_declines"]
    assert ok(await client.get(WALLET, headers=user.headers))["balance"] == "0.00"

    paid = {"order_id": "o-1", "amount": "10.00", "currency": "USD", "method": "card"}
    held = ok(
        await client.post(API, json={**paid, "token": "tok_x_4242"}, headers=user.headers), 201
    )
    assert (held["status"], held["review_required"]) == ("requires_capture", True)


async def test_wallet_amounts_past_32_bits(client, make_user):
    """UZS amounts past 2,147,483,647 minor units: the wallet's balance, its ledger's
    amounts and balances after, the deposit and the payment are 64-bit."""
    user = await make_user()
    manager = await make_user("MANAGER")
    uzs = {"currency": "UZS"}
    dep = ok(
        await client.post(
            f"{WALLET}/deposit",
            json={"amount": "30000000.00", "currency": "UZS", "token": "tok_4242"},
            headers=user.headers,
        ),
        201,
    )
    assert dep["balance"] == "30000000.00"
    paid = ok(
        await client.post(
            API,
            json={
                "order_id": "o-big",
                "amount": "25000000.00",
                "currency": "UZS",
                "method": "wallet",
            },
            headers=user.headers,
        ),
        201,
    )
    assert (paid["status"], paid["amount"]) == ("succeeded", "25000000.00")
    assert ok(await client.get(WALLET, params=uzs, headers=user.headers))["balance"] == (
        "5000000.00"
    )
    back = ok(
        await client.post(
            f"{API}/{paid['id']}/refund",
            json={"amount": "21474836.48", "reason": "x"},
            headers=manager.headers,
        ),
        201,
    )
    assert back["payment"]["refunded_amount"] == "21474836.48"
    assert ok(await client.get(WALLET, params=uzs, headers=user.headers))["balance"] == (
        "26474836.48"
    )
    history = ok(await client.get(f"{WALLET}/transactions", params=uzs, headers=user.headers))
    assert [(t["kind"], t["amount"], t["balance_after"]) for t in history] == [
        ("refund", "21474836.48", "26474836.48"),
        ("payment", "-25000000.00", "5000000.00"),
        ("deposit", "30000000.00", "30000000.00"),
    ]
