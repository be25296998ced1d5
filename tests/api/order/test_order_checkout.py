"""Checkout over HTTP: the saga's happy path, each refusal and its compensation, and
the Idempotency-Key."""

from __future__ import annotations

import re

from order_helpers import (
    API,
    CART,
    DECLINED,
    assert_error,
    checkout,
    checkout_body,
    configure,
    flaky_card_provider,
    make_variant,
    ok,
    payments_of,
    reservation_status,
    stock,
)

from ultramarket.services.cart.config import SETTINGS_KEY


async def test_cart_checkout_confirms_pays_takes_stock_and_empties_cart(
    client, container, drain, make_user
):
    configure(container)
    manager = await make_user(role="MANAGER")
    shoe = await make_variant(client, container, drain, manager, price="19.99", stock=10)
    sock = await make_variant(client, container, drain, manager, price="5.67", stock=10)
    user = await make_user()
    for v, q in ((shoe, 2), (sock, 1)):
        body = {"variant_id": v["variant_id"], "quantity": q}
        ok(await client.post(f"{CART}/items", json=body, headers=user.headers), 201)

    order = ok(await checkout(client, user, checkout_body()), 201)

    assert order["status"] == "confirmed"
    assert order["payment_status"] == "paid"
    assert re.fullmatch(r"UM-\d{6}-[2-9A-HJ-NP-Z]{6}", order["number"])
    # 2 x 19.99 + 5.67 = 45.65; shipping 5.99 (under 50.00); CA tax 7.25% of 45.65 = 3.31
    assert order["subtotal"] == "45.65"
    assert order["shipping"] == "5.99"
    assert order["tax"] == "3.31"
    assert order["total"] == "54.95"
    assert order["currency"] == "USD"
    assert [i["quantity"] for i in order["items"]] == [2, 1]
    assert sum(i["line_total_amount"] for i in order["items"]) + 599 == order["total_amount"]
    assert [(h["status"], h["actor"]) for h in order["status_history"]] == [
        ("pending", "customer"),
        ("confirmed", "system"),
    ]

    assert await stock(container, shoe["variant_id"]) == {
        "on_hand": 8,
        "reserved": 0,
        "available": 8,
        "log_on_hand": 8,
        "log_reserved": 0,
    }
    assert await reservation_status(container, order["id"]) == "committed"
    cart = ok(await client.get(CART, headers=user.headers))
    assert cart["items"] == []
    payments = await payments_of(client, manager, order["id"])
    assert [(p["status"], p["amount"]) for p in payments] == [("succeeded", "54.95")]

    mine = ok(await client.get(API, headers=user.headers))
    assert [o["id"] for o in mine] == [order["id"]]
    fetched = ok(await client.get(f"{API}/{order['id']}", headers=user.headers))
    assert fetched["total"] == "54.95"
    assert fetched["status_history"] == order["status_history"]  # the same customer view
    metrics = (await client.get("/metrics")).text
    assert 'orders_total{outcome="confirmed"}' in metrics
    assert 'order_revenue_minor_total{currency="USD"}' in metrics


async def test_explicit_items_leave_the_cart_alone(client, container, drain, make_user):
    configure(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, price="60.00", stock=5)
    user = await make_user()
    ok(
        await client.post(
            f"{CART}/items", json={"variant_id": v["variant_id"]}, headers=user.headers
        ),
        201,
    )

    order = ok(await checkout(client, user, checkout_body([(v["variant_id"], 3)])), 201)

    assert order["total"] == "193.05"  # 180.00 + 7.25% tax, free shipping over 50.00
    assert (await stock(container, v["variant_id"]))["on_hand"] == 2
    cart = ok(await client.get(CART, headers=user.headers))
    assert [i["quantity"] for i in cart["items"]] == [1]


async def test_declined_card_is_402_and_gives_the_stock_back(client, container, drain, make_user):
    configure(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, stock=5)
    user = await make_user()

    response = await checkout(client, user, checkout_body([(v["variant_id"], 2)], payment=DECLINED))

    assert_error(response, 402, "PAYMENT_FAILED")
    assert (await stock(container, v["variant_id"]))["available"] == 5
    [order] = ok(await client.get(API, headers=manager.headers, params={"user_id": str(user.id)}))
    assert order["status"] == "payment_failed"
    detail = ok(await client.get(f"{API}/{order['id']}", headers=user.headers))
    assert detail["payment_status"] == "failed"
    assert await reservation_status(container, order["id"]) == "released"


