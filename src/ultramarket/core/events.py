"""Events: the transactional outbox, the relay, the bus, and idempotent handlers.

A service publishes an event by writing an outbox row in the same transaction as
its state change. The relay claims due rows (a short lease, ``SKIP LOCKED`` on
PostgreSQL), hands them to the bus as a batch, and records the outcome per event.
The in-process bus runs each subscribed handler over its events of the batch in one
transaction, after recording ``(handler, event_id)`` for each in the consumer's inbox,
so a redelivered event is a no-op; if that transaction fails, it delivers the events
one by one, each in its own. A failing handler is retried with exponential backoff
and, after the last attempt, dead-lettered in the consumer's schema. Delivery is
at-least-once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
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
    Update,
    Uuid,
    bindparam,
    delete,
    func,
    insert,
    select,
    tuple_,
    update,
)
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
    )
    # What the relay claims, oldest first: the events not yet published, only them.
    Index(
        None,
        outbox.c.occurred_at,
        postgresql_where=outbox.c.published_at.is_(None),
        sqlite_where=outbox.c.published_at.is_(None),
    )
    # What pruning deletes, oldest first: the published events only (a new event enters
    # it once, when it is published).
    Index(
        None,
        outbox.c.published_at,
        postgresql_where=outbox.c.published_at.is_not(None),
        sqlite_where=outbox.c.published_at.is_not(None),
    )
    inbox = Table(
        f"{service}_inbox",
        metadata,
        Column("handler", String(200), nullable=False),
        Column("event_id", Uuid, nullable=False),
        Column("processed_at", UTCDateTime, nullable=False),
        PrimaryKeyConstraint("handler", "event_id"),
        Index(None, "processed_at"),  # what pruning deletes, oldest first
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
        row = self.outbox_row(event)
        await session.execute(insert(self.tables.outbox).values(**row))
        self.written(session)
        event_id: uuid.UUID = row["id"]
        return event_id

    def written(self, session: AsyncSession) -> None:
        """``session`` wrote outbox rows: its commit wakes the relay."""
        session.info.setdefault("outbox_written", set()).add(self.tables.service)

    def outbox_row(self, event: Event) -> dict[str, Any]:
        """The outbox row of ``event``, for a write that is not a session's (whoever
        writes it wakes the relay: ``Database.outbox_written``)."""
        now = utcnow()
        return {
            "id": uuid.uuid4(),
            "event_type": event.type,
            "payload": event.model_dump(mode="json"),
            "request_id": request_id_var.get(),
            "occurred_at": now,
            "available_at": now,
            "attempts": 0,
        }


# -- handlers -------------------------------------------------------------------


@dataclass
class HandlerContext:
    envelope: EventEnvelope
    session: AsyncSession
    services: Any  # the application container; typed loosely to keep core independent


Handler = Callable[[HandlerContext], Awaitable[None]]


@dataclass
class BatchContext:
    """The events a batch handler takes at once: those of a batch its inbox claimed,
    in the order they occurred, in one unit of work."""

    envelopes: list[EventEnvelope]
    session: AsyncSession
    services: Any


BatchHandler = Callable[[BatchContext], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    service: str  # the consuming service: its database and inbox
    event_type: str
    handler: Handler
    name: str
    # False for a handler with effects outside its unit of work (a mail sent): in a
    # batch that fails part-way, the events before the failure would run it again.
    batch: bool = True
    # Set for a handler that takes a whole batch at once (``batch_subscriptions``).
    batch_handler: BatchHandler | None = None


def _handler_name(service: str, handler: Callable[..., Any]) -> str:
    return f"{service}:{handler.__module__}.{handler.__qualname__}"


def subscription(
    service: str, event: type[Event], handler: Handler, *, batch: bool = True
) -> Subscription:
    return Subscription(service, event.type, handler, _handler_name(service, handler), batch)


def batch_subscriptions(
    service: str, events: Iterable[type[Event]], handler: BatchHandler
) -> list[Subscription]:
    """``handler`` takes the events of ``events`` types a batch brings (one call for all,
    in the order they occurred; one event at a time when delivered alone): for work that
    folds many events into one write (the last figure of each variant, sums)."""
    name = _handler_name(service, handler)

    async def one(ctx: HandlerContext) -> None:
        await handler(BatchContext([ctx.envelope], ctx.session, ctx.services))

    return [Subscription(service, e.type, one, name, True, handler) for e in events]


class DeliveryFailed(Exception):
    def __init__(self, failures: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in failures.items()))
        self.failures = failures


class BatchFailed(Exception):
    """A handler failed inside a batch: the whole unit of work rolls back (even when the
    error asks to keep its changes), and each event is then delivered on its own."""


class HandlerFailed(Exception):
    """A handler failed on one event and its error asked to keep its changes (a domain
    error's ``persist_changes``): a handler's unit of work is all or nothing - kept, its
    inbox row would mark the event handled and no retry would ever run it."""


@dataclass(frozen=True)
class Delivery:
    """An event handed to the bus, and which attempt this is."""

    envelope: EventEnvelope
    attempt: int = 1
    final_attempt: bool = False


Outcome = Exception | None  # per event: None when delivered, else why it failed


class Dispatcher:
    """Runs the subscribed handlers for events, each idempotently (the inbox).

    A batch of events reaches each handler in one unit of work; if that fails, each
    event is delivered again on its own, so failures are counted per event."""

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
        [outcome] = await self.dispatch_batch([Delivery(envelope, attempt, final_attempt)])
        if outcome is not None:
            raise outcome

    async def dispatch_batch(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        # Grouped by handler name, not subscription: one handler subscribed to several
        # event types (the stock mirror) still sees its events in the order they occurred.
        groups: dict[str, list[tuple[Subscription, Delivery]]] = defaultdict(list)
        for delivery in sorted(deliveries, key=lambda d: d.envelope.occurred_at):
            for sub in self.subscribers(delivery.envelope.type):
                groups[sub.name].append((sub, delivery))
        failures: dict[uuid.UUID, dict[str, str]] = defaultdict(dict)
        for group in groups.values():
            if len(group) > 1 and group[0][0].batch:
                try:
                    await self.deliver_batch(group[0][0], [d.envelope for _, d in group])
                    continue
                except Exception as exc:
                    log.info(
                        "batch delivery failed; delivering one by one",
                        extra={"handler": group[0][0].name, "error": repr(exc.__cause__ or exc)},
                    )
            for sub, delivery in group:
                if error := await self._deliver_one(sub, delivery):
                    failures[delivery.envelope.id][sub.name] = error
        return [
            DeliveryFailed(failures[d.envelope.id]) if d.envelope.id in failures else None
            for d in deliveries
        ]

    async def deliver(self, sub: Subscription, envelope: EventEnvelope) -> bool:
        """Run one handler once per event id. Returns False when it had already run (a
        concurrent delivery of the same event waits on its inbox row, then skips it).
        A failure - the handler's own constraint violations included - keeps nothing
        and is raised, so the event is retried or dead-lettered."""
        return await self.deliver_batch(sub, [envelope]) == 1

    async def deliver_batch(self, sub: Subscription, envelopes: Sequence[EventEnvelope]) -> int:
        """Run one handler for events (in the order given) in one unit of work, each
        event id once. Returns how many it ran; if one fails, none is kept."""

        tables = self._tables(sub.service)
        async with self._databases(sub.service).session() as session:
            # Claiming the inbox rows first is the check: one statement, and a concurrent
            # delivery of the same events waits on them, then finds them taken. Rows go
            # in id order so two overlapping batches lock them in the same order.
            now = utcnow()
            rows = [
                {"handler": sub.name, "event_id": envelope.id, "processed_at": now}
                for envelope in sorted(envelopes, key=lambda e: e.id)
            ]
            # (Rows as parameters, not ``values(rows)``: a statement of one shape for any
            # batch, compiled once, which SQLAlchemy sends as one multi-row INSERT.)
            claimed = set(
                await session.scalars(
                    insert_for(session, tables.inbox)
                    .on_conflict_do_nothing(index_elements=["handler", "event_id"])
                    .returning(tables.inbox.c.event_id),
                    rows,
                )
            )
            if sub.batch_handler is not None:
                taken = [envelope for envelope in envelopes if envelope.id in claimed]
                if taken:
                    await sub.batch_handler(BatchContext(taken, session, self.services))
                return len(claimed)
            for envelope in envelopes:
                if envelope.id not in claimed:
                    continue
                token = request_id_var.set(envelope.request_id)
                try:
                    await sub.handler(HandlerContext(envelope, session, self.services))
                except Exception as exc:
                    if len(envelopes) > 1:
                        raise BatchFailed(f"event {envelope.id}") from exc
                    if getattr(exc, "persist_changes", False):
                        raise HandlerFailed(f"{type(exc).__name__}: {exc}") from exc
                    raise
                finally:
                    request_id_var.reset(token)
        return len(claimed)

    async def _deliver_one(self, sub: Subscription, delivery: Delivery) -> str | None:
        """Deliver one event to one handler; a failure is dead-lettered on the final
        attempt, else returned (the relay retries the event)."""
        envelope = delivery.envelope
        try:
            await self.deliver(sub, envelope)
            return None
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "event handler failed",
                extra={"handler": sub.name, "event_id": str(envelope.id), "error": error},
            )
            if not delivery.final_attempt:
                return error
            await self._dead_letter(sub, envelope, error, delivery.attempt)
            return None

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

    async def publish_batch(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        """One outcome per delivery, in order. A bus without batches of its own
        returns ``await publish_each(self, deliveries)``."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


async def publish_each(bus: EventBus, deliveries: Sequence[Delivery]) -> list[Outcome]:
    """``publish_batch`` as one ``publish`` per event."""
    outcomes: list[Outcome] = []
    for d in deliveries:
        try:
            await bus.publish(d.envelope, final_attempt=d.final_attempt, attempt=d.attempt)
            outcomes.append(None)
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


class InProcessBus:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def publish(
        self, envelope: EventEnvelope, *, final_attempt: bool, attempt: int = 1
    ) -> None:
        await self.dispatcher.dispatch(envelope, final_attempt=final_attempt, attempt=attempt)

    async def publish_batch(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        return await self.dispatcher.dispatch_batch(deliveries)

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


@dataclass(frozen=True)
class _RelayStatements:
    """An outbox's claim and its published mark, built once."""

    claim: Update
    published: Update

    @classmethod
    def of(cls, outbox: Table, dialect: str, batch_size: int) -> _RelayStatements:
        due = (
            select(outbox.c.id)
            .where(outbox.c.published_at.is_(None), outbox.c.available_at <= bindparam("now"))
            .order_by(outbox.c.occurred_at)
            .limit(batch_size)
        )
        if dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)
        return cls(
            claim=(
                update(outbox)
                .where(outbox.c.id.in_(due.scalar_subquery()))
                .values(available_at=bindparam("lease_until"))
                .returning(*outbox.c)
            ),
            published=(
                update(outbox)
                .where(outbox.c.id.in_(bindparam("ids", expanding=True)))
                .values(published_at=bindparam("at"), attempts=outbox.c.attempts + 1)
                .returning(outbox.c.id)
            ),
        )


class OutboxRelay:
    def __init__(self, sources: list[OutboxSource], bus: EventBus, settings: EventSettings) -> None:
        self.sources = sources
        self.bus = bus
        self.settings = settings
        self.stats = RelayStats()
        self._wake = asyncio.Event()
        self._due: set[str] = set()  # services whose outbox was written since the last look
        self._statements = {
            source.service: _RelayStatements.of(
                source.tables.outbox, source.database.dialect, settings.batch_size
            )
            for source in sources
        }

    def wake(self, services: Iterable[str] = ()) -> None:
        """Events were written to the outboxes of ``services`` (none named: of any)."""
        self._due.update(services or (source.service for source in self.sources))
        self._wake.set()

    def _backoff(self, attempts: int) -> timedelta:
        delay = self.settings.backoff_base_seconds * (2 ** max(attempts - 1, 0))
        return timedelta(seconds=min(delay, self.settings.backoff_max_seconds))

    async def run_once(self, services: Collection[str] | None = None) -> int:
        """Deliver every due event once (of ``services``, or of every service). Returns
        how many rows were handled."""
        handled, _ = await self._run(services)
        return handled

    async def _run(self, services: Collection[str] | None) -> tuple[int, set[str]]:
        """One batch from each outbox looked at: the rows handled, and the services whose
        batch was full (more may be waiting)."""
        handled, full = 0, set()
        for source in self.sources:
            if services is None or source.service in services:
                count = await self._drain(source)
                handled += count
                if count >= self.settings.batch_size:
                    full.add(source.service)
        self.stats.last_run_at = utcnow()
        return handled, full

    async def _claim(self, source: OutboxSource) -> list[dict[str, Any]]:
        """The next due events, oldest first, leased (``available_at`` moved on) so another
        relay leaves them alone while this one delivers: one statement, its own
        transaction (on PostgreSQL the rows another relay holds are skipped)."""
        now = utcnow()
        rows = await source.database.write_all(
            self._statements[source.service].claim, now=now, lease_until=now + CLAIM_LEASE
        )
        rows.sort(key=lambda row: row["occurred_at"])
        return rows

    async def _drain(self, source: OutboxSource) -> int:
        rows = await self._claim(source)
        if not rows:
            return 0
        outbox = source.tables.outbox
        deliveries = [
            Delivery(
                EventEnvelope(
                    id=row["id"],
                    type=row["event_type"],
                    source=source.service,
                    occurred_at=row["occurred_at"],
                    request_id=row["request_id"],
                    data=row["payload"],
                ),
                attempt=row["attempts"] + 1,
                final_attempt=row["attempts"] + 1 >= self.settings.max_attempts,
            )
            for row in rows
        ]
        try:
            outcomes = await self.bus.publish_batch(deliveries)
        except Exception as exc:
            outcomes = [exc] * len(deliveries)
        published: list[uuid.UUID] = []
        failed: list[tuple[uuid.UUID, dict[str, Any]]] = []
        for delivery, outcome in zip(deliveries, outcomes, strict=True):
            if outcome is None:
                published.append(delivery.envelope.id)
                self.stats.published += 1
                continue
            self.stats.retried += 1
            failed.append(
                (
                    delivery.envelope.id,
                    {
                        "attempts": delivery.attempt,
                        "last_error": str(outcome)[:4000],
                        "available_at": utcnow() + self._backoff(delivery.attempt),
                    },
                )
            )
        # A crash before these writes only means the events are delivered again once
        # their lease ends; handlers are idempotent.
        if published:
            await source.database.write_all(
                self._statements[source.service].published, ids=published, at=utcnow()
            )
        if failed:
            async with source.database.session() as session:
                for row_id, values in failed:
                    await session.execute(
                        update(outbox).where(outbox.c.id == row_id).values(**values)
                    )
        return len(rows)

    async def prune(self, now: datetime | None = None) -> dict[str, int]:
        """Delete what has served its purpose: published outbox rows and processed inbox
        rows older than ``retention_days``, in batches (short transactions). Unpublished
        events and dead letters stay. Rows deleted per service."""
        days = self.settings.retention_days
        if days <= 0:
            return {}
        cutoff = (now or utcnow()) - timedelta(days=days)
        batch = self.settings.prune_batch_size
        deleted: dict[str, int] = {}
        for source in self.sources:
            outbox, inbox = source.tables.outbox, source.tables.inbox
            statements = (
                delete(outbox).where(
                    outbox.c.id.in_(
                        select(outbox.c.id).where(outbox.c.published_at < cutoff).limit(batch)
                    )
                ),
                delete(inbox).where(
                    tuple_(inbox.c.handler, inbox.c.event_id).in_(
                        select(inbox.c.handler, inbox.c.event_id)
                        .where(inbox.c.processed_at < cutoff)
                        .limit(batch)
                    )
                ),
            )
            count = 0
            for statement in statements:
                while True:
                    async with source.database.session() as session:
                        result = await session.execute(statement)
                    removed = int(getattr(result, "rowcount", 0) or 0)
                    count += removed
                    if removed < batch:
                        break
            deleted[source.service] = count
        return deleted

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
        """Drain the outboxes written in this process as they are written; every outbox
        once an interval (events of other processes, retries coming due)."""
        loop = asyncio.get_running_loop()
        interval = self.settings.relay_interval_seconds
        next_full_look = loop.time()
        while not stop.is_set():
            services: set[str] | None
            if loop.time() >= next_full_look:
                services, next_full_look = None, loop.time() + interval
            else:
                await asyncio.sleep(self.settings.relay_gather_seconds)
                services = self._due
            self._due = set()
            self._wake.clear()
            try:
                _, full = await self._run(services)
            except Exception:
                log.exception("outbox relay iteration failed")
                full = set()
            self._due.update(full)  # a full batch may have left more behind
            if self._due:
                continue
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            done, _ = await asyncio.wait(
                waiters, timeout=interval, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in waiters:
                waiter.cancel()
            if not done:
                next_full_look = loop.time()  # a quiet interval: look everywhere
