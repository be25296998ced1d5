"""Guest and user carts: tokens, lines, merging on login, and the refusals."""

from __future__ import annotations

import uuid
from typing import Any

from cart_helpers import API, TOKEN, add, assert_error, configure, make_variant, ok, set_status
from sqlalchemy import func, select
from tests.shop import ADDRESS

from ultramarket.services.cart.models import Cart
from ultramarket.services.product.client import ProductClient

ADDRESSES = "/api/v1/users/me/addresses"


async def test_guest_cart_gets_a_token_once_and_is_found_by_it(client, container, drain, make_user):
    configure(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, price="19.99", stock=10)

    empty = ok(await client.get(API))
    assert empty["id"] is None
    assert empty["items"] == []
    assert empty["total"] == "0.00"

    response = await client.post(
        f"{API}/items", json={"variant_id": v["variant_id"], "quantity": 2}
    )
    cart = ok(response, 201)
    token = cart["token"]
    assert token
    assert response.headers[TOKEN] == token
    [line] = cart["items"]
    assert line["variant_id"] == v["variant_id"]
    assert line["product_id"] == v["product_id"]
    assert (line["sku"], line["name"], line["quantity"]) == (v["sku"], v["name"], 2)
    assert (line["unit_price"], line["line_total"], line["warnings"]) == ("19.99", "39.98", [])
    assert cart["currency"] == "USD"
    assert cart["subtotal"] == "39.98"

    # The same variant again adds to the line; the token is not shown again in the body.
    again = await add(client, v["variant_id"], 3, headers={TOKEN: token})
    assert again["id"] == cart["id"]
    assert again["token"] is None
    assert [i["quantity"] for i in again["items"]] == [5]

    seen = ok(await client.get(API, headers={TOKEN: token}))
    assert seen["id"] == cart["id"]
    assert seen["items"][0]["quantity"] == 5
    # Another client without the token sees nothing; a made-up token neither.
    assert ok(await client.get(API))["id"] is None
    assert ok(await client.get(API, headers={TOKEN: "nope"}))["id"] is None
    # The token is stored hashed.
    async with container.db("cart").read_session() as session:
        stored = await session.scalar(
            select(Cart.token_hash).where(Cart.id == uuid.UUID(cart["id"]))
        )
    assert stored
    assert token not in stored


async def test_user_cart_update_remove_and_clear(client, container, drain, make_user):
    configure(container)
    manager = await make_user(role="MANAGER")
    user = await make_user()
    a = await make_variant(client, container, drain, manager, price="10.00")
    b = await make_variant(client, container, drain, manager, price="2.50")

    cart = await add(client, a["variant_id"], 1, headers=user.headers)
    assert cart["token"] is None
    assert cart["user_id"] == user.id
    cart = await add(client, b["variant_id"], 4, headers=user.headers)
    assert cart["subtotal"] == "20.00"
    line_a = next(i for i in cart["items"] if i["variant_id"] == a["variant_id"])
    line_b = next(i for i in cart["items"] if i["variant_id"] == b["variant_id"])

    cart = ok(
        await client.put(f"{API}/items/{line_a['id']}", json={"quantity": 3}, headers=user.headers)
    )
    assert cart["subtotal"] == "40.00"
    cart = ok(await client.delete(f"{API}/items/{line_b['id']}", headers=user.headers))
    assert [i["variant_id"] for i in cart["items"]] == [a["variant_id"]]
    assert cart["subtotal"] == "30.00"

    # Someone else's line is not found.
    other = await make_user()
    response = await client.put(
        f"{API}/items/{line_a['id']}", json={"quantity": 1}, headers=other.headers
    )
    assert_error(response, 404, "CART_ITEM_NOT_FOUND")

    cart = ok(await client.delete(API, headers=user.headers))
    assert cart["items"] == []
    assert cart["total"] == "0.00"
    # One open cart per user, reused.
    await add(client, a["variant_id"], 1, headers=user.headers)
    async with container.db("cart").read_session() as session:
        carts = await session.scalar(
            select(func.count()).select_from(Cart).where(Cart.user_id == uuid.UUID(user.id))
        )
    assert carts == 1


