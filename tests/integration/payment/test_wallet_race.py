"""THE RACES on the wallet: 100 concurrent withdrawals and wallet payments against a
balance that covers exactly 10. Exactly 10 succeed, the balance never goes below
zero, the ledger sums to zero and agrees with the cached balance."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from tests.support import error_reason

from ultramarket.services.payment.models import LedgerEntry, WalletAccount

API = "/api/v1/payments"
WALLET = "/api/v1/wallet"


async def ledger_audit(container, user_id: str) -> dict[str, int]:
    async with container.db("payment").read_session() as session:
        total = await session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0)))
        account = (
            await session.execute(
                select(WalletAccount.id, WalletAccount.balance).where(
                    WalletAccount.owner == user_id
                )
            )
        ).one()
        derived = await session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                LedgerEntry.account_id == account.id
            )
        )
        unbalanced = await session.scalar(
            select(func.count()).select_from(
                select(LedgerEntry.transaction_id)
                .group_by(LedgerEntry.transaction_id)
                .having(func.sum(LedgerEntry.amount) != 0)
                .subquery()
            )
        )
        lowest = await session.scalar(
            select(func.min(LedgerEntry.balance_after)).where(LedgerEntry.account_id == account.id)
        )
    return {
        "sum": int(total),
        "cached": int(account.balance),
        "derived": int(derived),
        "unbalanced": int(unbalanced),
        "lowest": int(lowest),
    }


async def test_wallet_100_concurrent_moves_exactly_10_succeed(client, make_user, container):
    user = await make_user()
    deposit = await client.post(
        f"{WALLET}/deposit",
        json={"amount": "100.00", "currency": "USD", "token": "tok_4242"},
        headers=user.headers,
    )
    assert deposit.status_code == 201, deposit.text

    async def move(i: int):
        if i % 2:
            return await client.post(
                f"{WALLET}/withdraw",
                json={"amount": "10.00", "currency": "USD"},
                headers=user.headers,
            )
        return await client.post(
            API,
            json={"order_id": f"o-{i}", "amount": "10.00", "currency": "USD", "method": "wallet"},
            headers=user.headers,
        )

    responses = await asyncio.gather(*(move(i) for i in range(100)))
    won = [r for r in responses if r.status_code == 201]
    assert len(won) == 10, [r.text for r in responses if r.status_code >= 500]
    for r in responses:
        if r.status_code == 201:
            continue
        code = error_reason(r)
        assert (r.status_code, code) in {(409, "INSUFFICIENT_FUNDS"), (402, "PAYMENT_FAILED")}, (
            r.text
        )
    wallet = await client.get(WALLET, headers=user.headers)
    assert wallet.json()["data"] == {"balance": "0.00", "currency": "USD"}
    audit = await ledger_audit(container, user.id)
    assert audit == {"sum": 0, "cached": 0, "derived": 0, "unbalanced": 0, "lowest": 0}
