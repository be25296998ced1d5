"""Items: listing, reading, setting and adjusting stock, the audit log, and who may."""

from __future__ import annotations

import uuid

from inventory_helpers import API, assert_audit, assert_error, item_state, ok, outbox, stocked

from ultramarket.services.inventory.models import DEFAULT_WAREHOUSE_ID


async def test_get_item_shows_computed_available(client, container, make_user):
    manager = await make_user(role="MANAGER")
    item_id, variant_id = await stocked(container, 12, sku="MUG-RED")
    data = ok(await client.get(f"{API}/{item_id}", headers=manager.headers))
    assert data["id"] == str(item_id)
    assert data["variant_id"] == str(variant_id)
    assert data["sku"] == "MUG-RED"
    assert data["warehouse_id"] == str(DEFAULT_WAREHOUSE_ID)
    assert (data["on_hand"], data["reserved"], data["available"]) == (12, 0, 12)
    assert data["low_stock_threshold"] == 5


async def test_unknown_item_is_404(client, make_user):
    manager = await make_user(role="MANAGER")
    response = await client.get(f"{API}/{uuid.uuid4()}", headers=manager.headers)
    assert_error(response, 404, "ITEM_NOT_FOUND")


async def test_list_filters_by_sku_warehouse_and_low_stock(client, container, make_user):
    manager = await make_user(role="MANAGER")
    await stocked(container, 100, sku="TEE-S")
    await stocked(container, 2, sku="TEE-M")
    await stocked(container, 0, sku="TEE-L")
    body = (await client.get(API, headers=manager.headers)).json()
    assert body["meta"]["total"] == 3
    assert [i["sku"] for i in body["data"]] == ["TEE-L", "TEE-M", "TEE-S"]
    data = ok(await client.get(API, params={"sku": "TEE-M"}, headers=manager.headers))
    assert [i["sku"] for i in data] == ["TEE-M"]
    data = ok(await client.get(API, params={"low_stock": "true"}, headers=manager.headers))
    assert sorted(i["sku"] for i in data) == ["TEE-L", "TEE-M"]
    data = ok(await client.get(API, params={"warehouse": "MAIN"}, headers=manager.headers))
    assert len(data) == 3
    data = ok(
        await client.get(API, params={"warehouse": str(uuid.uuid4())}, headers=manager.headers)
    )
    assert data == []
    data = ok(await client.get(API, params={"sort": "-available"}, headers=manager.headers))
    assert [i["sku"] for i in data] == ["TEE-S", "TEE-M", "TEE-L"]
    response = await client.get(API, params={"sort": "price"}, headers=manager.headers)
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_set_and_adjust_on_hand_are_movements(client, container, make_user):
    manager = await make_user(role="MANAGER")
    item_id, _ = await stocked(container, 10)
    data = ok(await client.put(f"{API}/{item_id}", json={"on_hand": 25}, headers=manager.headers))
    assert (data["on_hand"], data["available"]) == (25, 25)
    data = ok(
        await client.put(
            f"{API}/{item_id}", json={"delta": -5, "reason": "damaged"}, headers=manager.headers
        )
    )
    assert data["on_hand"] == 20
    moves = ok(await client.get(f"{API}/{item_id}/movements", headers=manager.headers))
    assert [(m["delta_on_hand"], m["reason"]) for m in moves][:2] == [
        (-5, "damaged"),
        (15, "count"),
    ]
    assert moves[0]["actor"] == manager.id
    assert_audit(await item_state(container, item_id))
    changed = [p for t, p in await outbox(container) if t == "inventory.stock_changed.v1"]
    assert changed[-1]["on_hand"] == 20
    assert changed[-1]["variant_available"] == 20
    assert changed[-1]["reason"] == "damaged"


async def test_on_hand_cannot_go_below_reserved(client, container, make_user):
    manager = await make_user(role="MANAGER")
    item_id, _ = await stocked(container, 10)
    ok(
        await client.post(
            f"{API}/{item_id}/reserve", json={"quantity": 6, "key": "k-1"}, headers=manager.headers
        ),
        201,
    )
    response = await client.put(f"{API}/{item_id}", json={"on_hand": 5}, headers=manager.headers)
    error = assert_error(response, 409, "STOCK_BELOW_RESERVED")
    assert error["details"][0]["reserved"] == 6
    response = await client.put(
        f"{API}/{item_id}", json={"delta": -5, "reason": "lost"}, headers=manager.headers
    )
    assert_error(response, 409, "STOCK_BELOW_RESERVED")
    state = await item_state(container, item_id)
    assert (state["on_hand"], state["reserved"]) == (10, 6)
    assert_audit(state)