async def test_short_stock_is_409_naming_the_line_and_charges_nothing(
    client, container, drain, make_user
):
    configure(container)
    manager = await make_user(role="MANAGER")
    plenty = await make_variant(client, container, drain, manager, stock=10)
    scarce = await make_variant(client, container, drain, manager, stock=1)
    user = await make_user()

    response = await checkout(
        client, user, checkout_body([(plenty["variant_id"], 1), (scarce["variant_id"], 2)])
    )

    body = assert_error(response, 409, "INSUFFICIENT_STOCK")
    named = {d.get("variant_id") for d in body["details"]}
    assert scarce["variant_id"] in named
    assert plenty["variant_id"] not in named
    assert (await stock(container, plenty["variant_id"]))["available"] == 10
    [order] = ok(await client.get(API, headers=manager.headers, params={"user_id": str(user.id)}))
    assert order["status"] == "cancelled"
    assert await payments_of(client, manager, order["id"]) == []


async def test_same_key_returns_the_first_order_and_charges_once(
    client, container, drain, make_user
):
    configure(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, stock=5)
    user = await make_user()
    body = checkout_body([(v["variant_id"], 1)])

    first = await checkout(client, user, body, key="k-1")
    again = await checkout(client, user, body, key="k-1")

    assert ok(first, 201)["id"] == ok(again, 201)["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(await payments_of(client, manager, ok(first, 201)["id"])) == 1
    assert (await stock(container, v["variant_id"]))["on_hand"] == 4
    other = await checkout(client, user, checkout_body([(v["variant_id"], 2)]), key="k-1")
    assert_error(other, 409, "IDEMPOTENCY_KEY_REUSED")
    # Another user's same key is their own.
    stranger = await make_user()
    assert ok(await checkout(client, stranger, body, key="k-1"), 201)["id"] != ok(first, 201)["id"]


async def test_a_failed_checkout_replays_its_error(client, container, drain, make_user):
    configure(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, stock=5)
    user = await make_user()
    body = checkout_body([(v["variant_id"], 1)], payment=DECLINED)

    assert_error(await checkout(client, user, body, key="d-1"), 402, "PAYMENT_FAILED")
    assert_error(await checkout(client, user, body, key="d-1"), 402, "PAYMENT_FAILED")
    orders = ok(await client.get(API, headers=user.headers))
    assert len(orders) == 1


async def test_empty_cart_and_bad_input_are_refused_and_write_nothing(
    client, container, drain, make_user
):
    configure(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, stock=5)
    user = await make_user()

    assert_error(await checkout(client, user, checkout_body()), 422, "CART_EMPTY")
    for bad in (
        checkout_body([(v["variant_id"], 0)]),
        checkout_body([(v["variant_id"], 1)], payment={"method": "card"}),
        checkout_body([(v["variant_id"], 1)], payment={"method": "bitcoin"}),
        checkout_body([(v["variant_id"], 1), (v["variant_id"], 2)]),
        {**checkout_body([(v["variant_id"], 1)]), "shipping_address": {"city": "X"}},
        {**checkout_body([(v["variant_id"], 1)]), "total": "0.01"},
    ):
        assert_error(await checkout(client, user, bad), 422, "VALIDATION_ERROR")
    unknown = checkout_body([("00000000-0000-4000-8000-00000000abcd", 1)])
    assert_error(await checkout(client, user, unknown), 404, "VARIANT_NOT_FOUND")
    no_address = {
        "items": [{"variant_id": v["variant_id"], "quantity": 1}],
        "payment": {"method": "card", "token": "tok_4242"},
    }
    assert_error(await checkout(client, user, no_address), 422, "VALIDATION_ERROR")
    assert ok(await client.get(API, headers=user.headers)) == []
    assert (await stock(container, v["variant_id"]))["available"] == 5
    anonymous = await client.post(API, json=checkout_body([(v["variant_id"], 1)]))
    assert_error(anonymous, 401, "UNAUTHENTICATED")
    assert SETTINGS_KEY in container.extras


async def test_a_card_provider_hiccup_is_resumed_not_charged_twice(
    client, container, drain, make_user, monkeypatch
):
    configure(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, stock=5)
    user = await make_user()
    calls = flaky_card_provider(monkeypatch)

    order = ok(await checkout(client, user, checkout_body([(v["variant_id"], 1)])), 201)

    assert order["status"] == "confirmed"
    assert len(calls) == 2
    assert calls[0] == calls[1]
    payments = await payments_of(client, manager, order["id"])
    assert [p["status"] for p in payments] == ["succeeded"]
