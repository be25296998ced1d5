"""Helpers shared by the payment tests (imported by module name; not a test file)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import func, select
from tests.support import assert_error, ok  # noqa: F401 - re-exported for the tests

from ultramarket.core.db import utcnow
from ultramarket.services.payment.models import IdempotencyRecord
from ultramarket.services.payment.providers.test import TestProvider

API = "/api/v1/payments"
WALLET = "/api/v1/wallet"


def card(order: str = "ord-1", amount: str = "25.00", token: str = "tok_4242", **extra: Any):
    return {
        "order_id": order,
        "amount": amount,
        "currency": "USD",
        "method": "card",
        "token": token,
        **extra,
    }


def gated_provider(monkeypatch: Any) -> tuple[asyncio.Event, asyncio.Event, list[str]]:
    """The test card provider, charging only once ``release`` is set: (asked, release,
    the provider keys it was asked with)."""
    charge = TestProvider.charge
    asked, release = asyncio.Event(), asyncio.Event()
    keys: list[str] = []

    async def slow(self: TestProvider, request: Any) -> Any:
        keys.append(request.idempotency_key)
        asked.set()
        await release.wait()
        return await charge(self, request)

    monkeypatch.setattr(TestProvider, "charge", slow)
    return asked, release, keys


async def write_elsewhere(container: Any) -> None:
    """A write of its own on another connection (it must not wait for a request that is
    asking a provider: on SQLite, no write lock is held meanwhile)."""
    async with container.db("payment").session() as session:
        await session.execute(
            IdempotencyRecord.__table__.insert().values(
                id=uuid.uuid4(),
                scope="test.other",
                owner="someone",
                key=str(uuid.uuid4()),
                request_hash="h",
                created_at=utcnow(),
            )
        )


async def claims_of(container: Any, scope: str) -> int:
    """The committed claims of Idempotency-Keys in ``scope``."""
    async with container.db("payment").read_session() as session:
        found = await session.scalar(
            select(func.count())
            .select_from(IdempotencyRecord)
            .where(IdempotencyRecord.scope == scope)
        )
    return int(found or 0)
