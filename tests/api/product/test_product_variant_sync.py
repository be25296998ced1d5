"""Editing a product's variants: each entry keeps the variant its id names, else the one
of its SKU (unless an entry claimed that one by id); SKUs may move between the product's
variants in one edit; SKUs are unique case-insensitively across products."""

from __future__ import annotations

from product_helpers import API, assert_error, create, ok, outbox_payloads, variant


def shown(data: dict) -> list[tuple[str, str, str]]:
    return [(v["id"], v["sku"], v["price"]) for v in data["variants"]]


async def test_a_renamed_variant_and_a_new_one_on_its_old_sku(client, make_user):
    manager = await make_user("MANAGER")
    created = await create(client, manager, variants=[variant(sku="OLD-1", price="5.00")])
    a = created["variants"][0]["id"]

    body = {
        "variants": [
            {"id": a, "sku": "RENAMED-1", "price": "5.00"},
            {"sku": "OLD-1", "price": "7.00"},
        ]
    }
    data = ok(await client.patch(f"{API}/{created['id']}", headers=manager.headers, json=body))

    (first, second) = shown(data)
    assert first == (a, "RENAMED-1", "5.00")  # A keeps its id and stock, renamed
    assert second[0] != a  # a new variant
    assert second[1:] == ("OLD-1", "7.00")
    assert data["price"] == "5.00"
    again = ok(await client.get(f"{API}/{created['id']}"))
    assert shown(again) == shown(data)


async def test_the_entry_order_does_not_change_which_variant_is_kept(client, make_user):
    manager = await make_user("MANAGER")
    created = await create(client, manager, variants=[variant(sku="OLD-2", price="5.00")])
    a = created["variants"][0]["id"]

    body = {
        "variants": [
            {"sku": "old-2", "price": "7.00"},  # listed first: still not A (claimed by id)
            {"id": a, "sku": "RENAMED-2", "price": "5.00"},
        ]
    }
    data = ok(await client.patch(f"{API}/{created['id']}", headers=manager.headers, json=body))

    (first, second) = shown(data)
    assert first[0] != a
    assert first[1:] == ("old-2", "7.00")
    assert second == (a, "RENAMED-2", "5.00")


async def test_two_variants_swap_their_skus(client, make_user, container):
    manager = await make_user("MANAGER")
    created = await create(
        client, manager, variants=[variant(sku="AA-1", price="1.00"), variant(sku="BB-1")]
    )
    a, b = (v["id"] for v in created["variants"])

    body = {
        "variants": [
            {"id": a, "sku": "BB-1", "price": "1.00"},
            {"id": b, "sku": "AA-1", "price": "2.00"},
        ]
    }
    data = ok(await client.put(f"{API}/{created['id']}", headers=manager.headers, json={
        "name": created["name"], **body
    }))  # fmt: skip

    assert shown(data) == [(a, "BB-1", "1.00"), (b, "AA-1", "2.00")]
    assert data["price"] == "1.00"
    # The snapshot consumers see carries the final SKUs, never a placeholder.
    updated = (await outbox_payloads(container, "product.updated.v1"))[-1]
    assert [v["sku"] for v in updated["variants"]] == ["BB-1", "AA-1"]


async def test_a_sku_moves_from_a_removed_variant_to_a_kept_one(client, make_user):
    manager = await make_user("MANAGER")
    created = await create(client, manager, variants=[variant(sku="GONE-1"), variant(sku="KEPT-1")])
    kept = created["variants"][1]["id"]

    body = {
        "variants": [
            {"id": kept, "sku": "GONE-1", "price": "3.00"},
            {"sku": "NEW-1", "price": "4.00"},
        ]
    }
    data = ok(await client.patch(f"{API}/{created['id']}", headers=manager.headers, json=body))

    assert shown(data)[0][:2] == (kept, "GONE-1")
    assert [v["sku"] for v in data["variants"]] == ["GONE-1", "NEW-1"]


async def test_two_entries_for_one_variant_are_refused(client, make_user):
    manager = await make_user("MANAGER")
    created = await create(client, manager, variants=[variant(sku="ONE-1")])
    a = created["variants"][0]["id"]

    body = {
        "variants": [
            {"id": a, "sku": "ONE-1", "price": "1.00"},
            {"id": a, "sku": "ONE-2", "price": "2.00"},
        ]
    }
    response = await client.patch(f"{API}/{created['id']}", headers=manager.headers, json=body)

    assert_error(response, 422, "VALIDATION_ERROR")
    assert shown(ok(await client.get(f"{API}/{created['id']}")))[0][1] == "ONE-1"


async def test_a_sku_taken_by_another_product_in_another_case_is_409(client, make_user):
    manager = await make_user("MANAGER")
    await create(client, manager, name="First", variants=[variant(sku="case-1")])

    response = await client.post(
        API, headers=manager.headers, json={"name": "Second", "variants": [variant(sku="CASE-1")]}
    )
    assert_error(response, 409, "SKU_TAKEN")

    second = await create(client, manager, name="Second", variants=[variant(sku="OTHER-1")])
    body = {"variants": [{"sku": "Case-1", "price": "1.00"}]}
    response = await client.patch(f"{API}/{second['id']}", headers=manager.headers, json=body)
    assert_error(response, 409, "SKU_TAKEN")
    # The product's own SKU in another case is the same variant, renamed.
    body = {"variants": [{"sku": "other-1", "price": "1.00"}]}
    data = ok(await client.patch(f"{API}/{second['id']}", headers=manager.headers, json=body))
    assert shown(data) == [(second["variants"][0]["id"], "other-1", "1.00")]
