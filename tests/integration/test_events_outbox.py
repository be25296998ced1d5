"""The transactional outbox, the relay, idempotent handlers (inbox), retries with
backoff, the dead letter, and a bus that is down; on the real container, against
the auth service's own outbox/inbox/dead-letter tables, on both stacks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, insert, select, update

from ultramarket.core.config import EventSettings, Settings
from ultramarket.core.container import Container
from ultramarket.core.db import utcnow
from ultramarket.core.errors import Conflict
from ultramarket.core.events import (
    Delivery,
    Dispatcher,
    Event,
    EventEnvelope,
    HandlerContext,
    InProcessBus,
    OutboxRelay,
    OutboxSource,
    Outcome,
    Subscription,
    publish_each,
    subscription,
)


class Pinged(Event):
    type = "test.pinged.v1"
    n: int


class Recorder:
    """Handlers that record their calls (and can be told to fail)."""

    def __init__(self) -> None:
        self.ok_calls: list[int] = []
        self.failing_calls: list[int] = []

    async def ok(self, ctx: HandlerContext) -> None:
        assert ctx.session is not None
        self.ok_calls.append(ctx.envelope.data["n"])

    async def failing(self, ctx: HandlerContext) -> None:
        self.failing_calls.append(ctx.envelope.data["n"])
        raise ValueError(f"handler exploded on {ctx.envelope.data['n']}")


def make_relay(
    container: Container,
    subs: list[Subscription],
    *,
    bus: Any = None,
    max_attempts: int = 3,
    backoff: float = 10.0,
) -> tuple[OutboxRelay, Dispatcher]:
    dispatcher = Dispatcher(
        subs, databases=container.db, tables=container.events, services=container
    )
    source = OutboxSource("auth", container.db("auth"), container.events("auth"))
    settings = EventSettings(
        max_attempts=max_attempts, backoff_base_seconds=backoff, backoff_max_seconds=1000
    )
    return OutboxRelay([source], bus or InProcessBus(dispatcher), settings), dispatcher


async def publish(container: Container, n: int) -> uuid.UUID:
    async with container.db("auth").session() as session:
        return await container.publisher("auth").publish(session, Pinged(n=n))


async def outbox_row(container: Container, event_id: uuid.UUID) -> Any:
    outbox = container.events("auth").outbox
    async with container.db("auth").read_session() as session:
        return (await session.execute(select(outbox).where(outbox.c.id == event_id))).one()


async def make_due(container: Container, event_id: uuid.UUID) -> None:
    outbox = container.events("auth").outbox
    async with container.db("auth").session() as session:
        await session.execute(
            update(outbox)
            .where(outbox.c.id == event_id)
            .values(available_at=utcnow() - timedelta(seconds=1))
        )


async def count(container: Container, table: Any, *where: Any) -> int:
    async with container.db("auth").read_session() as session:
        return int(await session.scalar(select(func.count()).select_from(table).where(*where)))


# -- the outbox ------------------------------------------------------------------------


async def test_publish_writes_the_outbox_row_in_the_callers_transaction(
    container: Container,
) -> None:
    event_id = await publish(container, 1)
    row = await outbox_row(container, event_id)
    assert row.event_type == "test.pinged.v1"
    assert row.payload == {"n": 1}
    assert row.published_at is None
    assert row.attempts == 0
    assert row.occurred_at.tzinfo is not None


async def test_a_rolled_back_transaction_leaves_no_event(container: Container) -> None:
    outbox = container.events("auth").outbox
    woken: list[bool] = []
    container.db("auth").after_commit_hooks.append(lambda services: woken.append(True))
    before = await count(container, outbox)

    async def failing_state_change() -> None:
        async with container.db("auth").session() as session:
            await container.publisher("auth").publish(session, Pinged(n=2))
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError, match="state change failed"):
        await failing_state_change()
    assert await count(container, outbox) == before
    assert woken == []  # the relay is only woken by a commit that wrote events
    await publish(container, 3)
    assert woken == [True]


# -- delivery --------------------------------------------------------------------------


async def test_relay_delivers_exactly_once(container: Container) -> None:
    rec = Recorder()
    sub = subscription("auth", Pinged, rec.ok)
    relay, dispatcher = make_relay(container, [sub])
    event_id = await publish(container, 7)

    assert await relay.run_once() >= 1
    assert await relay.run_once() == 0
    assert rec.ok_calls == [7]
    row = await outbox_row(container, event_id)
    assert row.published_at is not None
    assert row.attempts == 1
    assert row.last_error is None
    inbox = container.events("auth").inbox
    assert await count(container, inbox, inbox.c.event_id == event_id) == 1
    assert await relay.lag() == {"auth": 0}

    # The same envelope delivered again (at-least-once) is a no-op for the handler.
    envelope = EventEnvelope(
        id=event_id, type=Pinged.type, source="auth", occurred_at=row.occurred_at, data={"n": 7}
    )
    assert await dispatcher.deliver(sub, envelope) is False
    await dispatcher.dispatch(envelope, final_attempt=False)
    await InProcessBus(dispatcher).publish(envelope, final_attempt=True)
    assert rec.ok_calls == [7]


async def test_a_handler_breaking_a_constraint_is_retried_not_marked_handled(
    container: Container,
) -> None:
    """The handler's own write violates a unique index: the event is not handled, so it
    is retried and then dead-lettered. Before, the IntegrityError was taken for a
    concurrent delivery winning the inbox row, and the event was marked published with
    nothing done: lost without a trace."""
    tables = container.events("auth")
    calls: list[int] = []

    async def duplicate_write(ctx: HandlerContext) -> None:
        calls.append(ctx.envelope.data["n"])
        row = {"handler": "twice", "event_id": ctx.envelope.id, "processed_at": utcnow()}
        await ctx.session.execute(insert(tables.inbox).values(row))
        await ctx.session.execute(insert(tables.inbox).values(row))  # the same key again

    sub = subscription("auth", Pinged, duplicate_write)
    relay, _ = make_relay(container, [sub], max_attempts=2)
    event_id = await publish(container, 4)

    await relay.run_once()
    row = await outbox_row(container, event_id)
    assert (row.published_at, row.attempts) == (None, 1)
    assert "IntegrityError" in row.last_error
    await make_due(container, event_id)
    await relay.run_once()
    assert calls == [4, 4]
    assert (await outbox_row(container, event_id)).published_at is not None
    assert (
        await count(container, tables.dead_letter, tables.dead_letter.c.event_id == event_id) == 1
    )
    assert await count(container, tables.inbox, tables.inbox.c.event_id == event_id) == 0


async def test_a_handler_error_asking_to_keep_its_changes_keeps_nothing(
    container: Container,
) -> None:
    """A domain error may ask its unit of work to be kept (``persist_changes``); in a
    handler that would keep the inbox row too, and every retry would skip the event."""
    tables = container.events("auth")
    calls: list[int] = []

    async def refusing(ctx: HandlerContext) -> None:
        calls.append(ctx.envelope.data["n"])
        raise Conflict("not now", persist_changes=True)

    sub = subscription("auth", Pinged, refusing)
    relay, _ = make_relay(container, [sub], max_attempts=3)
    event_id = await publish(container, 5)
    await relay.run_once()
    await make_due(container, event_id)
    await relay.run_once()
    assert calls == [5, 5]
    assert await count(container, tables.inbox, tables.inbox.c.event_id == event_id) == 0
    assert "not now" in (await outbox_row(container, event_id)).last_error


async def test_concurrent_relays_deliver_once(container: Container) -> None:
    rec = Recorder()
    sub = subscription("auth", Pinged, rec.ok)
    first, _ = make_relay(container, [sub])
    second, _ = make_relay(container, [sub])
    ids = [await publish(container, n) for n in range(5)]
    await asyncio.gather(first.run_once(), second.run_once())
    assert sorted(rec.ok_calls) == [0, 1, 2, 3, 4]
    for event_id in ids:
        assert (await outbox_row(container, event_id)).published_at is not None


class CountingBus:
    """Hands nothing to handlers; counts what each relay claimed and handed over."""

    def __init__(self) -> None:
        self.handed: list[uuid.UUID] = []

    async def publish(
        self, envelope: EventEnvelope, *, final_attempt: bool, attempt: int = 1
    ) -> None:
        self.handed.append(envelope.id)
        await asyncio.sleep(0)  # let the other relay run meanwhile

    async def publish_batch(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        return await publish_each(self, deliveries)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_racing_relays_claim_each_event_once(container: Container) -> None:
    """Two relays draining one outbox in small batches at once: each event is claimed by
    one of them and handed to the bus once (the inbox, which would hide a double claim
    from the handlers, is not involved)."""
    ids = {await publish(container, n) for n in range(60)}
    bus = CountingBus()
    source = OutboxSource("auth", container.db("auth"), container.events("auth"))
    relays = [OutboxRelay([source], bus, EventSettings(batch_size=7)) for _ in range(2)]

    async def drain(relay: OutboxRelay) -> None:
        while await relay.run_once():
            pass

    await asyncio.gather(*(drain(relay) for relay in relays))
    assert sorted(bus.handed) == sorted(ids)  # every event, none twice
    assert await relays[0].lag() == {"auth": 0}


async def test_events_without_subscribers_are_marked_published(container: Container) -> None:
    relay, _ = make_relay(container, [])
    event_id = await publish(container, 1)
    await relay.run_once()
    assert (await outbox_row(container, event_id)).published_at is not None


# -- retries, backoff and the dead letter -----------------------------------------------


async def test_failing_handler_is_retried_with_backoff_then_dead_lettered(
    container: Container,
) -> None:
    rec = Recorder()
    good = subscription("auth", Pinged, rec.ok)
    bad = subscription("auth", Pinged, rec.failing)
    relay, _ = make_relay(container, [good, bad], max_attempts=3, backoff=10)
    tables = container.events("auth")
    event_id = await publish(container, 9)

    # Attempt 1 fails: the row stays pending, its next try is pushed back by the backoff.
    started = utcnow()
    await relay.run_once()
    row = await outbox_row(container, event_id)
    assert row.published_at is None
    assert row.attempts == 1
    assert "handler exploded on 9" in row.last_error
    assert row.available_at >= started + timedelta(seconds=9)
    first_retry_at = row.available_at
    # Not due yet: nothing happens.
    assert await relay.run_once() == 0
    assert rec.failing_calls == [9]

    # Attempt 2 fails again: the backoff doubles.
    await make_due(container, event_id)
    started = utcnow()
    await relay.run_once()
    row = await outbox_row(container, event_id)
    assert row.attempts == 2
    assert row.published_at is None
    assert row.available_at >= started + timedelta(seconds=19)
    assert row.available_at > first_retry_at
    assert await count(container, tables.dead_letter) == 0

    # Attempt 3 is the last: dead-lettered in the consumer's table, the row is done.
    await make_due(container, event_id)
    await relay.run_once()
    row = await outbox_row(container, event_id)
    assert row.published_at is not None
    assert row.attempts == 3
    assert rec.failing_calls == [9, 9, 9]
    # The healthy handler ran once, not once per retry (the inbox).
    assert rec.ok_calls == [9]
    async with container.db("auth").read_session() as session:
        dead = (await session.execute(select(tables.dead_letter))).all()
    assert len(dead) == 1
    assert dead[0].event_id == event_id
    assert dead[0].handler == bad.name
    assert dead[0].event_type == Pinged.type
    assert "handler exploded on 9" in dead[0].error
    assert dead[0].attempts == 3
    assert dead[0].payload["data"] == {"n": 9}
    # A failed handler leaves no inbox row (its transaction rolled back).
    inbox = tables.inbox
    assert await count(container, inbox, inbox.c.handler == bad.name) == 0
    assert await relay.run_once() == 0
    assert relay.stats.retried == 2


async def test_nothing_is_lost_while_the_bus_is_down(container: Container) -> None:
    class DownBus:
        calls = 0

        async def publish(
            self, envelope: EventEnvelope, *, final_attempt: bool, attempt: int = 1
        ) -> None:
            self.calls += 1
            raise ConnectionError("broker unreachable")

        async def publish_batch(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
            return await publish_each(self, deliveries)

        async def ping(self) -> None:
            raise ConnectionError("broker unreachable")

        async def close(self) -> None:
            return None

    down = DownBus()
    rec = Recorder()
    sub = subscription("auth", Pinged, rec.ok)
    relay, dispatcher = make_relay(container, [sub], bus=down, max_attempts=2, backoff=5)
    event_id = await publish(container, 4)
    for _ in range(4):  # more failures than max_attempts: still never dropped
        await make_due(container, event_id)
        await relay.run_once()
    assert down.calls == 4
    row = await outbox_row(container, event_id)
    assert row.published_at is None
    assert row.attempts == 4
    assert "broker unreachable" in row.last_error
    assert await relay.lag() == {"auth": 1}
    dead_letter = container.events("auth").dead_letter
    assert await count(container, dead_letter) == 0

    # The broker is back: the event goes out, once.
    relay.bus = InProcessBus(dispatcher)
    await make_due(container, event_id)
    await relay.run_once()
    assert rec.ok_calls == [4]
    assert (await outbox_row(container, event_id)).published_at is not None


# -- real auth events -----------------------------------------------------------------


async def test_registration_mail_goes_out_through_the_outbox(
    client: httpx.AsyncClient, container: Container, settings: Settings, drain: Any
) -> None:
    email = f"outbox-{uuid.uuid4().hex[:8]}@example.com"
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": "Correct-Horse-42", "first_name": "Ada"},
    )
    assert response.status_code == 201, response.text
    mail_dir = settings.data_dir / "mail"
    before = list(mail_dir.glob("*.eml")) if mail_dir.exists() else []
    assert not any(email in p.read_text() for p in before)  # not sent inside the request

    assert await drain() >= 1
    mails = [p for p in mail_dir.glob("*.eml") if email in p.read_text()]
    assert len(mails) == 1
    assert "Confirm your email address" in mails[0].read_text()
    # Draining again (a redelivery) sends nothing more.
    await drain()
    outbox = container.events("auth").outbox
    async with container.db("auth").session() as session:
        await session.execute(update(outbox).values(published_at=None, available_at=utcnow()))
    await drain()
    assert len([p for p in mail_dir.glob("*.eml") if email in p.read_text()]) == 1


# -- batches ---------------------------------------------------------------------------


class Ponged(Event):
    type = "test.ponged.v1"
    n: int


@contextmanager
def statements(container: Container) -> Iterator[list[str]]:
    """Every statement (and "COMMIT") the databases run inside the block."""
    seen: list[str] = []
    engines = {id(db.engine): db.engine.sync_engine for db in container.databases.values()}

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    def on_commit(conn: Any) -> None:
        seen.append("COMMIT")

    for engine in engines.values():
        event.listen(engine, "before_cursor_execute", on_execute)
        event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        for engine in engines.values():
            event.remove(engine, "before_cursor_execute", on_execute)
            event.remove(engine, "commit", on_commit)


def inbox_claims(seen: list[str], service: str) -> int:
    return sum(1 for s in seen if s.startswith("INSERT INTO") and f"{service}_inbox" in s)


async def handled(container: Container, sub: Subscription) -> set[int]:
    """The events (by n) the handler's inbox says it processed."""
    tables = container.events("auth")
    async with container.db("auth").read_session() as session:
        ids = set(
            await session.scalars(
                select(tables.inbox.c.event_id).where(tables.inbox.c.handler == sub.name)
            )
        )
        payloads = await session.scalars(
            select(tables.outbox.c.payload).where(tables.outbox.c.id.in_(ids))
        )
        return {p["n"] for p in payloads}


