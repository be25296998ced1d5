"""Totals in integer minor units (subtotal, discount, shipping, tax, total) and the
per-line warnings for changed prices, short stock and unavailable products."""

from __future__ import annotations

from cart_helpers import (
    API,
    TOKEN,
    add,
    change_price,
    configure,
    make_coupon,
    make_variant,
    ok,
    set_status,
    set_stock,
)


async def test_totals_with_percentage_coupon_tax_and_shipping_exact(
    client, container, drain, make_user
):
    configure(container)
    manager = await make_user(role="MANAGER")
    a = await make_variant(client, container, drain, manager, price="19.99")
    b = await make_variant(client, container, drain, manager, price="5.67")
    await add(client, a["variant_id"], 2, headers=(user := await make_user()).headers)
    await add(client, b["variant_id"], 1, headers=user.headers)

    # 2 x 19.99 + 5.67 = 45.65; under the 50.00 threshold: shipping 5.99;
    # tax US-CA 7.25% of 45.65 = 3.309625 -> 3.31.
    cart = ok(await client.get(API, params={"country": "US", "region": "CA"}, headers=user.headers))
    assert (cart["subtotal"], cart["discount"], cart["shipping"]) == ("45.65", "0.00", "5.99")
    assert (cart["tax"], cart["total"]) == ("3.31", "54.95")
    assert (cart["subtotal_amount"], cart["tax_amount"], cart["total_amount"]) == (4565, 331, 5495)

    coupon = await make_coupon(client, manager, type="percentage", value="10")
    cart = ok(
        await client.post(
            f"{API}/coupon",
            json={"code": coupon["code"].lower()},  # codes match case-insensitively
            params={"country": "US", "region": "CA"},
            headers=user.headers,
        )
    )
    # 10% of 4565 = 456.5 -> 456 (half-even); net 4109; shipping 599;
    # tax 7.25% of 4109 = 297.9025 -> 298; total 4109 + 599 + 298 = 5006.
    assert cart["discount"] == "4.56"
    assert (cart["shipping"], cart["tax"], cart["total"]) == ("5.99", "2.98", "50.06")
    assert cart["coupon"] == {
        "code": coupon["code"],
        "type": "percentage",
        "valid": True,
        "reason": None,
        "discount": "4.56",
        "free_shipping": False,
    }
    # Another country's rate (Germany 19%), and no tax where none is configured.
    de = ok(await client.get(API, params={"country": "DE"}, headers=user.headers))
    assert (de["tax"], de["total"]) == ("7.81", str_sum(4109, 599, 781))
    us = ok(await client.get(API, params={"country": "US", "region": "NY"}, headers=user.headers))
    assert (us["tax"], us["total"]) == ("0.00", "47.08")

    # Over the threshold (after discount) shipping is free.
    await add(client, b["variant_id"], 1, headers=user.headers)  # subtotal 51.32
    cart = ok(await client.get(API, params={"country": "US"}, headers=user.headers))
    # 10% of 5132 = 513.2 -> 513; net 4619 < 5000: still shipping.
    assert (cart["discount"], cart["shipping"]) == ("5.13", "5.99")
    await add(client, a["variant_id"], 1, headers=user.headers)  # subtotal 71.31
    cart = ok(await client.get(API, params={"country": "US"}, headers=user.headers))
    assert (cart["subtotal"], cart["discount"], cart["shipping"], cart["total"]) == (
        "71.31",
        "7.13",
        "0.00",
        "64.18",
    )


def str_sum(*amounts: int) -> str:
    total = sum(amounts)
    return f"{total // 100}.{total % 100:02d}"


async def test_fixed_and_free_shipping_coupons(client, container, drain, make_user):
    configure(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, price="8.00")
    cart = await add(client, v["variant_id"], 2)
    guest = {TOKEN: cart["token"]}

    fixed = await make_coupon(client, manager, type="fixed", value="20", currency="USD")
    cart = ok(await client.post(f"{API}/coupon", json={"code": fixed["code"]}, headers=guest))
    # A fixed discount never goes past the subtotal.
    assert (cart["subtotal"], cart["discount"], cart["shipping"], cart["total"]) == (
        "16.00",
        "16.00",
        "5.99",
        "5.99",
    )
    free = await make_coupon(client, manager, type="free_shipping", value=None)
    cart = ok(await client.post(f"{API}/coupon", json={"code": free["code"]}, headers=guest))
    assert (cart["discount"], cart["shipping"], cart["total"]) == ("0.00", "0.00", "16.00")
    assert cart["coupon"]["free_shipping"] is True
    cart = ok(await client.delete(f"{API}/coupon", headers=guest))
    assert cart["coupon"] is None
    assert cart["shipping"] == "5.99"


async def test_warnings_for_changed_price_short_stock_and_unavailable(
    client, container, drain, make_user
):
    configure(container)
    manager = await make_user(role="MANAGER")
    user = await make_user()
    pricey = await make_variant(client, container, drain, manager, price="10.00", stock=20)
    short = await make_variant(client, container, drain, manager, price="3.00", stock=20)
    gone = await make_variant(client, container, drain, manager, price="1.00", stock=20)
    for v, n in ((pricey, 1), (short, 4), (gone, 2)):
        cart = await add(client, v["variant_id"], n, headers=user.headers)
    assert all(i["warnings"] == [] for i in cart["items"])

    await change_price(client, manager, pricey, "12.50")
    await set_stock(container, short["variant_id"], 3)
    await set_status(client, manager, gone, "archived")
    cart = ok(await client.get(API, headers=user.headers))
    lines = {i["variant_id"]: i for i in cart["items"]}

    changed = lines[pricey["variant_id"]]
    assert changed["unit_price"] == "12.50"  # the current price, not the one seen
    [warning] = changed["warnings"]
    assert (warning["code"], warning["previous_price"]) == ("PRICE_CHANGED", "10.00")

    [warning] = lines[short["variant_id"]]["warnings"]
    assert (warning["code"], warning["available"]) == ("SHORT_STOCK", 3)

    unavailable = lines[gone["variant_id"]]
    assert [w["code"] for w in unavailable["warnings"]] == ["UNAVAILABLE"]
    assert (unavailable["available"], unavailable["line_total"]) == (False, "0.00")
    # Unavailable lines are left out of the totals.
    assert cart["subtotal"] == "24.50"

    # Setting the quantity accepts the current price: the warning goes.
    cart = ok(
        await client.put(f"{API}/items/{changed['id']}", json={"quantity": 2}, headers=user.headers)
    )
    changed = next(i for i in cart["items"] if i["variant_id"] == pricey["variant_id"])
    assert changed["warnings"] == []
    assert changed["line_total"] == "25.00"