async def test_merge_on_login_adds_quantities_capped_and_only_once(
    client, container, drain, make_user
):
    configure(container, max_quantity_per_line=10)
    manager = await make_user(role="MANAGER")
    user = await make_user()
    plenty = await make_variant(client, container, drain, manager, price="5.00", stock=100)
    scarce = await make_variant(client, container, drain, manager, price="7.00", stock=6)
    guest_only = await make_variant(client, container, drain, manager, price="1.00", stock=100)

    await add(client, plenty["variant_id"], 4, headers=user.headers)
    await add(client, scarce["variant_id"], 2, headers=user.headers)
    guest = await add(client, plenty["variant_id"], 8)  # 4 + 8 > the per-line limit of 10
    token = guest["token"]
    await add(client, scarce["variant_id"], 5, headers={TOKEN: token})  # 2 + 5 > 6 in stock
    await add(client, guest_only["variant_id"], 3, headers={TOKEN: token})

    both = {**user.headers, TOKEN: token}
    response = await client.get(API, headers=both)
    merged = ok(response)
    assert TOKEN.lower() not in response.headers  # the guest token is spent
    quantities = {i["variant_id"]: i["quantity"] for i in merged["items"]}
    assert quantities == {
        plenty["variant_id"]: 10,  # capped by the per-line limit
        scarce["variant_id"]: 7,  # not capped by stock: the warning says so
        guest_only["variant_id"]: 3,
    }
    [short] = next(i for i in merged["items"] if i["variant_id"] == scarce["variant_id"])[
        "warnings"
    ]
    assert (short["code"], short["available"]) == ("SHORT_STOCK", 6)

    # Idempotent: the same request again (and a write with both) adds nothing.
    again = ok(await client.get(API, headers=both))
    assert {i["variant_id"]: i["quantity"] for i in again["items"]} == quantities
    # The guest cart is closed: its token no longer shows a cart.
    assert ok(await client.get(API, headers={TOKEN: token}))["id"] is None
    async with container.db("cart").read_session() as session:
        status = await session.scalar(select(Cart.status).where(Cart.id == uuid.UUID(guest["id"])))
    assert status == "merged"


async def test_merge_keeps_an_out_of_stock_guest_line_with_its_warning(
    client, container, drain, make_user
):
    configure(container)
    manager = await make_user(role="MANAGER")
    sold_out = await make_variant(client, container, drain, manager, price="5.00", stock=0)
    user = await make_user()
    guest = await add(client, sold_out["variant_id"], 2)
    [line] = guest["items"]
    assert [w["code"] for w in line["warnings"]] == ["SHORT_STOCK"]

    merged = ok(await client.get(API, headers={**user.headers, TOKEN: guest["token"]}))

    [line] = merged["items"]  # the same line as before the login, not dropped
    assert (line["variant_id"], line["quantity"]) == (sold_out["variant_id"], 2)
    [warning] = line["warnings"]
    assert (warning["code"], warning["available"]) == ("SHORT_STOCK", 0)