async def test_a_batch_reaches_each_handler_in_one_unit_of_work(container: Container) -> None:
    rec = Recorder()
    sessions: set[int] = set()

    async def ok(ctx: HandlerContext) -> None:
        sessions.add(id(ctx.session))
        await rec.ok(ctx)

    sub = subscription("auth", Pinged, ok)
    relay, _ = make_relay(container, [sub])
    for n in range(10):
        await publish(container, n)

    with statements(container) as seen:
        assert await relay.run_once() == 10
    assert rec.ok_calls == list(range(10))  # in the order they occurred
    assert len(sessions) == 1
    # One inbox claim for the ten; commits: the relay's claim, the handler's unit of
    # work, the relay's outcome (one claim and one commit per event before batching).
    # On PostgreSQL the claim and the outcome are single statements the driver runs in
    # autocommit, outside SQLAlchemy's engine: its only COMMIT is the handler's.
    assert inbox_claims(seen, "auth") == 1
    assert seen.count("COMMIT") == (1 if container.db("auth").dialect == "postgresql" else 3)
    assert await handled(container, sub) == set(range(10))
    assert await relay.lag() == {"auth": 0}


async def test_a_handler_sees_its_events_of_every_type_in_order(container: Container) -> None:
    calls: list[tuple[str, int]] = []

    async def mirror(ctx: HandlerContext) -> None:
        calls.append((ctx.envelope.type, ctx.envelope.data["n"]))

    # One handler subscribed to two event types (as the product stock mirror is).
    relay, _ = make_relay(
        container, [subscription("auth", Pinged, mirror), subscription("auth", Ponged, mirror)]
    )
    async with container.db("auth").session() as session:
        for n in range(6):
            event_type = Pinged if n % 2 else Ponged
            await container.publisher("auth").publish(session, event_type(n=n))
    with statements(container) as seen:
        await relay.run_once()
    assert [n for _, n in calls] == list(range(6))
    assert inbox_claims(seen, "auth") == 1


