"""The transactional outbox, the relay, idempotent handlers (inbox), retries with
backoff, the dead letter, and a bus that is down; on the real container, against
the auth service's own outbox/inbox/dead-letter tables, on both stacks."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from ultramarket.core.config import EventSettings, Settings
from ultramarket.core.container import Container
from ultramarket.core.db import utcnow
from ultramarket.core.events import (
    Dispatcher,
    Event,
    EventEnvelope,
    HandlerContext,
    InProcessBus,
    OutboxRelay,
    OutboxSource,
    Subscription,
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
    container.db("auth").after_commit_hooks.append(lambda: woken.append(True))
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
