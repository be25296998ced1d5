"""Alerts and events: low stock at the threshold, out of stock at zero, back in stock."""

from __future__ import annotations

import uuid

from inventory_helpers import API, ok, outbox, stocked
from sqlalchemy import delete

from ultramarket.services.inventory.models import StockAlert
from ultramarket.services.inventory.service import InventoryService


async def test_threshold_crossings_raise_alerts_and_events(client, container, make_user):
    manager = await make_user(role="MANAGER")
    item_id, variant_id = await stocked(container, 10, threshold=3, sku="LAMP")
    assert ok(await client.get(f"{API}/alerts", headers=manager.headers)) == []
    # The item's alerts from when it was new (at 0), resolved when it was stocked.
    earlier = {
        a["id"]
        for a in ok(
            await client.get(
                f"{API}/alerts", params={"include_resolved": "true"}, headers=manager.headers
            )
        )
    }
    before = len(await outbox(container))

    # 10 -> 4 available: above the threshold, only a stock change.
    ok(
        await client.post(
            f"{API}/{item_id}/reserve", json={"quantity": 6, "key": "a"}, headers=manager.headers
        ),
        201,
    )
    # 4 -> 3: at the threshold.
    ok(
        await client.post(
            f"{API}/{item_id}/reserve", json={"quantity": 1, "key": "b"}, headers=manager.headers
        ),
        201,
    )
    alerts = ok(await client.get(f"{API}/alerts", headers=manager.headers))
    assert [(a["kind"], a["sku"], a["available"], a["threshold"]) for a in alerts] == [
        ("low_stock", "LAMP", 3, 3)
    ]
    # 3 -> 0: out of stock.
    ok(
        await client.post(
            f"{API}/{item_id}/reserve", json={"quantity": 3, "key": "c"}, headers=manager.headers
        ),
        201,
    )
    kinds = sorted(
        a["kind"] for a in ok(await client.get(f"{API}/alerts", headers=manager.headers))
    )
    assert kinds == ["low_stock", "out_of_stock"]
    # 0 -> 3: back in stock, still low.
    ok(await client.delete(f"{API}/{item_id}/reserve?key=c", headers=manager.headers))
    alerts = ok(await client.get(f"{API}/alerts", headers=manager.headers))
    assert [a["kind"] for a in alerts] == ["low_stock"]
    # 3 -> 13: above the threshold again, nothing open.
    ok(
        await client.put(
            f"{API}/{item_id}", json={"delta": 10, "reason": "restock"}, headers=manager.headers
        )
    )
    assert ok(await client.get(f"{API}/alerts", headers=manager.headers)) == []
    history = ok(
        await client.get(
            f"{API}/alerts", params={"include_resolved": "true"}, headers=manager.headers
        )
    )
    history = [a for a in history if a["id"] not in earlier]
    assert all(a["resolved_at"] for a in history)
    assert len(history) == 2

    events = (await outbox(container))[before:]
    types = [t for t, _ in events]
    assert types.count("inventory.stock_changed.v1") == 5
    assert types.count("inventory.low_stock.v1") == 1
    assert types.count("inventory.out_of_stock.v1") == 1
    assert types.count("inventory.back_in_stock.v1") == 1
    low = next(p for t, p in events if t == "inventory.low_stock.v1")
    assert low["variant_id"] == str(variant_id)
    assert (low["available"], low["threshold"], low["variant_available"]) == (3, 3, 3)
    out = next(p for t, p in events if t == "inventory.out_of_stock.v1")
    assert (out["on_hand"], out["reserved"], out["available"]) == (10, 10, 0)