async def test_a_failing_event_in_a_batch_leaves_the_others_delivered(
    container: Container,
) -> None:
    rec = Recorder()
    bad = {2}

    async def picky(ctx: HandlerContext) -> None:
        if ctx.envelope.data["n"] in bad:
            await rec.failing(ctx)
        await rec.ok(ctx)

    sub = subscription("auth", Pinged, picky)
    relay, _ = make_relay(container, [sub], max_attempts=2, backoff=10)
    ids = [await publish(container, n) for n in range(5)]

    # The batch fails on event 2: it rolls back, and each event goes again on its own.
    started = utcnow()
    with statements(container) as seen:
        await relay.run_once()
    assert inbox_claims(seen, "auth") == 1 + 5
    assert await handled(container, sub) == {0, 1, 3, 4}
    failed = await outbox_row(container, ids[2])
    assert failed.published_at is None
    assert failed.attempts == 1
    assert "handler exploded on 2" in failed.last_error
    assert failed.available_at >= started + timedelta(seconds=9)
    for event_id in ids[:2] + ids[3:]:
        row = await outbox_row(container, event_id)
        assert row.published_at is not None
        assert row.attempts == 1
        assert row.last_error is None
    assert relay.stats.published == 4
    assert relay.stats.retried == 1

    # Its last attempt comes in a batch with new events: they are delivered, it is
    # dead-lettered, and the row is done.
    later = [await publish(container, n) for n in (5, 6)]
    await make_due(container, ids[2])
    await relay.run_once()
    assert await handled(container, sub) == {0, 1, 3, 4, 5, 6}
    for event_id in [ids[2], *later]:
        assert (await outbox_row(container, event_id)).published_at is not None
    tables = container.events("auth")
    async with container.db("auth").read_session() as session:
        dead = (await session.execute(select(tables.dead_letter))).all()
    assert [(d.event_id, d.handler, d.attempts) for d in dead] == [(ids[2], sub.name, 2)]
    assert "handler exploded on 2" in dead[0].error
    assert await relay.run_once() == 0


