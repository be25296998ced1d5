"""One-item reservations over HTTP write exactly what the general path writes, on both
databases: on PostgreSQL they take the one-statement path (services/inventory/hot.py),
on SQLite the general one. The reservation, its line, the movement, the
``stock_changed`` event, a threshold crossing's alert and events, and a replayed or
reused key are all checked on both."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy import select
from test_inventory_race import hot_item
from tests.support import assert_error, ok

from ultramarket.core.container import Container
from ultramarket.core.db import Database, utcnow
from ultramarket.services.inventory import service as inventory_service
from ultramarket.services.inventory.models import (
    Reservation,
    ReservationLine,
    StockAlert,
    StockItem,
    StockMovement,
)
from ultramarket.services.inventory.schemas import ItemCreate, StockUpdate, WarehouseCreate
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
        alerts = (  # (the item's alerts from when it was new, at 0, are resolved)
            await session.scalars(
                select(StockAlert.kind).where(
                    StockAlert.item_id == item_id, StockAlert.resolved_at.is_(None)
                )
            )
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
    # The first from when the item was new (at 0, threshold 5); then the crossing.
    assert [(e["available"], e["threshold"]) for e in low] == [(0, 5), (5, 7)]

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


async def test_multi_line_reservation_and_its_sale_write_what_the_general_path_writes(
    client, container, make_user, monkeypatch: pytest.MonkeyPatch
):
    """A checkout's reservation (several variants) and its commit: on PostgreSQL each is one
    statement; both databases end with the same rows, the same warehouse choice, the same
    events and the same refusals."""
    taken: list[str] = []
    for name in ("reserve_in_one_statement", "commit_in_one_statement"):
        original = getattr(inventory_service, name)

        async def spy(*args, _original=original, _name=name, **kwargs):
            result = await _original(*args, **kwargs)
            taken.append(f"{_name}:{'served' if result is not None else 'fell back'}")
            return result

        monkeypatch.setattr(inventory_service, name, spy)
    manager = await make_user(role="MANAGER")
    a_item, a = await stocked_item(container, on_hand=10, threshold=0)
    b_default, b = await stocked_item(container, on_hand=1, threshold=0)
    async with container.db("inventory").session() as session:
        service = InventoryService(session, container.publisher("inventory"), actor="test")
        north = await service.create_warehouse(WarehouseCreate(code="north", name="North"))
        b_north = (
            await service.create_item(ItemCreate(variant_id=b, warehouse_id=north.id, on_hand=20))
        ).id

    def body(key: str, b_units: int) -> dict:
        return {
            "key": key,
            "ttl_seconds": 600,
            "lines": [
                {"variant_id": str(a), "quantity": 2},
                {"variant_id": str(b), "quantity": b_units},
            ],
        }

    # 3 of b: the default warehouse holds only 1, so the line takes the north item.
    made = ok(await client.post(f"{API}/reservations", json=body("m-1", 3),
                                headers=manager.headers), 201)  # fmt: skip
    assert sorted((line["item_id"], line["quantity"]) for line in made["lines"]) == sorted(
        [(str(a_item), 2), (str(b_north), 3)]
    )
    replay = ok(await client.post(f"{API}/reservations", json=body("m-1", 3),
                                  headers=manager.headers), 200)  # fmt: skip
    assert replay["id"] == made["id"]
    # 30 of b: more than any item holds. Nothing is reserved, a's line neither.
    short = await client.post(f"{API}/reservations", json=body("m-2", 30), headers=manager.headers)
    error = assert_error(short, 409, "INSUFFICIENT_STOCK")
    assert [d["variant_id"] for d in error["details"]] == [str(b)]
    committed = ok(await client.post(f"{API}/reservations/m-1/commit", headers=manager.headers))
    assert committed["status"] == "committed"
    assert committed["quantity"] == 5
    again = await client.post(f"{API}/reservations/m-1/commit", headers=manager.headers)
    assert_error(again, 409, "RESERVATION_ALREADY_COMMITTED")

    on_postgres = container.db("inventory").dialect == "postgresql"
    assert taken == (
        [
            "reserve_in_one_statement:served",
            "reserve_in_one_statement:fell back",  # the replay
            "reserve_in_one_statement:fell back",  # short
            "commit_in_one_statement:served",
            "commit_in_one_statement:fell back",  # committed already
        ]
        if on_postgres
        else []
    )
    async with container.db("inventory").read_session() as session:
        counts = {
            item_id: (item.on_hand, item.reserved)
            for item_id in (a_item, b_default, b_north)
            if (item := await session.get(StockItem, item_id)) is not None
        }
        assert counts == {a_item: (8, 0), b_default: (1, 0), b_north: (17, 0)}
        moves = (
            await session.execute(
                select(
                    StockMovement.item_id,
                    StockMovement.delta_on_hand,
                    StockMovement.delta_reserved,
                    StockMovement.reason,
                    StockMovement.reference,
                ).where(StockMovement.reference == "m-1")
            )
        ).all()
        assert sorted(tuple(m) for m in moves) == sorted(
            [
                (a_item, 0, 2, "reservation", "m-1"),
                (b_north, 0, 3, "reservation", "m-1"),
                (a_item, -2, -2, "sale", "m-1"),
                (b_north, -3, -3, "sale", "m-1"),
            ]
        )
        assert not (
            await session.scalars(select(Reservation.id).where(Reservation.key == "m-2"))
        ).all()
    changed = [
        (e["item_id"], e["reserved"], e["available"], e["variant_available"])
        for e in await outbox(container, ("inventory.stock_changed.v1",))
        if e["reason"] == "reservation"
    ]
    # The events of the reservation only: a sale leaves ``available`` as it was.
    assert sorted(changed) == sorted([(str(a_item), 2, 8, 8), (str(b_north), 3, 17, 18)])


class NoNewSessions:
    """The inventory database, except that no other unit of work can be opened (a pool
    run dry, a connection refused): what a reservation writes must ride on its own
    statement, so it stands or falls whole."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def __getattr__(self, name: str) -> Any:
        return getattr(self._database, name)

    def session(self) -> Any:
        raise ConnectionError("no connection for another unit of work")


