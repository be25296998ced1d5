"""The whole shopping story over HTTP alone, as a customer and a manager would live it:
register, browse, fill a cart as a guest, log in (the cart merges), apply a coupon,
see the shipping (a flat rate: no shipping service yet), check out with a test card,
see the order confirmed and the stock lower, cancel, see the refund and the stock back.
"""

from __future__ import annotations

import uuid

from tests.shop import ADDRESS, CARD, CART, ORDERS, PAYMENTS, configure, make_variant
from tests.support import ok

PASSWORD = "Story-Passw0rd-2026!"


async def available(client, product_id: str) -> int:
    data = ok(await client.get(f"/api/v1/products/{product_id}/availability"))
    return sum(v["available"] for v in data["variants"])


async def test_register_browse_cart_coupon_checkout_cancel_refund(
    client, container, drain, make_user
):
    configure(container)
    manager = await make_user(role="MANAGER")
    lamp = await make_variant(
        client, container, drain, manager, price="35.00", stock=12, name="Brass Desk Lamp"
    )
    coupon = ok(
        await client.post(
            "/api/v1/coupons",
            headers=manager.headers,
            json={"code": "WELCOME10", "type": "percentage", "value": "10"},
        ),
        201,
    )

    # Register (and the profile appears once the event lands).
    email = f"story-{uuid.uuid4().hex[:8]}@example.com"
    ok(
        await client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "first_name": "Ada", "last_name": "L"},
        ),
        201,
    )
    await drain()

    # Browse as a guest: find the lamp in the catalog and open it.
    listing = ok(await client.get("/api/v1/products", params={"q": "Brass Desk Lamp"}))
    product = next(p for p in listing if p["id"] == lamp["product_id"])
    detail = ok(await client.get(f"/api/v1/products/{product['slug']}"))
    assert detail["variants"][0]["id"] == lamp["variant_id"]
    assert await available(client, lamp["product_id"]) == 12

    # Fill a cart as a guest.
    guest = await client.post(
        f"{CART}/items", json={"variant_id": lamp["variant_id"], "quantity": 2}
    )
    token = ok(guest, 201)["token"]
    assert token

    # Log in: the guest cart merges into the user's.
    login = ok(await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}))
    auth = {"Authorization": f"Bearer {login['tokens']['access_token']}"}
    cart = ok(await client.get(CART, headers={**auth, "X-Cart-Token": token}))
    assert [(i["variant_id"], i["quantity"]) for i in cart["items"]] == [(lamp["variant_id"], 2)]

    # Apply the coupon; a flat shipping rate applies (no shipping service yet).
    cart = ok(await client.post(f"{CART}/coupon", json={"code": "welcome10"}, headers=auth))
    assert (cart["subtotal"], cart["discount"], cart["shipping"]) == ("70.00", "7.00", "0.00")
    cart = ok(await client.get(CART, headers=auth, params={"country": "US", "region": "CA"}))
    assert cart["tax"] == "4.57"  # 7.25% of 63.00
    assert cart["total"] == "67.57"

    # Check out with a test card.
    placed = await client.post(
        ORDERS,
        json={"shipping_address": ADDRESS, "payment": CARD},
        headers={**auth, "Idempotency-Key": "story-1"},
    )
    order = ok(placed, 201)
    assert order["status"] == "confirmed"
    assert order["total"] == cart["total"]
    assert order["discount"] == "7.00"
    assert order["coupon_code"] == "WELCOME10"
    assert await available(client, lamp["product_id"]) == 10
    assert ok(await client.get(CART, headers=auth))["items"] == []
    uses = ok(await client.get(f"/api/v1/coupons/{coupon['id']}", headers=manager.headers))["uses"]
    assert uses == 1
    mine = ok(await client.get(ORDERS, headers=auth))
    assert [o["number"] for o in mine] == [order["number"]]

    # Cancel: the refund shows on the order and the payment, the stock is back.
    cancelled = ok(await client.post(f"{ORDERS}/{order['id']}/cancel", headers=auth))
    assert cancelled["status"] == "cancelled"
    assert cancelled["refunded"] == order["total"]
    payment = ok(await client.get(f"{PAYMENTS}/{order['payment_id']}", headers=auth))
    assert payment["status"] == "refunded"
    assert payment["refunded_amount"] == order["total"]
    assert await available(client, lamp["product_id"]) == 12
    uses = ok(await client.get(f"/api/v1/coupons/{coupon['id']}", headers=manager.headers))["uses"]
    assert uses == 0
    history = [h["status"] for h in cancelled["status_history"]]
    assert history == ["pending", "confirmed", "cancelled"]