async def test_a_handler_with_outside_effects_is_never_run_twice_by_a_failing_batch(
    container: Container,
) -> None:
    """A mail-sending handler (``batch=False``) takes its events one by one: a failing
    event does not make it send the mails of the events before it again."""
    sent: list[int] = []

    async def send_mail(ctx: HandlerContext) -> None:
        if ctx.envelope.data["n"] == 2:
            raise ValueError("the mail server said no")
        sent.append(ctx.envelope.data["n"])

    sub = subscription("auth", Pinged, send_mail, batch=False)
    relay, _ = make_relay(container, [sub], max_attempts=2, backoff=10)
    for n in range(5):
        await publish(container, n)
    await relay.run_once()
    assert sent == [0, 1, 3, 4]
    assert relay.stats.published == 4
    assert relay.stats.retried == 1


async def test_a_failure_that_keeps_its_changes_still_rolls_the_batch_back(
    container: Container,
) -> None:
    # Alone, an error with persist_changes commits its unit of work; in a batch that
    # would mark the events after it handled without running them.
    ran: list[int] = []

    async def declines_two(ctx: HandlerContext) -> None:
        if ctx.envelope.data["n"] == 2:
            raise Conflict("declined", persist_changes=True)
        ran.append(ctx.envelope.data["n"])

    sub = subscription("auth", Pinged, declines_two)
    relay, _ = make_relay(container, [sub])
    ids = [await publish(container, n) for n in range(4)]
    await relay.run_once()
    assert sorted(set(ran)) == [0, 1, 3]
    assert 3 in await handled(container, sub)
    assert (await outbox_row(container, ids[3])).published_at is not None


