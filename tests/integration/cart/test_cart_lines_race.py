"""Concurrent writes to one cart, on SQLite and PostgreSQL: they take turns on the cart
row, so no quantity is lost and a new line is inserted once (not a 500 for the rest);
concurrent requests after a login merge the guest cart once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import update
from tests.shop import configure, make_variant
from tests.support import ok

from ultramarket.core.db import utcnow
from ultramarket.services.cart.models import Cart
from ultramarket.services.product.client import ProductClient

API = "/api/v1/cart"


async def test_concurrent_adds_to_one_line_add_up(client, container, drain, make_user):
    configure(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, stock=500)
    user = await make_user()
    body = {"variant_id": v["variant_id"], "quantity": 1}
    ok(await client.post(f"{API}/items", json=body, headers=user.headers), 201)

    answers = await asyncio.gather(
        *(client.post(f"{API}/items", json=body, headers=user.headers) for _ in range(8))
    )
    assert [a.status_code for a in answers] == [201] * 8
    [line] = ok(await client.get(API, headers=user.headers))["items"]
    assert line["quantity"] == 9


async def test_concurrent_adds_of_a_new_variant_make_one_line(client, container, drain, make_user):
    configure(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, stock=500)
    w = await make_variant(client, container, drain, manager, stock=500)
    user = await make_user()
    first = {"variant_id": w["variant_id"], "quantity": 1}
    ok(await client.post(f"{API}/items", json=first, headers=user.headers), 201)

    body = {"variant_id": v["variant_id"], "quantity": 1}
    answers = await asyncio.gather(
        *(client.post(f"{API}/items", json=body, headers=user.headers) for _ in range(4))
    )
    assert [a.status_code for a in answers] == [201] * 4
    items = ok(await client.get(API, headers=user.headers))["items"]
    assert {i["variant_id"]: i["quantity"] for i in items} == {
        w["variant_id"]: 1,
        v["variant_id"]: 4,
    }


@pytest.mark.parametrize("has_cart", [False, True], ids=["new-user-cart", "user-cart"])
async def test_concurrent_requests_after_login_merge_the_guest_cart_once(
    client, container, drain, make_user, has_cart
):
    configure(container)
    manager = await make_user(role="MANAGER")
    a = await make_variant(client, container, drain, manager, stock=500)
    b = await make_variant(client, container, drain, manager, stock=500)
    c = await make_variant(client, container, drain, manager, stock=500)
    guest = ok(
        await client.post(f"{API}/items", json={"variant_id": a["variant_id"], "quantity": 2}),
        201,
    )
    token = guest["token"]
    body = {"variant_id": b["variant_id"], "quantity": 1}
    ok(await client.post(f"{API}/items", json=body, headers={"X-Cart-Token": token}), 201)
    user = await make_user()
    if has_cart:
        mine = {"variant_id": c["variant_id"], "quantity": 1}
        ok(await client.post(f"{API}/items", json=mine, headers=user.headers), 201)
    both = {**user.headers, "X-Cart-Token": token}

    answers = await asyncio.gather(
        *(client.get(API, headers=both) for _ in range(4)),
        *(client.post(f"{API}/items", json=body, headers=both) for _ in range(2)),
    )
    assert [a.status_code for a in answers] == [200] * 4 + [201] * 2
    items = ok(await client.get(API, headers=both))["items"]
    # Merged once (a 2, b 1), plus the two writes' b.
    assert {i["variant_id"]: i["quantity"] for i in items} == {
        a["variant_id"]: 2,
        b["variant_id"]: 3,
        **({c["variant_id"]: 1} if has_cart else {}),
    }
    assert ok(await client.get(API, headers={"X-Cart-Token": token}))["id"] is None


async def test_a_cart_reply_is_priced_after_the_write_committed(
    client, container, drain, make_user, monkeypatch
):
    """Pricing a reply calls the product, inventory and user services; the write it
    answers has committed by then, so another request can write to the same cart
    meanwhile (it used to wait for the row lock - on SQLite, the database's write lock
    - until the reply was priced)."""
    configure(container)
    manager = await make_user(role="MANAGER")
    a = await make_variant(client, container, drain, manager, stock=500)
    b = await make_variant(client, container, drain, manager, stock=500)
    user = await make_user()
    cart = ok(
        await client.post(
            f"{API}/items",
            json={"variant_id": a["variant_id"], "quantity": 1},
            headers=user.headers,
        ),
        201,
    )
    guest = ok(
        await client.post(f"{API}/items", json={"variant_id": b["variant_id"], "quantity": 1}),
        201,
    )
    blocked: list[str] = []
    used = type(container.client(ProductClient, "cart"))  # its in-process twin, all-in-one
    real = used.get_variants

    async def priced_while_another_request_writes(self: ProductClient, ids: Any) -> Any:
        try:
            async with asyncio.timeout(5), container.db("cart").session() as session:
                await session.execute(
                    update(Cart).where(Cart.id == uuid.UUID(cart["id"])).values(updated_at=utcnow())
                )
        except TimeoutError:
            blocked.append("the cart was locked while the reply was priced")
        return await real(self, ids)

    monkeypatch.setattr(used, "get_variants", priced_while_another_request_writes)

    body = {"variant_id": a["variant_id"], "quantity": 1}
    added = ok(await client.post(f"{API}/items", json=body, headers=user.headers), 201)
    assert [i["quantity"] for i in added["items"]] == [2]
    assert blocked == []
    removed = ok(
        await client.delete(f"{API}/items/{added['items'][0]['id']}", headers=user.headers)
    )
    assert removed["items"] == []
    assert blocked == []
    # A read that merges a guest cart first (a write) prices after it too.
    merged = ok(await client.get(API, headers={**user.headers, "X-Cart-Token": guest["token"]}))
    assert [i["variant_id"] for i in merged["items"]] == [b["variant_id"]]
    assert blocked == []