async def test_raising_the_threshold_opens_a_low_stock_alert(client, container, make_user):
    manager = await make_user(role="MANAGER")
    item_id, _ = await stocked(container, 8, threshold=2)
    data = ok(
        await client.put(
            f"{API}/{item_id}", json={"low_stock_threshold": 10}, headers=manager.headers
        )
    )
    assert data["low_stock_threshold"] == 10
    alerts = ok(await client.get(f"{API}/alerts", headers=manager.headers))
    assert [(a["kind"], a["available"]) for a in alerts] == [("low_stock", 8)]
    low_items = ok(await client.get(API, params={"low_stock": "true"}, headers=manager.headers))
    assert [i["id"] for i in low_items] == [str(item_id)]


async def open_alerts(client, headers, item_id) -> list[tuple[str, int, int]]:
    alerts = ok(await client.get(f"{API}/alerts", headers=headers))
    return sorted(
        (a["kind"], a["available"], a["threshold"]) for a in alerts if a["item_id"] == str(item_id)
    )


async def test_items_that_start_low_have_their_alerts(client, container, make_user):
    """A new variant's item starts at 0 (threshold 5), an item created with 3 in another
    warehouse at 3: both are listed as low stock, so both have their open alerts, and
    their events are published once."""
    manager = await make_user(role="MANAGER")
    variant_id = uuid.uuid4()
    async with container.db("inventory").session() as session:
        service = InventoryService(session, container.publisher("inventory"), actor="product")
        await service.ensure_variant(variant_id, "NEW-1")
        await service.ensure_variant(variant_id, "NEW-1")  # a redelivery: nothing new
    low = ok(await client.get(API, params={"low_stock": "true"}, headers=manager.headers))
    [item] = [i for i in low if i["variant_id"] == str(variant_id)]
    assert await open_alerts(client, manager.headers, item["id"]) == [
        ("low_stock", 0, 5),
        ("out_of_stock", 0, 5),
    ]

    warehouse = ok(
        await client.post(
            f"{API}/warehouses", json={"code": "SIDE", "name": "Side"}, headers=manager.headers
        ),
        201,
    )
    side = ok(
        await client.post(
            API,
            json={"variant_id": str(variant_id), "warehouse_id": warehouse["id"], "on_hand": 3},
            headers=manager.headers,
        ),
        201,
    )
    assert await open_alerts(client, manager.headers, side["id"]) == [("low_stock", 3, 5)]
    # Still low after another write: still exactly one open alert of each kind.
    ok(await client.put(f"{API}/{side['id']}", json={"delta": 1, "reason": "found"},
                        headers=manager.headers))  # fmt: skip
    assert await open_alerts(client, manager.headers, side["id"]) == [("low_stock", 3, 5)]

    events = [
        (t, p["item_id"], p["available"])
        for t, p in await outbox(container)
        if t in ("inventory.low_stock.v1", "inventory.out_of_stock.v1")
    ]
    assert sorted(events) == sorted(
        [
            ("inventory.low_stock.v1", item["id"], 0),
            ("inventory.out_of_stock.v1", item["id"], 0),
            ("inventory.low_stock.v1", side["id"], 3),
        ]
    )


async def test_a_low_item_without_an_alert_gets_one_on_its_next_write(client, container, make_user):
    """An item that is low with no open alert (stocked before alerts were kept for every
    low item) gets one on its next write, whichever path the write takes (a reservation
    is one statement on PostgreSQL), and only one however many writes follow."""
    manager = await make_user(role="MANAGER")
    item_id, _ = await stocked(container, 4)
    async with container.db("inventory").session() as session:
        await session.execute(delete(StockAlert).where(StockAlert.item_id == item_id))
    assert await open_alerts(client, manager.headers, item_id) == []

    for key in ("a", "b"):
        ok(
            await client.post(
                f"{API}/{item_id}/reserve",
                json={"quantity": 1, "key": key},
                headers=manager.headers,
            ),
            201,
        )
    assert await open_alerts(client, manager.headers, item_id) == [("low_stock", 3, 5)]
    low = [p for t, p in await outbox(container) if t == "inventory.low_stock.v1"]
    assert [(p["item_id"], p["available"]) for p in low][-1:] == [(str(item_id), 3)]