async def test_a_redelivered_batch_runs_each_handler_once_per_event(
    container: Container,
) -> None:
    rec = Recorder()
    sub = subscription("auth", Pinged, rec.ok)
    relay, dispatcher = make_relay(container, [sub])
    ids = [await publish(container, n) for n in range(4)]
    await relay.run_once()
    assert rec.ok_calls == [0, 1, 2, 3]

    # The whole batch again (a lease ran out before its outcome was recorded), with
    # two new events among it: only those run.
    new = [await publish(container, n) for n in (4, 5)]
    outbox = container.events("auth").outbox
    async with container.db("auth").session() as session:
        await session.execute(
            update(outbox)
            .where(outbox.c.id.in_(ids))
            .values(published_at=None, available_at=utcnow() - timedelta(seconds=1))
        )
    with statements(container) as seen:
        assert await relay.run_once() == 6
    assert rec.ok_calls == [0, 1, 2, 3, 4, 5]
    assert inbox_claims(seen, "auth") == 1
    for event_id in ids + new:
        assert (await outbox_row(container, event_id)).published_at is not None

    # And straight to the dispatcher: every outcome is a success, nothing runs.
    async with container.db("auth").read_session() as session:
        rows = (await session.execute(select(outbox).where(outbox.c.id.in_(ids + new)))).all()
    envelopes = [
        EventEnvelope(
            id=r.id, type=r.event_type, source="auth", occurred_at=r.occurred_at, data=r.payload
        )
        for r in rows
    ]
    outcomes = await dispatcher.dispatch_batch([Delivery(e) for e in envelopes])
    assert outcomes == [None] * 6
    assert rec.ok_calls == [0, 1, 2, 3, 4, 5]


