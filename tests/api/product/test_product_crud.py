from product_helpers import (
    API,
    assert_error,
    count,
    create,
    ok,
    outbox_payloads,
    outbox_types,
    product,
    variant,
)


async def test_manager_creates_a_product_with_variants(client, make_user, container):
    manager = await make_user("MANAGER")
    data = await create(
        client,
        manager,
        variants=[
            variant(sku="TR-42", price="89.99", compare_at_price="119.99"),
            variant(sku="TR-43", price=79.5, options={"size": "L"}),
        ],
    )
    assert data["slug"] == "trail-runner-shoe"
    assert data["rating"] == 0
    assert data["review_count"] == 0
    assert data["sales_count"] == 0
    assert data["price"] == "79.50"
    assert data["currency"] == "USD"
    first = data["variants"][0]
    assert first["sku"] == "TR-42"
    assert first["price"] == "89.99"
    assert first["compare_at_price"] == "119.99"
    assert first["discount_percent"] == 25
    assert first["price_formatted"] == "$89.99"
    assert first["available"] == 0
    assert first["in_stock"] is False
    assert data["variants"][1]["discount_percent"] is None
    assert await outbox_types(container) == ["product.created.v1"]

    public = ok(await client.get(f"{API}/{data['slug']}"))
    assert public["id"] == data["id"]
    by_id = ok(await client.get(f"{API}/{data['id']}", headers={"Accept-Language": "de-DE"}))
    assert by_id["variants"][0]["price_formatted"] == "89,99\xa0$"


async def test_price_formatting_follows_locale_param(client, make_user):
    manager = await make_user("MANAGER")
    data = await create(client, manager, variants=[variant(price="1234.5", currency="EUR")])
    fr = ok(await client.get(f"{API}/{data['id']}?locale=fr_FR"))
    assert fr["variants"][0]["price_formatted"] == "1\u202f234,50\xa0€"


async def test_slug_is_unique_and_generated(client, make_user):
    manager = await make_user("MANAGER")
    first = await create(client, manager)
    second = await create(client, manager)
    assert (first["slug"], second["slug"]) == ("trail-runner-shoe", "trail-runner-shoe-2")


async def test_bad_prices_are_refused_and_nothing_is_written(client, make_user, container):
    manager = await make_user("MANAGER")
    bad = [
        variant(price="-1.00"),
        variant(price="abc"),
        variant(price="10.00", compare_at_price="9.99"),
        variant(price="10.001"),
        variant(price="100", currency="JPY", compare_at_price="100.5"),
    ]
    for v in bad:
        response = await client.post(API, headers=manager.headers, json=product(variants=[v]))
        assert_error(response, 422, "VALIDATION_ERROR")
    assert await count(container, "product") == 0
    assert await count(container, "product_variant") == 0
    assert await outbox_types(container) == []


async def test_duplicate_sku_and_slug_are_409(client, make_user, container):
    manager = await make_user("MANAGER")
    await create(client, manager, slug="the-shoe", variants=[variant(sku="DUP-1")])
    response = await client.post(
        API, headers=manager.headers, json=product(name="Other", variants=[variant(sku="DUP-1")])
    )
    assert_error(response, 409, "SKU_TAKEN")
    response = await client.post(API, headers=manager.headers, json=product(slug="the-shoe"))
    assert_error(response, 409, "SLUG_TAKEN")
    assert await count(container, "product") == 1
    assert await count(container, "product_variant") == 1
    assert await outbox_types(container) == ["product.created.v1"]


async def test_unknown_category_is_422(client, make_user, container):
    manager = await make_user("MANAGER")
    response = await client.post(
        API,
        headers=manager.headers,
        json=product(category_id="00000000-0000-0000-0000-000000000001"),
    )
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "category_id"
    assert await count(container, "product") == 0


async def test_customers_and_anonymous_cannot_create(client, make_user):
    customer = await make_user()
    assert_error(await client.post(API, json=product()), 401, "UNAUTHENTICATED")
    assert_error(await client.post(API, headers=customer.headers, json=product()), 403, "FORBIDDEN")


