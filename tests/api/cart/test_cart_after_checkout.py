"""After a confirmed checkout only what was bought leaves the cart: lines the customer
added, or units they added to a line, while the order was being paid stay; the coupon
goes only when it is the one the order used."""

from __future__ import annotations

import uuid
from typing import Any

from cart_helpers import API, add, assert_error, configure, make_coupon, make_variant, ok
from tests.shop import checkout, checkout_body

from ultramarket.services.cart.client import CartClient
from ultramarket.services.inventory.client import InventoryClient


def quantities(cart: dict[str, Any]) -> dict[str, int]:
    return {i["variant_id"]: i["quantity"] for i in cart["items"]}


async def test_checkout_keeps_what_was_added_while_the_order_was_placed(
    client, container, drain, make_user, monkeypatch
):
    configure(container)
    manager = await make_user(role="MANAGER")
    a = await make_variant(client, container, drain, manager, price="10.00", stock=20)
    b = await make_variant(client, container, drain, manager, price="3.00", stock=20)
    user = await make_user()
    await add(client, a["variant_id"], 2, headers=user.headers)
    coupon = await make_coupon(client, manager, type="percentage", value="10")
    ok(await client.post(f"{API}/coupon", json={"code": coupon["code"]}, headers=user.headers))

    # The class the order service's client is (its in-process twin in all-in-one mode).
    used = type(container.client(InventoryClient, "order"))
    real = used.commit

    async def commit_while_the_customer_shops(self: InventoryClient, key: str) -> Any:
        # Another tab, after the quote and the charge, before the order is confirmed
        # and the cart emptied: a new line, and 3 more of A.
        await add(client, b["variant_id"], 1, headers=user.headers)
        await add(client, a["variant_id"], 3, headers=user.headers)
        return await real(self, key)

    monkeypatch.setattr(used, "commit", commit_while_the_customer_shops)

    order = ok(await checkout(client, user, checkout_body()), 201)
    assert order["status"] == "confirmed"
    assert [(i["variant_id"], i["quantity"]) for i in order["items"]] == [(a["variant_id"], 2)]

    cart = ok(await client.get(API, headers=user.headers))
    assert quantities(cart) == {a["variant_id"]: 3, b["variant_id"]: 1}
    assert cart["coupon"] is None  # the order used it


async def test_remove_ordered_subtracts_the_lines_and_only_the_used_coupon(
    client, container, drain, make_user
):
    configure(container)
    manager = await make_user(role="MANAGER")
    a = await make_variant(client, container, drain, manager, price="10.00")
    b = await make_variant(client, container, drain, manager, price="3.00")
    c = await make_variant(client, container, drain, manager, price="1.00")
    user = await make_user()
    user_id = uuid.UUID(user.id)
    carts = container.client(CartClient, "order")
    used = await make_coupon(client, manager, type="percentage", value="10")
    later = await make_coupon(client, manager, type="percentage", value="5")

    await add(client, a["variant_id"], 2, headers=user.headers)
    await add(client, c["variant_id"], 4, headers=user.headers)
    ok(await client.post(f"{API}/coupon", json={"code": used["code"]}, headers=user.headers))
    quote = await carts.checkout_quote(user_id, country="US", region="CA")
    ordered = [(i.variant_id, i.quantity) for i in quote.items]
    # While the order is paid: B is added, C lowered to 1, another coupon applied.
    await add(client, b["variant_id"], 1, headers=user.headers)
    line_c = next(
        i
        for i in ok(await client.get(API, headers=user.headers))["items"]
        if i["variant_id"] == c["variant_id"]
    )
    ok(await client.put(f"{API}/items/{line_c['id']}", json={"quantity": 1}, headers=user.headers))
    ok(await client.post(f"{API}/coupon", json={"code": later["code"]}, headers=user.headers))

    assert await carts.remove_ordered(user_id, ordered, coupon=used["code"]) is True

    cart = ok(await client.get(API, headers=user.headers))
    assert quantities(cart) == {b["variant_id"]: 1}  # A and C were bought (C's 1 <= 4)
    assert cart["coupon"]["code"] == later["code"]  # not the one the order used
    assert cart["currency"] == "USD"

    # The used coupon goes (any case); an empty cart drops its currency too.
    assert await carts.remove_ordered(user_id, [(uuid.UUID(b["variant_id"]), 1)]) is True
    cart = ok(await client.get(API, headers=user.headers))
    assert (cart["items"], cart["coupon"]["code"]) == ([], later["code"])
    await add(client, a["variant_id"], 1, headers=user.headers)
    assert await carts.remove_ordered(
        user_id, [(uuid.UUID(a["variant_id"]), 1)], coupon=later["code"].lower()
    )
    cart = ok(await client.get(API, headers=user.headers))
    assert (cart["items"], cart["coupon"]) == ([], None)

    assert await carts.remove_ordered(uuid.uuid4(), ordered) is False  # no cart
    # Users cannot call it.
    response = await client.post(
        f"{API}/internal/users/{user.id}/ordered",
        json={"items": [{"variant_id": a["variant_id"], "quantity": 1}]},
        headers=user.headers,
    )
    assert_error(response, 403, "FORBIDDEN")