async def test_concurrent_batches_of_the_same_events_run_each_once(
    container: Container,
) -> None:
    rec = Recorder()
    first, second = (
        make_relay(container, [subscription("auth", Pinged, rec.ok)])[1] for _ in range(2)
    )
    envelopes = [
        EventEnvelope(
            id=uuid.uuid4(), type=Pinged.type, source="auth", occurred_at=utcnow(), data={"n": n}
        )
        for n in range(8)
    ]
    batches = [[Delivery(e) for e in envelopes], [Delivery(e) for e in reversed(envelopes)]]
    outcomes = await asyncio.gather(
        first.dispatch_batch(batches[0]), second.dispatch_batch(batches[1])
    )
    assert outcomes == [[None] * 8, [None] * 8]
    assert sorted(rec.ok_calls) == list(range(8))


async def test_the_running_relay_drains_the_outboxes_written_and_every_one_once_an_interval(
    container: Container,
) -> None:
    """Woken by a commit, the relay looks at the outboxes that commit wrote, not at every
    service's; an event it was not told about (another process wrote it) is delivered
    after a quiet interval, when it looks everywhere."""
    recorder = Recorder()
    dispatcher = Dispatcher(
        [subscription("auth", Pinged, recorder.ok)],
        databases=container.db,
        tables=container.events,
        services=container,
    )
    sources = [
        OutboxSource(name, container.db(name), container.events(name))
        for name in ("auth", "user", "product")
    ]
    relay = OutboxRelay(
        sources, InProcessBus(dispatcher), EventSettings(relay_interval_seconds=1.5)
    )
    looked: list[str] = []
    drain = relay._drain

    async def counted(source: OutboxSource) -> int:
        looked.append(source.service)
        return await drain(source)

    relay._drain = counted  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run_forever(stop))
    try:
        await asyncio.sleep(0.1)  # the first look, everywhere, finds nothing
        assert sorted(looked) == ["auth", "product", "user"]
        looked.clear()
        container.db("auth").after_commit_hooks.append(relay.wake)
        await publish(container, 1)
        await _until(lambda: recorder.ok_calls == [1])
        await asyncio.sleep(0.05)
        assert set(looked) == {"auth"}

        # Written without a wake (as by another process): found by the next full look.
        container.db("auth").after_commit_hooks.remove(relay.wake)
        await asyncio.sleep(0.3)  # the relay's follow-up look at auth is over
        looked.clear()
        await publish(container, 2)
        await _until(lambda: recorder.ok_calls == [1, 2])
        await _until(lambda: {"user", "product"} <= set(looked))  # the full look
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def _until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not delivered in time")


