"""Events: the transactional outbox, the relay, the bus, and idempotent handlers.

A service publishes an event by writing an outbox row in the same transaction as
its state change. The relay claims due rows (a short lease, ``SKIP LOCKED`` on
PostgreSQL), hands each to the bus, and records the outcome. The in-process bus
runs every subscribed handler in its own transaction, after recording
``(handler, event_id)`` in the consumer's inbox, so a redelivered event is a no-op.
A failing handler is retried with exponential backoff and, after the last attempt,
dead-lettered in the consumer's schema. Delivery is at-least-once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    Uuid,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.db import Database, JSONType, UTCDateTime, insert_for, utcnow
from ultramarket.core.logging import request_id_var

if TYPE_CHECKING:
    from ultramarket.core.config import EventSettings

log = logging.getLogger("ultramarket.events")

CLAIM_LEASE = timedelta(seconds=60)


class Event(BaseModel):
    """Base of event payloads. Subclasses set ``type`` ("user.registered.v1")."""

    model_config = ConfigDict(frozen=True)
    type: ClassVar[str]


class EventEnvelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: uuid.UUID
    type: str
    source: str
    occurred_at: datetime
    request_id: str | None = None
    data: dict[str, Any]


@dataclass(frozen=True)
class EventTables:
    service: str
    outbox: Table
    inbox: Table
    dead_letter: Table


def event_tables(metadata: MetaData, service: str) -> EventTables:
    """Define the outbox, inbox and dead-letter tables of one service."""

    outbox = Table(
        f"{service}_outbox",
        metadata,
        Column("id", Uuid, primary_key=True),
        Column("event_type", String(120), nullable=False),
        Column("payload", JSONType, nullable=False),
        Column("request_id", String(64)),
        Column("occurred_at", UTCDateTime, nullable=False),
        Column("available_at", UTCDateTime, nullable=False),
        Column("published_at", UTCDateTime),
        Column("attempts", Integer, nullable=False, default=0),
        Column("last_error", Text),
        Index(None, "published_at", "available_at"),
    )
    inbox = Table(
        f"{service}_inbox",
        metadata,
        Column("handler", String(200), nullable=False),
        Column("event_id", Uuid, nullable=False),
        Column("processed_at", UTCDateTime, nullable=False),
        PrimaryKeyConstraint("handler", "event_id"),
    )
    dead_letter = Table(
        f"{service}_dead_letter",
        metadata,
        Column("id", Uuid, primary_key=True),
        Column("handler", String(200), nullable=False),
        Column("event_id", Uuid, nullable=False),
        Column("event_type", String(120), nullable=False),
        Column("payload", JSONType, nullable=False),
        Column("error", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Index(None, "event_id"),
    )
    return EventTables(service, outbox, inbox, dead_letter)


class EventPublisher:
    """Writes events to a service's outbox inside the caller's transaction."""

    def __init__(self, tables: EventTables) -> None:
        self.tables = tables

    async def publish(self, session: AsyncSession, event: Event) -> uuid.UUID:
        event_id = uuid.uuid4()
        now = utcnow()
        await session.execute(
            insert(self.tables.outbox).values(
                id=event_id,
                event_type=event.type,
                payload=event.model_dump(mode="json"),
                request_id=request_id_var.get(),
                occurred_at=now,
                available_at=now,
                attempts=0,
            )
        )
        session.info["outbox_written"] = True
        return event_id


# -- handlers -------------------------------------------------------------------


@dataclass
class HandlerContext:
    envelope: EventEnvelope
    session: AsyncSession
    services: Any  # the application container; typed loosely to keep core independent


Handler = Callable[[HandlerContext], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    service: str  # the consuming service: its database and inbox
    event_type: str
    handler: Handler
    name: str


def subscription(service: str, event: type[Event], handler: Handler) -> Subscription:
    name = f"{service}:{handler.__module__}.{handler.__qualname__}"
    return Subscription(service, event.type, handler, name)


class DeliveryFailed(Exception):
    def __init__(self, failures: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in failures.items()))
        self.failures = failures


class Dispatcher:
    """Runs the subscribed handlers for an event, each idempotently, in its own unit of work."""

    def __init__(
        self,
        subscriptions: Iterable[Subscription],
        databases: Callable[[str], Database],
        tables: Callable[[str], EventTables],
        services: Any = None,
    ) -> None:
        self._by_type: dict[str, list[Subscription]] = defaultdict(list)
        for sub in subscriptions:
            self._by_type[sub.event_type].append(sub)
        self._databases = databases
        self._tables = tables
        self.services = services

    def subscribers(self, event_type: str) -> list[Subscription]:
        return self._by_type.get(event_type, [])

    async def dispatch(
        self, envelope: EventEnvelope, *, final_attempt: bool, attempt: int = 1
    ) -> None:
        failures: dict[str, str] = {}
        for sub in self.subscribers(envelope.type):
            try:
                await self.deliver(sub, envelope)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "event handler failed",
                    extra={"handler": sub.name, "event_id": str(envelope.id), "error": error},
                )
                if final_attempt:
                    await self._dead_letter(sub, envelope, error, attempt)
                else:
                    failures[sub.name] = error
        if failures:
            raise DeliveryFailed(failures)

    async def deliver(self, sub: Subscription, envelope: EventEnvelope) -> bool:
        """Run one handler once per event id. Returns False when it had already run."""

        tables = self._tables(sub.service)
        token = request_id_var.set(envelope.request_id)
        try:
            async with self._databases(sub.service).session() as session:
                # Claiming the inbox row first is the check: one statement, and a
                # concurrent delivery of the same event waits on it, then finds it taken.
                claimed = await session.scalar(
                    insert_for(session, tables.inbox)
                    .values(handler=sub.name, event_id=envelope.id, processed_at=utcnow())
                    .on_conflict_do_nothing(index_elements=["handler", "event_id"])
                    .returning(tables.inbox.c.event_id)
                )
                if claimed is None:
                    return False
                await sub.handler(HandlerContext(envelope, session, self.services))
            return True
        except IntegrityError:
            # A concurrent delivery of the same event won the inbox row.
            return False
        finally:
            request_id_var.reset(token)

    async def _dead_letter(
        self, sub: Subscription, envelope: EventEnvelope, error: str, attempts: int
    ) -> None:
        tables = self._tables(sub.service)
        async with self._databases(sub.service).session() as session:
            await session.execute(
                insert(tables.dead_letter).values(
                    id=uuid.uuid4(),
                    handler=sub.name,
                    event_id=envelope.id,
                    event_type=envelope.type,
                    payload=envelope.model_dump(mode="json"),
                    error=error[:4000],
                    attempts=attempts,
                    created_at=utcnow(),
                )
            )
        log.error(
            "event dead-lettered",
            extra={"handler": sub.name, "event_id": str(envelope.id), "error": error},
        )


class EventBus(Protocol):
    """Where the relay hands events. The in-process bus runs handlers directly;
    a broker adapter publishes to a stream that workers consume."""

    async def publish(
        self, envelope: EventEnvelope, *, final_attempt: bool, attempt: int = 1
    ) -> None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class InProcessBus:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def publish(
        self, envelope: EventEnvelope, *, final_attempt: bool, attempt: int = 1
    ) -> None:
        await self.dispatcher.dispatch(envelope, final_attempt=final_attempt, attempt=attempt)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


# -- relay ----------------------------------------------------------------------


@dataclass
class OutboxSource:
    service: str
    database: Database
    tables: EventTables


@dataclass
class RelayStats:
    published: int = 0
    retried: int = 0
    dead: int = 0
    last_run_at: datetime | None = None
    errors: list[str] = field(default_factory=list)


class OutboxRelay:
    def __init__(self, sources: list[OutboxSource], bus: EventBus, settings: EventSettings) -> None:
        self.sources = sources
        self.bus = bus
        self.settings = settings
        self.stats = RelayStats()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def _backoff(self, attempts: int) -> timedelta:
        delay = self.settings.backoff_base_seconds * (2 ** max(attempts - 1, 0))
        return timedelta(seconds=min(delay, self.settings.backoff_max_seconds))

    async def run_once(self) -> int:
        """Deliver every due event once. Returns how many rows were handled."""

        handled = 0
        for source in self.sources:
            handled += await self._drain(source)
        self.stats.last_run_at = utcnow()
        return handled

    async def _claim(self, source: OutboxSource) -> list[Any]:
        outbox = source.tables.outbox
        now = utcnow()
        async with source.database.session() as session:
            query = (
                select(outbox)
                .where(outbox.c.published_at.is_(None), outbox.c.available_at <= now)
                .order_by(outbox.c.occurred_at)
                .limit(self.settings.batch_size)
            )
            if source.database.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = (await session.execute(query)).all()
            if rows:
                # Lease the rows so another relay leaves them alone while we deliver.
                await session.execute(
                    update(outbox)
                    .where(outbox.c.id.in_([r.id for r in rows]))
                    .values(available_at=now + CLAIM_LEASE)
                )
        return list(rows)

    async def _drain(self, source: OutboxSource) -> int:
        rows = await self._claim(source)
        if not rows:
            return 0
        outbox = source.tables.outbox
        published: list[uuid.UUID] = []
        failed: list[tuple[uuid.UUID, dict[str, Any]]] = []
        for row in rows:
            envelope = EventEnvelope(
                id=row.id,
                type=row.event_type,
                source=source.service,
                occurred_at=row.occurred_at,
                request_id=row.request_id,
                data=row.payload,
            )
            attempts = row.attempts + 1
            final = attempts >= self.settings.max_attempts
            try:
                await self.bus.publish(envelope, final_attempt=final, attempt=attempts)
                published.append(row.id)
                self.stats.published += 1
            except Exception as exc:
                self.stats.retried += 1
                failed.append(
                    (
                        row.id,
                        {
                            "attempts": attempts,
                            "last_error": str(exc)[:4000],
                            "available_at": utcnow() + self._backoff(attempts),
                        },
                    )
                )
        # The outcome of the whole batch in one transaction. A crash before it only means
        # the batch is delivered again once its lease ends; handlers are idempotent.
        async with source.database.session() as session:
            if published:
                await session.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(published))
                    .values(published_at=utcnow(), attempts=outbox.c.attempts + 1)
                )
            for row_id, values in failed:
                await session.execute(update(outbox).where(outbox.c.id == row_id).values(**values))
        return len(rows)

    async def lag(self) -> dict[str, int]:
        """Unpublished events per service (for /metrics and the admin system page)."""

        result: dict[str, int] = {}
        for source in self.sources:
            outbox = source.tables.outbox
            async with source.database.read_session() as session:
                count = await session.scalar(
                    select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
                )
            result[source.service] = int(count or 0)
        return result

    async def run_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                handled = await self.run_once()
            except Exception:
                log.exception("outbox relay iteration failed")
                handled = 0
            if handled:
                continue
            self._wake.clear()
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(
                waiters,
                timeout=self.settings.relay_interval_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for waiter in waiters:
                waiter.cancel()
