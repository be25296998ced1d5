"""One-item reservations over HTTP write exactly what the general path writes, on both
databases: on PostgreSQL they take the one-statement path (services/inventory/hot.py),
on SQLite the general one. The reservation, its line, the movement, the
``stock_changed`` event, a threshold crossing's alert and events, and a replayed or
reused key are all checked on both."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from test_inventory_race import hot_item
from tests.support import assert_error, ok

from ultramarket.core.container import Container
from ultramarket.services.inventory import service as inventory_service
from ultramarket.services.inventory.models import (
    Reservation,
    ReservationLine,
    StockAlert,
    StockItem,
    StockMovement,
)
from ultramarket.services.inventory.schemas import StockUpdate
from ultramarket.services.inventory.service import InventoryService

API = "/api/v1/inventory"


async def stocked_item(
    container: Container, on_hand: int, threshold: int
) -> tuple[uuid.UUID, uuid.UUID]:
    item_id = await hot_item(container, on_hand)
    async with container.db("inventory").session() as session:
        service = InventoryService(session, container.publisher("inventory"), actor="test")
        row = await service.update_item(item_id, StockUpdate(low_stock_threshold=threshold))
    return item_id, row.variant_id


async def outbox(container: Container, since_types: tuple[str, ...]) -> list[dict]:
    table = container.publisher("inventory").tables.outbox
    async with container.db("inventory").read_session() as session:
        rows = await session.execute(
            select(table.c.event_type, table.c.payload).order_by(table.c.occurred_at)
        )
        return [{"type": t, **p} for t, p in rows if t in since_types]


async def test_one_item_reservation_writes_what_the_general_path_writes(
    client, container, make_user, monkeypatch: pytest.MonkeyPatch
):
    calls: list[bool] = []
    original = inventory_service.reserve_in_one_statement

    async def spy(*args, **kwargs):
        result = await original(*args, **kwargs)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(inventory_service, "reserve_in_one_statement", spy)
    manager = await make_user(role="MANAGER")
    item_id, variant_id = await stocked_item(container, on_hand=10, threshold=7)
    url = f"{API}/{item_id}/reserve"

    first = ok(
        await client.post(url, json={"quantity": 2, "key": "k-a", "ttl_seconds": 60},
                          headers=manager.headers), 201)  # fmt: skip
    # 10 - 2 = 8: above the threshold of 7; then 3 more cross it (5 <= 7).
    second = ok(
        await client.post(url, json={"quantity": 3, "key": "k-b", "ttl_seconds": 60},
                          headers=manager.headers), 201)  # fmt: skip

    on_postgres = container.db("inventory").dialect == "postgresql"
    assert calls == ([True, True] if on_postgres else [])
    assert first["quantity"] == 2
    assert first["lines"] == [
        {"item_id": str(item_id), "variant_id": str(variant_id), "quantity": 2, "returned": 0}
    ]
    async with container.db("inventory").read_session() as session:
        item = await session.get(StockItem, item_id)
        assert (item.on_hand, item.reserved) == (10, 5)
        reservation = (
            await session.execute(select(Reservation).where(Reservation.key == "k-b"))
        ).scalar_one()
        assert str(reservation.id) == second["id"]
        assert reservation.status == "active"
        lines = (
            await session.scalars(
                select(ReservationLine.quantity).where(
                    ReservationLine.reservation_id == reservation.id
                )
            )
        ).all()
        assert lines == [3]
        moves = (
            await session.execute(
                select(StockMovement.delta_reserved, StockMovement.reason, StockMovement.reference)
                .where(StockMovement.item_id == item_id, StockMovement.reason == "reservation")
                .order_by(StockMovement.created_at)
            )
        ).all()
        assert [tuple(m) for m in moves] == [(2, "reservation", "k-a"), (3, "reservation", "k-b")]
        alerts = (
            await session.scalars(select(StockAlert.kind).where(StockAlert.item_id == item_id))
        ).all()
        assert alerts == ["low_stock"]

    changed = [
        e for e in await outbox(container, ("inventory.stock_changed.v1",))
        if e["item_id"] == str(item_id) and e["reason"] == "reservation"
    ]  # fmt: skip
    assert [(e["reserved"], e["available"], e["variant_available"]) for e in changed] == [
        (2, 8, 8),
        (5, 5, 5),
    ]
    low = [
        e for e in await outbox(container, ("inventory.low_stock.v1",))
        if e["item_id"] == str(item_id)
    ]  # fmt: skip
    assert [(e["available"], e["threshold"]) for e in low] == [(5, 7)]

    # A replay answers 200 with the first reservation; the key with another quantity is 409;
    # short stock is 409 with what is available. None of them changes the counts.
    replay = await client.post(
        url, json={"quantity": 2, "key": "k-a", "ttl_seconds": 60}, headers=manager.headers
    )
    assert ok(replay)["id"] == first["id"]
    reused = await client.post(
        url, json={"quantity": 1, "key": "k-a", "ttl_seconds": 60}, headers=manager.headers
    )
    assert_error(reused, 409, "IDEMPOTENCY_KEY_REUSED")
    short = await client.post(
        url, json={"quantity": 6, "key": "k-c", "ttl_seconds": 60}, headers=manager.headers
    )
    error = assert_error(short, 409, "INSUFFICIENT_STOCK")
    assert error["details"][0]["available"] == 5
    async with container.db("inventory").read_session() as session:
        item = await session.get(StockItem, item_id)
        assert (item.on_hand, item.reserved) == (10, 5)