async def test_prune_deletes_old_published_events_and_inbox_rows_only(
    container: Container,
) -> None:
    rec = Recorder()
    sub = subscription("auth", Pinged, rec.ok)
    relay, _ = make_relay(container, [sub])
    relay.settings = relay.settings.model_copy(update={"prune_batch_size": 2})  # 2 batches
    old = [await publish(container, n) for n in range(3)]
    recent = await publish(container, 3)
    assert await relay.run_once() == 4
    waiting = await publish(container, 4)  # old too, but never delivered

    tables = container.events("auth")
    outbox, inbox = tables.outbox, tables.inbox
    long_ago = utcnow() - timedelta(days=8)
    async with container.db("auth").session() as session:
        await session.execute(
            update(outbox)
            .where(outbox.c.id.in_(old))
            .values(occurred_at=long_ago, published_at=long_ago)
        )
        await session.execute(
            update(outbox).where(outbox.c.id == waiting).values(occurred_at=long_ago)
        )
        await session.execute(
            update(inbox).where(inbox.c.event_id.in_(old)).values(processed_at=long_ago)
        )

    assert await relay.prune() == {"auth": 6}  # 3 outbox rows and their 3 inbox rows
    async with container.db("auth").read_session() as session:
        assert set(await session.scalars(select(outbox.c.id))) == {recent, waiting}
        assert set(await session.scalars(select(inbox.c.event_id))) == {recent}
    # The unpublished event, however old, is still delivered.
    assert await relay.run_once() == 1
    assert rec.ok_calls == [0, 1, 2, 3, 4]
    assert await relay.prune() == {"auth": 0}

    relay.settings = relay.settings.model_copy(update={"retention_days": 0})
    async with container.db("auth").session() as session:
        await session.execute(update(outbox).values(published_at=long_ago))
    assert await relay.prune() == {}  # 0: kept forever
    assert await relay.lag() == {"auth": 0}


async def test_the_platform_prunes_every_service_on_its_schedule(container: Container) -> None:
    """The job the container runs every ``prune_interval_seconds`` (with the relay)
    prunes every service's tables."""
    from ultramarket.core.container import _prune

    event_id = await publish(container, 1)
    outbox = container.events("auth").outbox
    long_ago = utcnow() - timedelta(days=30)
    async with container.db("auth").session() as session:
        await session.execute(
            update(outbox).where(outbox.c.id == event_id).values(published_at=long_ago)
        )
    await _prune(container)
    async with container.db("auth").read_session() as session:
        assert await session.scalar(select(func.count()).select_from(outbox)) == 0
