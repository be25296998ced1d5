"""THE RACE: many concurrent reservations at one hot item, each in its own unit of work,
on SQLite and on PostgreSQL. Exactly the stock on hand is reserved, never more, and the
counts agree with the movement log afterwards."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import func, select
from tests.support import error_reason

from ultramarket.core.container import Container
from ultramarket.core.db import Database
from ultramarket.core.errors import Conflict
from ultramarket.services.inventory.models import (
    Reservation,
    ReservationLine,
    ReservationReturn,
    StockAlert,
    StockItem,
    StockMovement,
    Warehouse,
)
from ultramarket.services.inventory.schemas import StockUpdate
from ultramarket.services.inventory.service import (
    InsufficientStock,
    InventoryService,
    RestockExceedsReturnable,
)

API = "/api/v1/inventory"


async def hot_item(container: Container, on_hand: int) -> uuid.UUID:
    variant_id = uuid.uuid4()
    async with container.db("inventory").session() as session:
        service = InventoryService(session, container.publisher("inventory"), actor="test")
        await service.ensure_variant(variant_id, f"HOT-{variant_id.hex[:6]}")
        item_id = await session.scalar(
            select(StockItem.id).where(StockItem.variant_id == variant_id)
        )
        assert item_id is not None
        await service.update_item(item_id, StockUpdate(on_hand=on_hand))
    return item_id


@pytest.fixture(params=["general path", "one statement"])
def database(request: pytest.FixtureRequest, container: Container) -> Database | None:
    """A race run twice: through the general path, and through the one-statement path
    (hot.py; on PostgreSQL - elsewhere the service takes the general path anyway)."""
    return container.db("inventory") if request.param == "one statement" else None


async def reserve_once(
    container: Container, item_id: uuid.UUID, key: str, database: Database | None = None
) -> str:
    """One reservation through the service layer in a fresh unit of work."""
    try:
        async with container.db("inventory").session() as session:
            service = InventoryService(
                session, container.publisher("inventory"), actor="race", database=database
            )
            await service.reserve_item(item_id, 1, key, 600)
    except InsufficientStock:
        return "short"
    return "ok"


async def audit(container: Container, item_id: uuid.UUID) -> dict[str, int]:
    async with container.db("inventory").read_session() as session:
        item = (
            await session.execute(
                select(StockItem.on_hand, StockItem.reserved).where(StockItem.id == item_id)
            )
        ).one()
        moved = (
            await session.execute(
                select(
                    func.sum(StockMovement.delta_on_hand), func.sum(StockMovement.delta_reserved)
                ).where(StockMovement.item_id == item_id)
            )
        ).one()
        lines = await session.scalar(
            select(func.coalesce(func.sum(ReservationLine.quantity), 0))
            .join(Reservation, Reservation.id == ReservationLine.reservation_id)
            .where(ReservationLine.item_id == item_id, Reservation.status == "active")
        )
        reservations = await session.scalar(select(func.count()).select_from(Reservation))
    return {
        "on_hand": item.on_hand,
        "reserved": item.reserved,
        "moved_on_hand": int(moved[0] or 0),
        "moved_reserved": int(moved[1] or 0),
        "active_lines": int(lines or 0),
        "reservations": int(reservations or 0),
    }


async def test_200_concurrent_reservations_of_50_units(container: Container) -> None:
    item_id = await hot_item(container, 50)
    outcomes = await asyncio.gather(
        *(reserve_once(container, item_id, f"race-{n}") for n in range(200))
    )
    assert outcomes.count("ok") == 50
    assert outcomes.count("short") == 150
    state = await audit(container, item_id)
    assert state == {
        "on_hand": 50,
        "reserved": 50,
        "moved_on_hand": 50,
        "moved_reserved": 50,
        "active_lines": 50,
        "reservations": 50,
    }


async def test_200_concurrent_reservations_over_http(
    client: httpx.AsyncClient, container: Container
) -> None:
    item_id = await hot_item(container, 50)
    headers = {"Authorization": f"Bearer {await container.service_token('order')}"}
    # 200 requests, 64 in flight at once (like the benchmark's connections): more would
    # exhaust the Redis rate limiter's connection pool before reaching the inventory.
    in_flight = asyncio.Semaphore(64)

    async def reserve(n: int) -> httpx.Response:
        async with in_flight:
            return await client.post(
                f"{API}/{item_id}/reserve",
                json={"quantity": 1, "key": f"http-{n}", "ttl_seconds": 600},
                headers=headers,
            )

    responses = await asyncio.gather(*(reserve(n) for n in range(200)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 50, statuses
    assert statuses.count(409) == 150, statuses
    assert {error_reason(r) for r in responses if r.status_code == 409} == {"INSUFFICIENT_STOCK"}
    state = await audit(container, item_id)
    assert (state["on_hand"], state["reserved"]) == (50, 50)
    assert (state["moved_on_hand"], state["moved_reserved"]) == (50, 50)
    assert state["active_lines"] == 50


async def test_same_key_20_times_concurrently_is_one_reservation(
    container: Container, database: Database | None
) -> None:
    item_id = await hot_item(container, 10)
    outcomes = await asyncio.gather(
        *(reserve_once(container, item_id, "one-key", database) for _ in range(20))
    )
    assert outcomes == ["ok"] * 20  # every caller gets the (same) reservation
    state = await audit(container, item_id)
    assert state["reservations"] == 1
    assert (state["reserved"], state["moved_reserved"], state["active_lines"]) == (1, 1, 1)


async def test_same_key_on_both_paths_at_once_is_one_reservation(container: Container) -> None:
    """A retry racing its first try, one on each path (on PostgreSQL the one-statement
    path locks the item before the key, the general path the key first): one
    reservation, every caller answered."""
    item_id = await hot_item(container, 10)
    db = container.db("inventory")
    outcomes = await asyncio.wait_for(
        asyncio.gather(
            *(reserve_once(container, item_id, "both-paths", db if n % 2 else None)
              for n in range(20))
        ),
        60,
    )  # fmt: skip
    assert outcomes == ["ok"] * 20
    state = await audit(container, item_id)
    assert state["reservations"] == 1
    assert (state["reserved"], state["moved_reserved"], state["active_lines"]) == (1, 1, 1)


async def test_concurrent_commits_sell_once(
    container: Container, database: Database | None
) -> None:
    item_id = await hot_item(container, 5)
    assert await reserve_once(container, item_id, "sell-me") == "ok"

    async def commit() -> str:
        try:
            async with container.db("inventory").session() as session:
                await InventoryService(
                    session, container.publisher("inventory"), database=database
                ).commit("sell-me")
        except Conflict as exc:
            return exc.code
        return "ok"

    outcomes = await asyncio.gather(*(commit() for _ in range(10)))
    assert outcomes.count("ok") == 1
    assert set(outcomes) - {"ok"} == {"RESERVATION_ALREADY_COMMITTED"}
    state = await audit(container, item_id)
    assert (state["on_hand"], state["reserved"]) == (4, 0)
    assert (state["moved_on_hand"], state["moved_reserved"]) == (4, 0)


async def test_crossing_multi_line_reservations_do_not_deadlock(
    container: Container, database: Database | None
) -> None:
    a = await hot_item(container, 30)
    b = await hot_item(container, 30)
    async with container.db("inventory").read_session() as session:
        va = await session.scalar(select(StockItem.variant_id).where(StockItem.id == a))
        vb = await session.scalar(select(StockItem.variant_id).where(StockItem.id == b))
    assert va is not None
    assert vb is not None

    async def order(n: int) -> str:
        # Half the orders list the lines the other way round.
        lines = [(va, 1), (vb, 1)] if n % 2 == 0 else [(vb, 1), (va, 1)]
        try:
            async with container.db("inventory").session() as session:
                service = InventoryService(
                    session, container.publisher("inventory"), database=database
                )
                await service.reserve_lines(f"x-{n}", 600, lines)
        except InsufficientStock:
            return "short"
        return "ok"

    outcomes = await asyncio.wait_for(asyncio.gather(*(order(n) for n in range(40))), 60)
    assert outcomes.count("ok") == 30
    assert outcomes.count("short") == 10
    for item_id in (a, b):
        state = await audit(container, item_id)
        assert (state["reserved"], state["moved_reserved"], state["active_lines"]) == (30, 30, 30)


async def sell(container: Container, item_id: uuid.UUID, quantity: int, key: str) -> uuid.UUID:
    """Reserve and commit ``quantity`` of the item under ``key``; returns its variant."""
    async with container.db("inventory").session() as session:
        service = InventoryService(session, container.publisher("inventory"), actor="test")
        reservation, _ = await service.reserve_item(item_id, quantity, key, 600)
    async with container.db("inventory").session() as session:
        await InventoryService(session, container.publisher("inventory")).commit(key)
    return reservation.lines[0].variant_id


async def restock_once(
    container: Container, key: str, reference: str, lines: list[tuple[uuid.UUID, int]] | None
) -> str:
    try:
        async with container.db("inventory").session() as session:
            service = InventoryService(session, container.publisher("inventory"), actor="race")
            await service.restock(key, reference, lines)
    except RestockExceedsReturnable:
        return "over"
    return "ok"


async def restocked(container: Container, item_id: uuid.UUID) -> tuple[int, int, int]:
    """Units the item's lines say were returned, its restock movements, and the restocks kept
    (a refused one keeps no row)."""
    async with container.db("inventory").read_session() as session:
        returned = await session.scalar(
            select(func.sum(ReservationLine.returned)).where(ReservationLine.item_id == item_id)
        )
        moves = await session.scalar(
            select(func.count())
            .select_from(StockMovement)
            .where(StockMovement.item_id == item_id, StockMovement.reason == "restock")
        )
        returns = await session.scalar(select(func.count()).select_from(ReservationReturn))
    return int(returned or 0), int(moves or 0), int(returns or 0)


async def test_20_concurrent_restocks_never_return_more_than_sold(container: Container) -> None:
    item_id = await hot_item(container, 5)
    variant_id = await sell(container, item_id, 5, "sold-5")
    assert (await audit(container, item_id))["on_hand"] == 0

    outcomes = await asyncio.gather(
        *(restock_once(container, "sold-5", f"refund-{n}", [(variant_id, 1)]) for n in range(20))
    )

    assert outcomes.count("ok") == 5
    assert outcomes.count("over") == 15
    state = await audit(container, item_id)
    assert (state["on_hand"], state["reserved"]) == (5, 0)
    assert (state["moved_on_hand"], state["moved_reserved"]) == (5, 0)
    assert await restocked(container, item_id) == (5, 5, 5)


async def test_same_reference_concurrently_restocks_once(container: Container) -> None:
    item_id = await hot_item(container, 10)
    await sell(container, item_id, 4, "sold-4")

    outcomes = await asyncio.gather(
        *(restock_once(container, "sold-4", "cancel", None) for _ in range(10))
    )

    assert outcomes == ["ok"] * 10  # every caller gets the (same) answer
    state = await audit(container, item_id)
    assert (state["on_hand"], state["moved_on_hand"], state["reserved"]) == (10, 10, 0)
    assert await restocked(container, item_id) == (4, 1, 1)


async def test_last_unit_reserved_while_restocked_leaves_no_stale_alert(
    container: Container, database: Database | None
) -> None:
    """The last unit reserved (out of stock) racing a restock of 10: whichever lands
    first, the item ends with 10 available, no open alert, and every out_of_stock event
    is followed by a back_in_stock one. (A crossing's alert and events written after the
    reservation, from its old figures, reopened the alert and published out_of_stock
    after back_in_stock.)"""
    items = [await hot_item(container, 1) for _ in range(12)]
    async with container.db("inventory").session() as session:
        service = InventoryService(session, container.publisher("inventory"), actor="test")
        for item_id in items:  # only 0 available is low: one crossing, out of stock
            await service.update_item(item_id, StockUpdate(low_stock_threshold=0))
    # Warm connections on both sides, so neither starts the race opening them.
    warm = await hot_item(container, len(items))
    await asyncio.gather(
        *(reserve_once(container, warm, f"warm-{n}", database) for n in range(len(items)))
    )
    outbox = container.publisher("inventory").tables.outbox
    async with container.db("inventory").read_session() as session:
        earlier = set((await session.scalars(select(outbox.c.id))).all())

    async def restock(item_id: uuid.UUID) -> None:
        async with container.db("inventory").session() as session:
            await InventoryService(
                session, container.publisher("inventory"), actor="receiving"
            ).update_item(item_id, StockUpdate(delta=10, reason="receipt"))

    outcomes = await asyncio.gather(
        *(
            call
            for n, item_id in enumerate(items)
            for call in (reserve_once(container, item_id, f"last-{n}", database), restock(item_id))
        )
    )
    assert outcomes.count("ok") == len(items)

    async with container.db("inventory").read_session() as session:
        open_alerts = (
            await session.execute(
                select(StockAlert.item_id, StockAlert.kind, StockAlert.available).where(
                    StockAlert.item_id.in_(items), StockAlert.resolved_at.is_(None)
                )
            )
        ).all()
        events = (
            await session.execute(
                select(outbox.c.id, outbox.c.event_type, outbox.c.payload).order_by(
                    outbox.c.occurred_at
                )
            )
        ).all()
    assert [tuple(a) for a in open_alerts] == []
    for item_id in items:
        state = await audit(container, item_id)
        assert (state["on_hand"], state["reserved"]) == (11, 1)
        flips = [
            (kind.split(".")[1], payload["variant_available"])
            for event_id, kind, payload in events
            if event_id not in earlier
            and payload["item_id"] == str(item_id)
            and kind in ("inventory.out_of_stock.v1", "inventory.back_in_stock.v1")
        ]
        # The reservation first: out (0), then back (10). The restock first: no flip.
        assert flips in ([("out_of_stock", 0), ("back_in_stock", 10)], []), flips


async def test_deleting_a_warehouse_while_items_are_stocked_in_it(
    client: httpx.AsyncClient, container: Container
) -> None:
    """Each warehouse is deleted while an item is created in it, at once: either the item
    is created and the delete is refused (409 WAREHOUSE_IN_USE), or the warehouse goes
    and the create finds it gone (404) - never a foreign-key failure (500)."""
    headers = {"Authorization": f"Bearer {await container.service_token('order')}"}
    warehouses = []
    for n in range(12):
        made = await client.post(
            f"{API}/warehouses", json={"code": f"RACE-{n}", "name": f"Race {n}"}, headers=headers
        )
        assert made.status_code == 201, made.text
        warehouses.append(made.json()["data"]["id"])

    async def create(warehouse_id: str) -> httpx.Response:
        body = {"variant_id": str(uuid.uuid4()), "warehouse_id": warehouse_id, "sku": "RACE"}
        return await client.post(API, json=body, headers=headers)

    async def remove(warehouse_id: str) -> httpx.Response:
        return await client.delete(f"{API}/warehouses/{warehouse_id}", headers=headers)

    responses = await asyncio.gather(*(f(w) for w in warehouses for f in (create, remove)))
    for n, warehouse_id in enumerate(warehouses):
        created, removed = responses[2 * n], responses[2 * n + 1]
        outcome = (created.status_code, removed.status_code)
        assert outcome in ((201, 409), (404, 204)), (created.text, removed.text)
        if removed.status_code == 409:
            assert error_reason(removed) == "WAREHOUSE_IN_USE"
        else:
            assert error_reason(created) == "WAREHOUSE_NOT_FOUND"
        async with container.db("inventory").read_session() as session:
            kept = await session.get(Warehouse, uuid.UUID(warehouse_id))
            items = await session.scalar(
                select(func.count())
                .select_from(StockItem)
                .where(StockItem.warehouse_id == uuid.UUID(warehouse_id))
            )
        assert (kept is not None, items) == ((True, 1) if outcome == (201, 409) else (False, 0))
