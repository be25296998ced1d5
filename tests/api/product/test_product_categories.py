from product_helpers import API, CATEGORIES, assert_error, category, create, ok


async def test_tree_create_rename_move(client, make_user):
    manager = await make_user("MANAGER")
    shoes = await category(client, manager, "Shoes")
    trail = await category(client, manager, "Trail Shoes", shoes["id"])
    deep = await category(client, manager, "Ultra", trail["id"])
    bags = await category(client, manager, "Bags")
    assert trail["slug"] == "trail-shoes"
    assert deep["depth"] == 2
    product = await create(client, manager, category_id=deep["id"])

    tree = ok(await client.get(CATEGORIES))
    assert [c["name"] for c in tree] == ["Bags", "Shoes"]  # by position, then name
    assert tree[1]["children"][0]["children"][0]["id"] == deep["id"]

    renamed = ok(
        await client.put(
            f"{CATEGORIES}/{trail['id']}", headers=manager.headers, json={"name": "Trail"}
        )
    )
    assert renamed["name"] == "Trail"
    assert renamed["path"] == trail["path"]
    moved = ok(
        await client.put(
            f"{CATEGORIES}/{trail['id']}", headers=manager.headers, json={"parent_id": bags["id"]}
        )
    )
    assert moved["parent_id"] == bags["id"]
    assert ok(await client.get(f"{CATEGORIES}/{deep['slug']}"))["path"].startswith(bags["path"])
    # The product follows its category: it is now under Bags, no longer under Shoes.
    assert [p["id"] for p in ok(await client.get(API, params={"category": "bags"}))] == [
        product["id"]
    ]
    assert ok(await client.get(API, params={"category": "shoes"})) == []
    tree = ok(await client.get(CATEGORIES))
    assert tree[0]["children"][0]["children"][0]["id"] == deep["id"]
    assert tree[1]["children"] == []

    # Moving a category under its own descendant is refused.
    response = await client.put(
        f"{CATEGORIES}/{bags['id']}", headers=manager.headers, json={"parent_id": deep["id"]}
    )
    assert_error(response, 409, "CATEGORY_CYCLE")


async def test_category_refusals(client, make_user):
    manager = await make_user("MANAGER")
    vendor = await make_user("VENDOR")
    assert_error(
        await client.post(CATEGORIES, headers=vendor.headers, json={"name": "X"}), 403, "FORBIDDEN"
    )
    await category(client, manager, "Shoes")
    response = await client.post(
        CATEGORIES, headers=manager.headers, json={"name": "Other", "slug": "shoes"}
    )
    assert_error(response, 409, "SLUG_TAKEN")
    response = await client.post(
        CATEGORIES,
        headers=manager.headers,
        json={"name": "Orphan", "parent_id": "00000000-0000-0000-0000-000000000001"},
    )
    assert_error(response, 422, "VALIDATION_ERROR")
    assert_error(await client.get(f"{CATEGORIES}/nope"), 404, "CATEGORY_NOT_FOUND")


async def test_delete_non_empty_needs_move_to(client, make_user):
    manager = await make_user("MANAGER")
    shoes = await category(client, manager, "Shoes")
    trail = await category(client, manager, "Trail", shoes["id"])
    other = await category(client, manager, "Other")
    product = await create(client, manager, category_id=shoes["id"])

    response = await client.delete(f"{CATEGORIES}/{shoes['id']}", headers=manager.headers)
    assert_error(response, 409, "CATEGORY_NOT_EMPTY")
    assert ok(await client.get(f"{CATEGORIES}/shoes"))["id"] == shoes["id"]

    response = await client.delete(
        f"{CATEGORIES}/{shoes['id']}", headers=manager.headers, params={"move_to": trail["id"]}
    )
    assert_error(response, 409, "CATEGORY_CYCLE")

    response = await client.delete(
        f"{CATEGORIES}/{shoes['id']}", headers=manager.headers, params={"move_to": other["id"]}
    )
    assert response.status_code == 204
    assert_error(await client.get(f"{CATEGORIES}/shoes"), 404, "CATEGORY_NOT_FOUND")
    assert ok(await client.get(f"{API}/{product['id']}"))["category_id"] == other["id"]
    moved = ok(await client.get(f"{CATEGORIES}/{trail['id']}"))
    assert moved["parent_id"] == other["id"]
    assert moved["path"].startswith(other["path"])

    empty = await category(client, manager, "Empty")
    response = await client.delete(f"{CATEGORIES}/{empty['id']}", headers=manager.headers)
    assert response.status_code == 204