async def test_a_crossing_reservation_writes_its_alert_and_events_with_itself(
    container: Container,
) -> None:
    """Crossing the low-stock threshold, then reaching 0: each reservation's alert and
    events land with the reservation itself (on PostgreSQL in its one statement, at its
    time), not in a follow-up that could fail after it committed or land after a newer
    change."""
    item_id, variant_id = await stocked_item(container, on_hand=5, threshold=2)
    db = container.db("inventory")
    table = container.publisher("inventory").tables.outbox
    async with db.read_session() as session:
        earlier = set((await session.scalars(select(table.c.id))).all())
    for key, quantity in (("cross-low", 3), ("cross-out", 2)):
        async with db.session() as session:
            service = InventoryService(
                session, container.publisher("inventory"), actor="test",
                database=cast(Database, NoNewSessions(db)),
            )  # fmt: skip
            reservation, created = await service.reserve_item(item_id, quantity, key, 60)
        assert (created, reservation.status, reservation.quantity) == (True, "active", quantity)

    async with db.read_session() as session:
        item = await session.get(StockItem, item_id)
        assert (item.on_hand, item.reserved) == (5, 5)
        alerts = (
            await session.execute(
                select(StockAlert.kind, StockAlert.available, StockAlert.threshold)
                .where(StockAlert.item_id == item_id, StockAlert.resolved_at.is_(None))
                .order_by(StockAlert.kind)
            )
        ).all()
    assert [tuple(a) for a in alerts] == [("low_stock", 2, 2), ("out_of_stock", 0, 2)]
    async with db.read_session() as session:
        rows = (
            await session.execute(
                select(table.c.event_type, table.c.payload, table.c.occurred_at).where(
                    table.c.id.not_in(earlier),
                    table.c.event_type.in_(
                        [
                            "inventory.stock_changed.v1",
                            "inventory.low_stock.v1",
                            "inventory.out_of_stock.v1",
                        ]
                    ),
                )
            )
        ).all()
    mine = [(t, p, at) for t, p, at in rows if p["item_id"] == str(item_id)]
    low = [(p["available"], p["threshold"], p["variant_available"])
           for t, p, _ in mine if t == "inventory.low_stock.v1"]  # fmt: skip
    out = [(p["on_hand"], p["reserved"], p["variant_available"])
           for t, p, _ in mine if t == "inventory.out_of_stock.v1"]  # fmt: skip
    assert low == [(2, 2, 2)]
    assert out == [(5, 5, 0)]
    if db.dialect == "postgresql":
        # Written by the reservation's statement: stamped with its time.
        by_reservation = {
            p["reserved"]: at
            for t, p, at in mine
            if t == "inventory.stock_changed.v1" and p.get("reason") == "reservation"
        }
        assert {at for t, p, at in mine if t == "inventory.low_stock.v1"} == {by_reservation[3]}
        assert {at for t, p, at in mine if t == "inventory.out_of_stock.v1"} == {by_reservation[5]}
    assert variant_id is not None


async def test_a_reservation_that_waited_for_the_lock_has_the_newer_stock_event(
    container: Container,
) -> None:
    """Two reservations of one item: the one that read the clock first but took the row
    lock second (it waited behind the other) changed the stock last, so its event must be
    the newer one - the product's stock mirror keeps the newest event's figure, and with
    the times read before the wait it kept the other's, one unit too many, for good."""
    db = container.db("inventory")  # (on SQLite the general path, stamped at its write)
    item_id, _ = await stocked_item(container, on_hand=10, threshold=0)
    read_before_waiting = utcnow()
    later = read_before_waiting + timedelta(milliseconds=200)
    for key, clock_reading in (("first-locked", later), ("waited", read_before_waiting)):
        async with db.session() as session:
            service = InventoryService(
                session, container.publisher("inventory"), actor="test",
                database=db, clock=lambda reading=clock_reading: reading,
            )  # fmt: skip
            _, created = await service.reserve_item(item_id, 1, key, 60)
            assert created

    table = container.publisher("inventory").tables.outbox
    async with db.read_session() as session:
        rows = (
            await session.execute(
                select(table.c.payload, table.c.occurred_at).where(
                    table.c.event_type == "inventory.stock_changed.v1"
                )
            )
        ).all()
    by_reserved = {
        p["reserved"]: at for p, at in rows
        if p["item_id"] == str(item_id) and p.get("reason") == "reservation"
    }  # fmt: skip
    # Reserved 1 (the first to lock), then 2 (the one that waited): the second is newer.
    assert set(by_reserved) == {1, 2}
    assert by_reserved[2] > by_reserved[1]