async def carts_to_merge(
    client: Any, user: Any, own: str, guest_lines: list[tuple[str, int]]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """The user's cart with one unit of ``own``, a guest cart of ``guest_lines``, and
    the headers of a request carrying both (the user's cart, the guest cart, headers)."""
    mine = await add(client, own, 1, headers=user.headers)
    (first, quantity), *rest = guest_lines
    guest = await add(client, first, quantity)
    for variant_id, quantity in rest:
        await add(client, variant_id, quantity, headers={TOKEN: guest["token"]})
    return mine, guest, {**user.headers, TOKEN: guest["token"]}


async def test_guest_lines_the_user_cart_cannot_take_stay_in_the_guest_cart(
    client, container, drain, make_user
):
    configure(container)
    manager = await make_user(role="MANAGER")
    usd = await make_variant(client, container, drain, manager, price="5.00")
    eur = await make_variant(client, container, drain, manager, price="3.00", currency="EUR")
    eur2 = await make_variant(client, container, drain, manager, price="4.00", currency="EUR")
    user = await make_user()
    mine, guest, both = await carts_to_merge(
        client, user, usd["variant_id"], [(eur["variant_id"], 2), (eur2["variant_id"], 1)]
    )
    token = guest["token"]

    # The user's cart is in USD: the EUR lines cannot join it, and are not lost.
    response = await client.get(API, headers=both)
    cart = ok(response)
    assert [(i["variant_id"], i["quantity"]) for i in cart["items"]] == [(usd["variant_id"], 1)]
    assert response.headers[TOKEN] == token  # keep it: the guest cart still holds lines
    kept = ok(await client.get(API, headers={TOKEN: token}))
    assert kept["id"] == guest["id"]
    assert {i["variant_id"]: i["quantity"] for i in kept["items"]} == {
        eur["variant_id"]: 2,
        eur2["variant_id"]: 1,
    }
    # A write with both leaves them too (and says so).
    response = await client.post(
        f"{API}/items", json={"variant_id": usd["variant_id"], "quantity": 1}, headers=both
    )
    assert ok(response, 201)["items"][0]["quantity"] == 2
    assert response.headers[TOKEN] == token

    # Once the user's cart is empty they come over, and the guest cart is closed.
    ok(await client.delete(f"{API}/items/{mine['items'][0]['id']}", headers=user.headers))
    response = await client.get(API, headers=both)
    merged = ok(response)
    assert TOKEN.lower() not in response.headers
    assert merged["currency"] == "EUR"
    assert {i["variant_id"]: i["quantity"] for i in merged["items"]} == {
        eur["variant_id"]: 2,
        eur2["variant_id"]: 1,
    }
    assert ok(await client.get(API, headers={TOKEN: token}))["id"] is None
    async with container.db("cart").read_session() as session:
        status = await session.scalar(select(Cart.status).where(Cart.id == uuid.UUID(guest["id"])))
    assert status == "merged"


async def test_guest_lines_past_the_line_limit_stay_in_the_guest_cart(
    client, container, drain, make_user
):
    configure(container, max_lines=2)
    manager = await make_user(role="MANAGER")
    a, b, c = [await make_variant(client, container, drain, manager) for _ in range(3)]
    user = await make_user()
    mine, guest, both = await carts_to_merge(
        client, user, a["variant_id"], [(b["variant_id"], 1), (c["variant_id"], 1)]
    )
    token = guest["token"]

    response = await client.get(API, headers=both)
    cart = ok(response)
    assert {i["variant_id"] for i in cart["items"]} == {a["variant_id"], b["variant_id"]}
    assert response.headers[TOKEN] == token
    kept = ok(await client.get(API, headers={TOKEN: token}))
    assert [i["variant_id"] for i in kept["items"]] == [c["variant_id"]]
    # Repeating adds nothing twice.
    again = ok(await client.get(API, headers=both))
    assert {i["variant_id"]: i["quantity"] for i in again["items"]} == {
        a["variant_id"]: 1,
        b["variant_id"]: 1,
    }

    ok(await client.delete(f"{API}/items/{mine['items'][0]['id']}", headers=user.headers))
    response = await client.get(API, headers=both)
    assert {i["variant_id"] for i in ok(response)["items"]} == {b["variant_id"], c["variant_id"]}
    assert TOKEN.lower() not in response.headers
    assert ok(await client.get(API, headers={TOKEN: token}))["id"] is None


async def test_refusals_carry_their_codes(client, container, drain, make_user):
    configure(container, max_quantity_per_line=5)
    manager = await make_user(role="MANAGER")
    usd = await make_variant(client, container, drain, manager, currency="USD")
    eur = await make_variant(client, container, drain, manager, price="3.00", currency="EUR")
    user = await make_user()

    for quantity in (0, -1):
        response = await client.post(
            f"{API}/items", json={"variant_id": usd["variant_id"], "quantity": quantity}
        )
        assert_error(response, 422, "VALIDATION_ERROR")
    response = await client.post(
        f"{API}/items", json={"variant_id": usd["variant_id"], "quantity": 6}
    )
    assert_error(response, 422, "VALIDATION_ERROR")
    response = await client.post(
        f"{API}/items", json={"variant_id": str(uuid.uuid4()), "quantity": 1}
    )
    assert_error(response, 404, "VARIANT_NOT_FOUND")

    cart = await add(client, usd["variant_id"], 4, headers=user.headers)
    # Adding to the line past the limit, or setting it past the limit.
    response = await client.post(
        f"{API}/items", json={"variant_id": usd["variant_id"], "quantity": 2}, headers=user.headers
    )
    assert_error(response, 422, "VALIDATION_ERROR")
    line_id = cart["items"][0]["id"]
    for quantity in (0, 6):
        response = await client.put(
            f"{API}/items/{line_id}", json={"quantity": quantity}, headers=user.headers
        )
        assert_error(response, 422, "VALIDATION_ERROR")
    # One currency per cart.
    response = await client.post(
        f"{API}/items", json={"variant_id": eur["variant_id"], "quantity": 1}, headers=user.headers
    )
    assert_error(response, 409, "CURRENCY_MISMATCH")
    # An archived product cannot be added.
    await set_status(client, manager, eur, "archived")
    response = await client.post(
        f"{API}/items", json={"variant_id": eur["variant_id"], "quantity": 1}
    )
    assert_error(response, 404, "VARIANT_NOT_FOUND")
    response = await client.delete(f"{API}/items/{uuid.uuid4()}", headers=user.headers)
    assert_error(response, 404, "CART_ITEM_NOT_FOUND")


async def test_item_added_event_goes_through_the_outbox(client, container, drain, make_user):
    configure(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, price="4.00")
    cart = await add(client, v["variant_id"], 2)
    outbox = container.events("cart").outbox
    async with container.db("cart").read_session() as session:
        rows = (
            await session.execute(
                select(outbox.c.event_type, outbox.c.payload).where(
                    outbox.c.event_type == "cart.item_added.v1"
                )
            )
        ).all()
    [(_kind, payload)] = rows
    assert payload["cart_id"] == cart["id"]
    assert payload["variant_id"] == v["variant_id"]
    assert (payload["quantity"], payload["unit_price_amount"], payload["currency"]) == (
        2,
        400,
        "USD",
    )


async def test_cart_client_quotes_and_clears_for_the_order_service(
    client, container, drain, make_user
):
    from ultramarket.services.cart.client import CartClient

    configure(container)
    manager = await make_user(role="MANAGER")
    user = await make_user()
    v = await make_variant(client, container, drain, manager, price="20.00")
    await add(client, v["variant_id"], 2, headers=user.headers)
    carts = container.client(CartClient, "order")

    quote = await carts.get_cart(uuid.UUID(user.id), "US", "CA")
    assert [(i.variant_id, i.quantity) for i in quote.items] == [(uuid.UUID(v["variant_id"]), 2)]
    # 40.00 + shipping 5.99 + 7.25% of 40.00 (2.90)
    assert (quote.subtotal_amount, quote.shipping_amount, quote.tax_amount) == (4000, 599, 290)
    assert quote.total == "48.89"

    assert await carts.clear(uuid.UUID(user.id)) is True
    emptied = await carts.get_cart(uuid.UUID(user.id))
    assert emptied.items == []
    assert emptied.total_amount == 0
    assert await carts.clear(uuid.uuid4()) is False  # no cart: nothing to do
    # Users cannot call the internal endpoints.
    response = await client.get(f"{API}/internal/users/{user.id}", headers=user.headers)
    assert_error(response, 403, "FORBIDDEN")


async def test_idle_carts_are_reported_abandoned_once(client, container, drain, make_user):
    from datetime import timedelta

    from ultramarket.core.db import utcnow
    from ultramarket.services.cart.service import mark_abandoned

    settings = configure(container, abandoned_after_hours=24)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, price="3.00")
    cart = await add(client, v["variant_id"], 2)

    async def sweep(hours: float) -> int:
        async with container.db("cart").session() as session:
            return await mark_abandoned(
                session,
                container.publisher("cart"),
                settings,
                now=utcnow() + timedelta(hours=hours),
            )

    assert await sweep(1) == 0
    assert await sweep(25) == 1
    assert await sweep(26) == 0  # once
    outbox = container.events("cart").outbox
    async with container.db("cart").read_session() as session:
        payloads = (
            await session.scalars(
                select(outbox.c.payload).where(outbox.c.event_type == "cart.abandoned.v1")
            )
        ).all()
    assert [(p["cart_id"], p["item_count"], p["subtotal_amount"]) for p in payloads] == [
        (cart["id"], 2, 600)
    ]