async def test_bad_stock_updates_are_422(client, container, make_user):
    manager = await make_user(role="MANAGER")
    item_id, _ = await stocked(container, 10)
    for body in (
        {"on_hand": -1},
        {"delta": 3},  # no reason
        {"delta": 0, "reason": "nothing"},
        {"on_hand": 3, "delta": 1, "reason": "both"},
        {},
        {"on_hand": "many"},
    ):
        response = await client.put(f"{API}/{item_id}", json=body, headers=manager.headers)
        assert_error(response, 422, "VALIDATION_ERROR")
    assert (await item_state(container, item_id))["on_hand"] == 10


async def test_customers_are_refused(client, container, make_user):
    customer = await make_user()
    item_id, _ = await stocked(container, 10)
    for method, path, body in (
        ("GET", API, None),
        ("GET", f"{API}/{item_id}", None),
        ("PUT", f"{API}/{item_id}", {"on_hand": 1}),
        ("POST", f"{API}/{item_id}/reserve", {"quantity": 1, "key": "x"}),
        ("DELETE", f"{API}/{item_id}/reserve?key=x", None),
        ("GET", f"{API}/alerts", None),
        ("GET", f"{API}/warehouses", None),
        ("POST", f"{API}/reservations", {"key": "x", "lines": []}),
    ):
        response = await client.request(method, path, json=body, headers=customer.headers)
        assert_error(response, 403, "FORBIDDEN")
    response = await client.get(f"{API}/{item_id}")
    assert_error(response, 401, "UNAUTHENTICATED")


async def test_availability_is_public_and_sums_warehouses(client, container, make_user):
    manager = await make_user(role="MANAGER")
    _item_id, variant_id = await stocked(container, 7)
    warehouse = ok(
        await client.post(
            f"{API}/warehouses", json={"code": "EAST", "name": "East"}, headers=manager.headers
        ),
        201,
    )
    second = ok(
        await client.post(
            API,
            json={"variant_id": str(variant_id), "warehouse_id": warehouse["id"], "on_hand": 4},
            headers=manager.headers,
        ),
        201,
    )
    assert second["sku"].startswith("SKU-")
    assert second["on_hand"] == 4
    unknown = uuid.uuid4()
    data = ok(
        await client.get(
            f"{API}/availability",
            params={"variant_id": [str(variant_id), str(unknown)]},
        )
    )
    assert {d["variant_id"]: d["available"] for d in data} == {
        str(variant_id): 11,
        str(unknown): 0,
    }
    response = await client.post(
        API,
        json={"variant_id": str(variant_id), "warehouse_id": warehouse["id"]},
        headers=manager.headers,
    )
    assert_error(response, 409, "ITEM_EXISTS")
    response = await client.get(f"{API}/availability")
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_on_hand_never_exceeds_the_maximum(client, container, make_user):
    """Stock is at most 1,000,000,000 units (the schema's maximum, and what a 32-bit
    count holds on PostgreSQL): a delta past it is a 409 and nothing changes."""
    manager = await make_user(role="MANAGER")
    item_id, _ = await stocked(container, 1_000_000_000)
    for _ in range(2):
        response = await client.put(
            f"{API}/{item_id}",
            json={"delta": 1_000_000_000, "reason": "receipt"},
            headers=manager.headers,
        )
        error = assert_error(response, 409, "STOCK_LIMIT_EXCEEDED")
        assert error["details"] == [
            {"on_hand": 1_000_000_000, "requested_delta": 1_000_000_000, "maximum": 1_000_000_000}
        ]
    state = await item_state(container, item_id)
    assert (state["on_hand"], state["reserved"]) == (1_000_000_000, 0)
    assert_audit(state)
    # Up to the maximum exactly is fine.
    ok(await client.put(f"{API}/{item_id}", json={"delta": -7, "reason": "lost"},
                        headers=manager.headers))  # fmt: skip
    data = ok(await client.put(f"{API}/{item_id}", json={"delta": 7, "reason": "found"},
                               headers=manager.headers))  # fmt: skip
    assert data["on_hand"] == 1_000_000_000
    response = await client.put(
        f"{API}/{item_id}", json={"delta": 1, "reason": "found"}, headers=manager.headers
    )
    assert_error(response, 409, "STOCK_LIMIT_EXCEEDED")
    assert_audit(await item_state(container, item_id))
