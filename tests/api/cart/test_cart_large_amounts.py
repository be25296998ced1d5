"""Amounts past 32 bits (a product's price is a BIGINT): a UZS price of 25,000,000.00 is
2.5e9 minor units. On PostgreSQL an INTEGER column or a 32-bit product refuses it."""

from __future__ import annotations

import uuid
from datetime import timedelta

from cart_helpers import API, COUPONS, add, configure, make_variant, ok
from sqlalchemy import select, update

from ultramarket.core.db import utcnow
from ultramarket.services.cart.client import CartClient
from ultramarket.services.cart.models import Cart
from ultramarket.services.cart.service import mark_abandoned


async def test_a_price_past_32_bits_is_carted_and_totalled(client, container, drain, make_user):
    configure(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, price="25000000.00", currency="UZS")
    user = await make_user()

    cart = await add(client, v["variant_id"], 2, headers=user.headers)
    [line] = cart["items"]
    assert (line["unit_price_amount"], line["line_total_amount"]) == (2_500_000_000, 5_000_000_000)
    assert cart["subtotal_amount"] == 5_000_000_000
    cart = ok(
        await client.put(f"{API}/items/{line['id']}", json={"quantity": 3}, headers=user.headers)
    )
    assert cart["subtotal_amount"] == 7_500_000_000

    # A fixed coupon and a minimum past 32 bits, applied and redeemed.
    coupon = ok(
        await client.post(
            COUPONS,
            headers=manager.headers,
            json={
                "code": f"BIG{uuid.uuid4().hex[:6]}",
                "type": "fixed",
                "value": "30000000.00",
                "currency": "UZS",
                "min_subtotal": "50000000.00",
            },
        ),
        201,
    )
    cart = ok(
        await client.post(f"{API}/coupon", json={"code": coupon["code"]}, headers=user.headers)
    )
    assert cart["discount_amount"] == 3_000_000_000
    redemption = await container.client(CartClient, "order").redeem_coupon(
        coupon["code"], uuid.UUID(user.id), uuid.uuid4(), 7_500_000_000, "UZS"
    )
    assert redemption.discount_amount == 3_000_000_000


async def test_the_abandoned_sweep_sums_lines_past_32_bits(client, container, drain, make_user):
    settings = configure(container, abandoned_after_hours=24)
    manager = await make_user(role="MANAGER")
    # Each price fits 32 bits; quantity x price (4e10 minor units) does not.
    v = await make_variant(client, container, drain, manager, price="20000000.00", stock=100)
    cart = await add(client, v["variant_id"], 20)

    async with container.db("cart").session() as session:
        found = await mark_abandoned(
            session, container.publisher("cart"), settings, now=utcnow() + timedelta(hours=25)
        )
    assert found == 1
    outbox = container.events("cart").outbox
    async with container.db("cart").read_session() as session:
        [payload] = (
            await session.scalars(
                select(outbox.c.payload).where(outbox.c.event_type == "cart.abandoned.v1")
            )
        ).all()
    assert (payload["cart_id"], payload["item_count"]) == (cart["id"], 20)
    assert payload["subtotal_amount"] == 40_000_000_000

    # A later sweep is not stuck on it either (the sweep used to roll back every time).
    async with container.db("cart").session() as session:
        await session.execute(update(Cart).values(abandoned_at=None))
        assert (
            await mark_abandoned(
                session, container.publisher("cart"), settings, now=utcnow() + timedelta(hours=26)
            )
            == 1
        )
