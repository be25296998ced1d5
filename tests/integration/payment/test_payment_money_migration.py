"""The migration that makes the payment service's money 64-bit, on a database that holds
payments, refunds, deposits and a wallet: their rows are kept (SQLite rebuilds the
tables), the columns are BIGINT, and the way back refuses on PostgreSQL while an amount
does not fit 32 bits."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import BigInteger, Connection, Integer, insert, inspect, select, update
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from ultramarket import registry
from ultramarket.core.migrations import downgrade, upgrade
from ultramarket.services.payment.models import (
    DepositAttempt,
    LedgerEntry,
    Payment,
    PaymentRefund,
    WalletAccount,
)

PAYMENT = next(spec for spec in registry.load_all() if spec.name == "payment")
BEFORE = "8a8864f8ce3e"  # the revision before the money columns are BIGINT
MONEY = {
    "payment": ("amount", "refunded_amount"),
    "payment_refund": ("amount",),
    "deposit_attempt": ("amount",),
    "wallet_account": ("balance",),
    "ledger_entry": ("amount", "balance_after"),
}
BIG = 5_362_500_000


async def run_sync(url: str, fn: Any) -> Any:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "sqlite":  # one namespace: the models' schema goes
                conn = await conn.execution_options(schema_translate_map={"payment": None})
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def add_rows(conn: Connection) -> dict[str, uuid.UUID]:
    """A payment refunded in part, a deposit and a wallet with its two entries."""
    user_id, payment_id, account_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    conn.execute(
        insert(Payment.__table__).values(
            id=payment_id,
            user_id=user_id,
            order_id="o-1",
            method="card",
            provider="test",
            status="partially_refunded",
            amount=2_000_000_000,
            currency="UZS",
            refunded_amount=500_000_000,
            capture=True,
        )
    )
    conn.execute(
        insert(PaymentRefund.__table__).values(
            payment_id=payment_id, amount=500_000_000, currency="UZS", reason="x"
        )
    )
    conn.execute(
        insert(DepositAttempt.__table__).values(
            user_id=user_id, amount=1_000_000_000, currency="UZS", status="succeeded"
        )
    )
    conn.execute(
        insert(WalletAccount.__table__).values(
            id=account_id,
            owner=str(user_id),
            kind="user",
            user_id=user_id,
            currency="UZS",
            balance=1_000_000_000,
        )
    )
    conn.execute(
        insert(LedgerEntry.__table__).values(
            transaction_id=uuid.uuid4(),
            account_id=account_id,
            amount=1_000_000_000,
            currency="UZS",
            kind="deposit",
            balance_after=1_000_000_000,
        )
    )
    return {"payment": payment_id, "account": account_id}


def money_types(conn: Connection) -> dict[tuple[str, str], type]:
    schema = None if conn.dialect.name == "sqlite" else "payment"
    found = {}
    for table, columns in MONEY.items():
        types = {c["name"]: c["type"] for c in inspect(conn).get_columns(table, schema=schema)}
        for column in columns:
            found[(table, column)] = type(types[column])
    return found


def amounts(conn: Connection) -> list[Any]:
    return [
        conn.execute(select(Payment.amount, Payment.refunded_amount)).one(),
        conn.execute(select(PaymentRefund.amount)).one(),
        conn.execute(select(DepositAttempt.amount)).one(),
        conn.execute(select(WalletAccount.balance)).one(),
        conn.execute(select(LedgerEntry.amount, LedgerEntry.balance_after)).one(),
    ]


async def test_money_becomes_bigint_keeping_the_rows_and_goes_back_only_when_it_fits(
    empty_database: str,
) -> None:
    upgrade(PAYMENT, empty_database, BEFORE)
    ids = await run_sync(empty_database, add_rows)
    before = await run_sync(empty_database, amounts)

    upgrade(PAYMENT, empty_database)

    assert await run_sync(empty_database, amounts) == before
    types = await run_sync(empty_database, money_types)
    assert all(issubclass(t, BigInteger) for t in types.values()), types

    def grow(conn: Connection) -> None:
        payment = Payment.__table__
        conn.execute(update(payment).where(payment.c.id == ids["payment"]).values(amount=BIG))

    await run_sync(empty_database, grow)
    if empty_database.startswith("postgresql"):
        with pytest.raises(Exception, match="out of range"):
            downgrade(PAYMENT, empty_database, BEFORE)

        def shrink(conn: Connection) -> None:
            payment = Payment.__table__
            conn.execute(
                update(payment).where(payment.c.id == ids["payment"]).values(amount=2_000_000_000)
            )

        await run_sync(empty_database, shrink)
    downgrade(PAYMENT, empty_database, BEFORE)

    types = await run_sync(empty_database, money_types)
    assert all(issubclass(t, Integer) and not issubclass(t, BigInteger) for t in types.values())
    assert (await run_sync(empty_database, amounts))[1:] == before[1:]
