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
