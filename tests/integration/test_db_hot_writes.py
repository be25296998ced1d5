"""The hot-path writes and reads of ``core/db.py`` on real tables, on both stacks:
``write_together`` lands all rows or none, ``write_if`` writes only when its guard
matches and returns the guard's row with its values as written (JSON included), the
Python-side defaults and onupdates of the columns a statement leaves out are applied as
SQLAlchemy applies them, and ``fetch_all`` binds expanding lists of any length. On
PostgreSQL these run on the driver from SQL compiled once; on SQLite through
SQLAlchemy."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError

from ultramarket.core.container import Container
from ultramarket.core.db import rows_of, utcnow
from ultramarket.services.order.checkout import CONFIRM
from ultramarket.services.order.models import Order, OrderStatusChange
from ultramarket.services.order.service import ORDER

ADDRESS = {"name": "Ada Lovelace", "line1": "12 Rue de la Paix", "city": "Paris", "country": "FR"}
BY_IDS = select(ORDER.c.id, ORDER.c.number).where(ORDER.c.id.in_(bindparam("ids", expanding=True)))


def pending_order(number: str) -> Order:
    now = utcnow()
    return Order(
        id=uuid.uuid4(), number=number, user_id=uuid.uuid4(), status="pending",
        payment_status="unpaid", currency="EUR", subtotal_amount=1000, total_amount=1000,
        shipping_address=ADDRESS, payment_method="card", created_at=now, updated_at=now,
    )  # fmt: skip


def history(order: Order, *, row_id: uuid.UUID | None = None) -> OrderStatusChange:
    return OrderStatusChange(
        id=row_id or uuid.uuid4(), order_id=order.id, to_status="pending", created_at=utcnow()
    )


async def count(container: Container, model: Any, order_id: uuid.UUID) -> int:
    column = model.id if model is Order else model.order_id
    async with container.db("order").read_session() as session:
        return int(await session.scalar(select(func.count()).where(column == order_id)) or 0)


async def test_write_together_lands_every_row_or_none(container: Container) -> None:
    db = container.db("order")
    first = pending_order("T-1")
    taken = history(first)
    await db.write_together(*rows_of(first, taken))
    assert (
        await count(container, Order, first.id),
        await count(container, OrderStatusChange, first.id),
    ) == (1, 1)

    # The second order's history row reuses a taken id: the order does not land either.
    second = pending_order("T-2")
    with pytest.raises(IntegrityError):
        await db.write_together(*rows_of(second, history(second, row_id=taken.id)))
    assert await count(container, Order, second.id) == 0


async def test_write_if_writes_only_when_its_guard_matches(container: Container) -> None:
    db = container.db("order")
    order = pending_order("T-3")
    await db.write_together(*rows_of(order))
    now = utcnow()
    params = {
        "order_id": order.id, "new_payment_id": uuid.uuid4(),
        "new_confirmed_at": now, "new_updated_at": now,
    }  # fmt: skip
    confirmed = await db.write_if(CONFIRM, params, *rows_of(history(order)))
    assert confirmed is not None
    assert (confirmed["status"], confirmed["paid_amount"]) == ("confirmed", 1000)
    assert confirmed["shipping_address"] == ADDRESS  # JSON back as written
    assert (confirmed["id"], confirmed["confirmed_at"]) == (order.id, now)

    # No longer pending: nothing matches, nothing is written.
    assert await db.write_if(CONFIRM, params, *rows_of(history(order))) is None
    assert await count(container, OrderStatusChange, order.id) == 1


async def test_fetch_all_binds_lists_of_any_length(container: Container) -> None:
    db = container.db("order")
    orders = [pending_order(f"T-L{n}") for n in range(3)]
    await db.write_together(*rows_of(*orders))
    for picked in ([0], [0, 2], [2, 1, 0], [1], []):
        rows = await db.fetch_all(BY_IDS, ids=[orders[n].id for n in picked])
        assert sorted(row["number"] for row in rows) == sorted(orders[n].number for n in picked)
    found = await db.fetch_one(BY_IDS, ids=[orders[1].id, uuid.uuid4()])
    assert found is not None
    assert found["id"] == orders[1].id


async def test_columns_left_out_get_their_python_defaults(container: Container) -> None:
    """A row that leaves out columns with Python-side defaults gets them (not NULL), and
    a guard that does not set ``updated_at`` still moves it (its ``onupdate``)."""
    db = container.db("order")
    order_id, before = uuid.uuid4(), utcnow()
    required = {
        "id": order_id, "number": "T-D", "user_id": uuid.uuid4(), "currency": "EUR",
        "subtotal_amount": 1000, "total_amount": 1000, "shipping_address": ADDRESS,
        "payment_method": "card",
    }  # fmt: skip
    await db.write_together((ORDER, required))
    async with db.read_session() as session:
        order = await session.get_one(Order, order_id)
    assert (order.status, order.payment_status, order.settled) == ("pending", "unpaid", True)
    assert order.created_at >= before
    assert order.updated_at >= before

    cancel = (
        update(ORDER)
        .where(ORDER.c.id == bindparam("order_id"), ORDER.c.status == "pending")
        .values(status="cancelled")
        .returning(ORDER.c.status, ORDER.c.updated_at)
    )
    moved = await db.write_if(cancel, {"order_id": order_id})
    assert moved is not None
    assert moved["status"] == "cancelled"
    assert moved["updated_at"] > order.updated_at