async def test_the_abandoned_sweep_runs_at_the_configured_interval(
    client, container, drain, make_user
):
    from ultramarket.services.cart import SERVICE

    [(tick, job)] = SERVICE.periodic
    assert tick <= 60  # it wakes often; the setting decides when it sweeps
    configure(container, abandoned_after_hours=0, abandoned_sweep_seconds=3600)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, price="3.00")
    outbox = container.events("cart").outbox

    async def reported() -> list[str]:
        async with container.db("cart").read_session() as session:
            payloads = await session.scalars(
                select(outbox.c.payload).where(outbox.c.event_type == "cart.abandoned.v1")
            )
            return sorted(p["cart_id"] for p in payloads)

    first = await add(client, v["variant_id"], 1)
    await job(container)  # the first wake-up sweeps
    assert await reported() == [first["id"]]
    second = await add(client, v["variant_id"], 1)
    await job(container)  # within the hour: no sweep
    assert await reported() == [first["id"]]

    configure(container, abandoned_after_hours=0, abandoned_sweep_seconds=0)
    await job(container)
    assert await reported() == sorted([first["id"], second["id"]])


async def test_a_cart_view_is_cached_until_the_cart_changes(
    client, container, drain, make_user, monkeypatch
):
    configure(container, cache_seconds=60)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, price="20.00")
    user = await make_user()
    await add(client, v["variant_id"], 1, headers=user.headers)
    asked: list[int] = []
    used = type(container.client(ProductClient, "cart"))  # its in-process twin, all-in-one
    real = used.get_variants

    async def counting(self, ids):
        asked.append(len(list(ids)))
        return await real(self, ids)

    monkeypatch.setattr(used, "get_variants", counting)

    # The view the last change answered with is cached: reads reuse it.
    first = ok(await client.get(API, headers=user.headers))
    again = ok(await client.get(API, headers=user.headers))
    assert again == first
    assert asked == []
    await add(client, v["variant_id"], 2, headers=user.headers)  # a change: a new key
    priced = len(asked)
    assert priced > 0  # the change was priced afresh
    changed = ok(await client.get(API, headers=user.headers))
    assert len(asked) == priced
    assert [i["quantity"] for i in changed["items"]] == [3]
    assert changed["subtotal"] == "60.00"