async def test_vendor_manages_only_own_products(client, make_user, container):
    vendor = await make_user("VENDOR")
    other = await make_user("VENDOR")
    manager = await make_user("MANAGER")
    mine = await create(client, vendor)
    assert mine["vendor_id"] == vendor.id

    response = await client.patch(
        f"{API}/{mine['id']}", headers=other.headers, json={"name": "Hijacked"}
    )
    assert_error(response, 403, "NOT_PRODUCT_OWNER")
    assert_error(
        await client.delete(f"{API}/{mine['id']}", headers=other.headers), 403, "NOT_PRODUCT_OWNER"
    )
    assert ok(await client.get(f"{API}/{mine['id']}"))["name"] == "Trail Runner Shoe"
    assert await outbox_types(container) == ["product.created.v1"]

    renamed = ok(
        await client.patch(f"{API}/{mine['id']}", headers=vendor.headers, json={"name": "Mine"})
    )
    assert renamed["name"] == "Mine"
    by_manager = ok(
        await client.patch(f"{API}/{mine['id']}", headers=manager.headers, json={"featured": True})
    )
    assert by_manager["featured"] is True

    # A vendor cannot create in someone else's name; a manager may set the vendor.
    response = await client.post(API, headers=vendor.headers, json=product(vendor_id=other.id))
    assert_error(response, 403, "FORBIDDEN")
    assigned = await create(client, manager, vendor_id=other.id)
    assert assigned["vendor_id"] == other.id


async def test_update_publishes_snapshot_and_price_changes(client, make_user, container):
    manager = await make_user("MANAGER")
    data = await create(
        client, manager, variants=[variant(sku="A-1", price="10.00"), variant(sku="A-2")]
    )
    body = product(
        name="Trail Runner Shoe",
        variants=[variant(sku="A-1", price="12.00"), variant(sku="A-2", price="19.99")],
    )
    updated = ok(await client.put(f"{API}/{data['id']}", headers=manager.headers, json=body))
    assert [v["price"] for v in updated["variants"]] == ["12.00", "19.99"]
    assert updated["variants"][0]["id"] == data["variants"][0]["id"]
    assert await outbox_types(container) == [
        "product.created.v1",
        "product.updated.v1",
        "product.price_changed.v1",
    ]
    (change,) = await outbox_payloads(container, "product.price_changed.v1")
    assert (change["sku"], change["old_amount"], change["new_amount"]) == ("A-1", 1000, 1200)
    (snapshot,) = await outbox_payloads(container, "product.updated.v1")
    assert [v["price_amount"] for v in snapshot["variants"]] == [1200, 1999]


async def test_cache_is_invalidated_after_update(client, make_user):
    manager = await make_user("MANAGER")
    data = await create(client, manager)
    assert ok(await client.get(f"{API}/{data['slug']}"))["name"] == "Trail Runner Shoe"
    listed = ok(await client.get(API))
    assert listed[0]["name"] == "Trail Runner Shoe"
    ok(await client.patch(f"{API}/{data['id']}", headers=manager.headers, json={"name": "Road"}))
    assert ok(await client.get(f"{API}/{data['slug']}"))["name"] == "Road"
    assert ok(await client.get(API))[0]["name"] == "Road"


async def test_old_slug_still_resolves(client, make_user):
    manager = await make_user("MANAGER")
    data = await create(client, manager)
    ok(await client.patch(f"{API}/{data['id']}", headers=manager.headers, json={"slug": "road"}))
    old = ok(await client.get(f"{API}/trail-runner-shoe"))
    assert old["id"] == data["id"]
    assert old["slug"] == "road"
    # The old slug stays reserved for this product.
    response = await client.post(
        API, headers=manager.headers, json=product(slug="trail-runner-shoe")
    )
    assert_error(response, 409, "SLUG_TAKEN")


async def test_archive_hides_from_public_but_not_owner(client, make_user, container):
    vendor = await make_user("VENDOR")
    manager = await make_user("MANAGER")
    data = await create(client, vendor)
    archived = ok(await client.delete(f"{API}/{data['id']}", headers=vendor.headers))
    assert archived["status"] == "archived"
    assert_error(await client.get(f"{API}/{data['id']}"), 404, "PRODUCT_NOT_FOUND")
    assert ok(await client.get(API)) == []
    assert ok(await client.get(f"{API}/{data['id']}", headers=vendor.headers))["id"] == data["id"]
    assert ok(await client.get(f"{API}/{data['id']}", headers=manager.headers))["id"] == data["id"]
    types = await outbox_types(container)
    assert types == ["product.created.v1", "product.archived.v1"]
    (event,) = await outbox_payloads(container, "product.archived.v1")
    assert event["variant_ids"] == [data["variants"][0]["id"]]


async def test_drafts_are_not_public(client, make_user):
    manager = await make_user("MANAGER")
    data = await create(client, manager, status="draft")
    assert_error(await client.get(f"{API}/{data['slug']}"), 404, "PRODUCT_NOT_FOUND")
    assert ok(await client.get(API)) == []
    assert (
        ok(await client.get(f"{API}/{data['slug']}", headers=manager.headers))["status"] == "draft"
    )


async def test_unknown_product_is_404(client, make_user):
    manager = await make_user("MANAGER")
    assert_error(await client.get(f"{API}/nope"), 404, "PRODUCT_NOT_FOUND")
    response = await client.patch(f"{API}/nope", headers=manager.headers, json={"name": "x"})
    assert_error(response, 404, "PRODUCT_NOT_FOUND")
