"""Alerts and events: low stock at the threshold, out of stock at zero, back in stock."""

from __future__ import annotations

from inventory_helpers import API, ok, outbox, stocked


async def test_threshold_crossings_raise_alerts_and_events(client, container, make_user):
    manager = await make_user(role="MANAGER")
    item_id, variant_id = await stocked(container, 10, threshold=3, sku="LAMP")
    assert ok(await client.get(f"{API}/alerts", headers=manager.headers)) == []
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