async def test_a_cached_cart_view_follows_a_change_of_the_default_address(
    client, container, drain, make_user
):
    configure(container, cache_seconds=60)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, price="40.00")
    user = await make_user()
    california = {**ADDRESS, "region": "CA"}
    ok(await client.post(ADDRESSES, json=california, headers=user.headers), 201)
    await add(client, v["variant_id"], 1, headers=user.headers)
    cart = ok(await client.get(API, headers=user.headers))
    assert (cart["country"], cart["tax"]) == ("US", "2.90")  # 7.25% of 40.00

    # A new default address (the cart itself does not change): its tax, not the cached one.
    berlin = {**ADDRESS, "city": "Berlin", "region": None, "postal_code": "10115", "country": "DE"}
    ok(
        await client.post(
            ADDRESSES, json={**berlin, "is_default_shipping": True}, headers=user.headers
        ),
        201,
    )
    cart = ok(await client.get(API, headers=user.headers))
    assert (cart["country"], cart["region"], cart["tax"]) == ("DE", None, "7.60")  # 19%
    # And back: each location has its own cached view.
    ok(await client.get(API, params={"country": "US", "region": "CA"}, headers=user.headers))
    cart = ok(await client.get(API, headers=user.headers))
    assert cart["tax"] == "7.60"
