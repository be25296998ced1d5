"""Warehouses: the default one from the migration, CRUD, and refusals."""

from __future__ import annotations

import uuid

from inventory_helpers import API, assert_error, ok, stocked

from ultramarket.services.inventory.models import DEFAULT_WAREHOUSE_ID


async def test_warehouse_crud(client, container, make_user):
    manager = await make_user(role="MANAGER")
    listed = ok(await client.get(f"{API}/warehouses", headers=manager.headers))
    assert [(w["id"], w["code"], w["is_default"]) for w in listed] == [
        (str(DEFAULT_WAREHOUSE_ID), "MAIN", True)
    ]
    created = ok(
        await client.post(
            f"{API}/warehouses",
            json={"code": "WEST", "name": "West coast", "address": "1 Dock Rd"},
            headers=manager.headers,
        ),
        201,
    )
    assert created["is_default"] is False
    response = await client.post(
        f"{API}/warehouses", json={"code": "WEST", "name": "Again"}, headers=manager.headers
    )
    assert_error(response, 409, "DUPLICATE_WAREHOUSE")
    updated = ok(
        await client.put(
            f"{API}/warehouses/{created['id']}", json={"name": "West"}, headers=manager.headers
        )
    )
    assert (updated["name"], updated["code"]) == ("West", "WEST")
    got = ok(await client.get(f"{API}/warehouses/{created['id']}", headers=manager.headers))
    assert got["name"] == "West"
    response = await client.delete(f"{API}/warehouses/{created['id']}", headers=manager.headers)
    assert response.status_code == 204
    response = await client.get(f"{API}/warehouses/{created['id']}", headers=manager.headers)
    assert_error(response, 404, "WAREHOUSE_NOT_FOUND")
    response = await client.post(
        f"{API}/warehouses", json={"code": "bad code!", "name": "x"}, headers=manager.headers
    )
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_default_or_used_warehouse_cannot_be_deleted(client, container, make_user):
    manager = await make_user(role="MANAGER")
    response = await client.delete(
        f"{API}/warehouses/{DEFAULT_WAREHOUSE_ID}", headers=manager.headers
    )
    assert_error(response, 409, "DEFAULT_WAREHOUSE")
    _, variant_id = await stocked(container, 1)
    warehouse = ok(
        await client.post(
            f"{API}/warehouses", json={"code": "N", "name": "North"}, headers=manager.headers
        ),
        201,
    )
    ok(
        await client.post(
            API,
            json={"variant_id": str(variant_id), "warehouse_id": warehouse["id"]},
            headers=manager.headers,
        ),
        201,
    )
    response = await client.delete(f"{API}/warehouses/{warehouse['id']}", headers=manager.headers)
    assert_error(response, 409, "WAREHOUSE_IN_USE")
    response = await client.post(
        API,
        json={"variant_id": str(uuid.uuid4()), "warehouse_id": warehouse["id"]},
        headers=manager.headers,
    )
    assert_error(response, 422, "VALIDATION_ERROR")  # no sku known for a new variant
