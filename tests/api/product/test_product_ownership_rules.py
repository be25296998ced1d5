"""Ownership and merchandising rules found in review: PUT keeps the vendor, variant ids
are the server's, one currency a product, only staff feature products."""

from __future__ import annotations

import uuid

from product_helpers import API, assert_error, count, create, ok, product, variant


async def test_manager_put_without_vendor_keeps_the_vendor(client, make_user):
    vendor = await make_user("VENDOR")
    manager = await make_user("MANAGER")
    created = await create(client, vendor)
    assert created["vendor_id"] == vendor.id

    body = product(name="Renamed by staff", variants=created["variants"])
    body["variants"] = [
        {k: v[k] for k in ("id", "sku", "options", "price", "currency")}
        for v in created["variants"]
    ]
    replaced = ok(await client.put(f"{API}/{created['id']}", headers=manager.headers, json=body))
    assert replaced["vendor_id"] == vendor.id
    assert replaced["name"] == "Renamed by staff"

    # The vendor can still replace their own product, with or without naming themselves.
    again = ok(await client.put(f"{API}/{created['id']}", headers=vendor.headers, json=body))
    assert again["vendor_id"] == vendor.id
    mine = dict(body, vendor_id=vendor.id)
    ok(await client.put(f"{API}/{created['id']}", headers=vendor.headers, json=mine))
    theirs = dict(body, vendor_id=str(uuid.uuid4()))
    assert_error(
        await client.put(f"{API}/{created['id']}", headers=vendor.headers, json=theirs),
        403,
        "FORBIDDEN",
    )


async def test_variant_ids_are_chosen_by_the_server_on_create(client, make_user):
    manager = await make_user("MANAGER")
    first = await create(client, manager)
    taken = first["variants"][0]["id"]
    second = await create(client, manager, variants=[variant(id=taken)])
    assert second["variants"][0]["id"] != taken


async def test_a_product_has_one_currency(client, container, make_user):
    manager = await make_user("MANAGER")
    before = await count(container, "product")
    response = await client.post(
        API,
        headers=manager.headers,
        json=product(variants=[variant(currency="USD"), variant(currency="JPY", price="1500")]),
    )
    assert_error(response, 422, "VALIDATION_ERROR")
    assert await count(container, "product") == before


async def test_only_staff_feature_products(client, make_user):
    vendor = await make_user("VENDOR")
    manager = await make_user("MANAGER")
    refused = await client.post(API, headers=vendor.headers, json=product(featured=True))
    assert_error(refused, 403, "NOT_ALLOWED_TO_FEATURE")

    created = await create(client, vendor)
    patch = await client.patch(
        f"{API}/{created['id']}", headers=vendor.headers, json={"featured": True}
    )
    assert_error(patch, 403, "NOT_ALLOWED_TO_FEATURE")
    featured = ok(
        await client.patch(
            f"{API}/{created['id']}", headers=manager.headers, json={"featured": True}
        )
    )
    assert featured["featured"] is True
