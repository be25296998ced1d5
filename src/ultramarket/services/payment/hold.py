"""A request's hold on a row it is asking the card provider about.

A payment, or a wallet deposit's attempt, is committed ``processing`` before its
provider is asked, so that a charge the provider makes is never one we hold no record
of. The request asking holds the row meanwhile (``in_flight_until``, for
``charge_lease_seconds``): a retry with the same Idempotency-Key waits for that
request's answer, and the sweeper leaves the row alone. A request that ends without an
answer lets the row go at once; a dead one's hold runs out. Then a retry or the sweeper
takes the row over (one conditional UPDATE, so only one asks) and asks the provider
again with the same provider idempotency key, which answers with the charge it made, if
any.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.config import PaymentSettings
from ultramarket.core.db import utcnow
from ultramarket.core.errors import DomainError
from ultramarket.services.payment.idempotency import Idempotency, KeyUnfinished

log = logging.getLogger(__name__)


class Hold:
    """This request's hold on rows of ``table`` (with ``id``, ``status`` and
    ``in_flight_until`` columns) in its unit of work ``session``, for
    ``charge_lease_seconds``; a retry waits at most ``charge_wait_seconds`` for the
    answer of the request holding one."""

    def __init__(self, session: AsyncSession, table: Table, settings: PaymentSettings) -> None:
        self.session = session
        self.table = table
        self.lease = timedelta(seconds=settings.charge_lease_seconds)
        self.wait_seconds = settings.charge_wait_seconds
        self.holding: uuid.UUID | None = None  # the row this request holds

    def until(self, now: datetime) -> datetime:
        """Until when a row taken at ``now`` is held."""
        return now + self.lease

    async def hold_nothing(self) -> None:
        """Commit what the unit of work holds, so that no row lock (on SQLite, no write
        lock) is held while a provider answers."""
        if self.session.in_transaction():
            await self.session.commit()

    def on(self, row: Any, now: datetime | None = None) -> bool:
        """A request is asking the provider about ``row`` (it holds it)."""
        held: datetime | None = row.in_flight_until
        return held is not None and held > (now or utcnow())

    async def take(self, row: Any, now: datetime | None = None) -> bool:
        """Hold ``row`` for this request, to ask its provider again: one conditional
        UPDATE (still ``processing`` and held by nobody), committed at once so that other
        retries wait for this one. False when another took it or it was settled (``row``
        is reloaded either way)."""
        now = now or utcnow()
        columns = self.table.c
        values: dict[str, Any] = {"in_flight_until": self.until(now)}
        if "updated_at" in columns:
            values["updated_at"] = now
        taken = await self.session.scalar(
            update(self.table)
            .where(
                columns.id == row.id,
                columns.status == "processing",
                or_(columns.in_flight_until.is_(None), columns.in_flight_until <= now),
            )
            .values(**values)
            .returning(columns.id)
        )
        await self.session.commit()
        await self.session.refresh(row)
        if taken is None:
            return False
        self.holding = row.id
        return True

    async def let_go(self) -> None:
        """The request holding a row ends with neither an answer nor an unknown outcome
        (an unexpected error; its unit of work is rolled back): let the row go, so that
        a retry asks the provider again now instead of when the lease runs out."""
        if self.holding is None:
            return
        try:
            await self.session.rollback()
            await self.session.execute(
                update(self.table)
                .where(self.table.c.id == self.holding, self.table.c.status == "processing")
                .values(in_flight_until=None)
            )
            await self.session.commit()
        except Exception:  # the lease runs out by itself; the first error is the one told
            log.exception(
                "could not let a row go",
                extra={"table": self.table.name, "row_id": str(self.holding)},
            )

    async def answer_of_first(
        self,
        idem: Idempotency,
        row: Any,
        pending: Callable[[], DomainError],
    ) -> dict[str, Any] | None:
        """Wait for the answer of the request that holds ``row`` (the key's first): the
        body of that answer (a recorded error raised as it was), or None once this
        request holds the row instead (the first is over without an answer) or the row
        was settled without answering the key. Past ``charge_wait_seconds``: ``pending()`` is
        raised (a 503, to retry later; it must not read ``row``, which a rollback
        expires)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_seconds
        pause = 0.01
        while True:
            if not self.on(row) and await self.take(row):
                return None
            # This request wrote nothing (its claim found the key taken): end its
            # transaction, which on SQLite also holds the write lock and a snapshot.
            await self.session.rollback()
            if loop.time() >= deadline:
                raise pending()
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.25)
            try:
                _, body = await idem.reread()  # a recorded error is raised
            except KeyUnfinished:
                await self.session.refresh(row)
                if row.status != "processing":
                    return None  # settled (a webhook), its key not answered yet: as it is
                continue
            idem.answered()
            return body
