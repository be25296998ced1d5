"""The wallet: a double-entry ledger.

Every move is one ``transaction_id`` with two ``ledger_entry`` rows that sum to
zero: the account money leaves (negative) and the one it reaches (positive). A user
account's cached ``balance`` changes in the same transaction by one UPDATE; taking
money out is conditional (``WHERE balance >= :x``), so concurrent moves can never
overdraw it: the row count decides, never a balance read first.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.db import insert_for, utcnow
from ultramarket.core.errors import Conflict, ValidationFailed
from ultramarket.services.payment.models import LedgerEntry, WalletAccount

ACCOUNT = WalletAccount.__table__
ENTRY = LedgerEntry.__table__

# Platform accounts (the other side of every user move).
EXTERNAL_CARD = "external:card"  # money that came in from cards (deposits)
EXTERNAL_BANK = "external:bank"  # money paid out (withdrawals)
SALES = "platform:sales"  # wallet payments for orders
HELD = "platform:held"  # authorised, not yet captured wallet payments


class InsufficientFunds(Conflict):
    code = "INSUFFICIENT_FUNDS"
    message = "The wallet balance is too low"


@dataclass(frozen=True)
class Account:
    id: uuid.UUID
    kind: str  # user | platform


@dataclass(frozen=True)
class Move:
    transaction_id: uuid.UUID
    balance_after: int | None  # of the user account involved, if any


class Ledger:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _find(self, owner: str, currency: str) -> Account | None:
        row = (
            await self.session.execute(
                select(ACCOUNT.c.id, ACCOUNT.c.kind).where(
                    ACCOUNT.c.owner == owner, ACCOUNT.c.currency == currency
                )
            )
        ).first()
        return None if row is None else Account(row.id, row.kind)

    async def account(self, owner: str, currency: str) -> Account:
        """The account of a user (``owner`` = user id) or a platform account
        (``owner`` has a ``:``), created on first use without racing."""
        found = await self._find(owner, currency)
        if found is not None:
            return found
        kind = "platform" if ":" in owner else "user"
        values = {
            "id": uuid.uuid4(),
            "owner": owner,
            "kind": kind,
            "user_id": uuid.UUID(owner) if kind == "user" else None,
            "currency": currency,
            "balance": 0,
            "created_at": utcnow(),
            "updated_at": utcnow(),
        }
        await self.session.execute(
            insert_for(self.session, ACCOUNT).values(**values).on_conflict_do_nothing()
        )
        found = await self._find(owner, currency)
        assert found is not None
        return found

    async def balance(self, owner: str, currency: str) -> int:
        value = await self.session.scalar(
            select(ACCOUNT.c.balance).where(
                ACCOUNT.c.owner == owner, ACCOUNT.c.currency == currency
            )
        )
        return int(value or 0)

    async def _apply(self, account: Account, delta: int) -> int | None:
        """Change a user account's cached balance; None for platform accounts."""
        if account.kind != "user":
            return None
        statement = update(ACCOUNT).where(ACCOUNT.c.id == account.id)
        if delta < 0:
            statement = statement.where(ACCOUNT.c.balance >= -delta)
        result = await self.session.execute(
            statement.values(balance=ACCOUNT.c.balance + delta, updated_at=utcnow()).returning(
                ACCOUNT.c.balance
            )
        )
        balance = result.scalar_one_or_none()
        if balance is None:
            raise InsufficientFunds()
        return int(balance)

    async def transfer(
        self,
        source: str,
        target: str,
        amount: int,
        currency: str,
        *,
        kind: str,
        reference: str | None = None,
    ) -> Move:
        """Move ``amount`` minor units from ``source`` to ``target`` (owners)."""
        if amount <= 0:
            raise ValidationFailed("amount must be positive")
        debit = await self.account(source, currency)
        credit = await self.account(target, currency)
        # Debit first: a short balance fails before anything is written.
        debit_after = await self._apply(debit, -amount)
        credit_after = await self._apply(credit, amount)
        transaction_id = uuid.uuid4()
        now = utcnow()
        await self.session.execute(
            insert(ENTRY),
            [
                {
                    "id": uuid.uuid4(),
                    "transaction_id": transaction_id,
                    "account_id": debit.id,
                    "amount": -amount,
                    "currency": currency,
                    "kind": kind,
                    "reference": reference,
                    "balance_after": debit_after,
                    "created_at": now,
                },
                {
                    "id": uuid.uuid4(),
                    "transaction_id": transaction_id,
                    "account_id": credit.id,
                    "amount": amount,
                    "currency": currency,
                    "kind": kind,
                    "reference": reference,
                    "balance_after": credit_after,
                    "created_at": now,
                },
            ],
        )
        after = debit_after if debit_after is not None else credit_after
        return Move(transaction_id, after)
