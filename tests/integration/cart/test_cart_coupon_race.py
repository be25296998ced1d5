"""THE RACE for coupons: many concurrent redemptions through the cart client (each its
own request and unit of work), on SQLite and on PostgreSQL. A coupon's uses never pass
its total limit nor a user's limit, and releasing is idempotent."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from ultramarket.core.container import Container
from ultramarket.core.errors import DomainError
from ultramarket.services.cart.client import CartClient
from ultramarket.services.cart.models import Coupon, CouponRedemption
from ultramarket.services.cart.schemas import CouponCreate, CouponUpdate
from ultramarket.services.cart.service import CouponService


async def new_coupon(container: Container, **fields: Any) -> Coupon:
    body = {"code": f"RACE{uuid.uuid4().hex[:8]}", "type": "percentage", "value": "10"}
    body.update(fields)
    async with container.db("cart").session() as session:
        return await CouponService(session).create(CouponCreate.model_validate(body))


async def state(container: Container, coupon_id: uuid.UUID) -> tuple[int, int]:
    """(coupon.uses, redeemed rows)"""
    async with container.db("cart").read_session() as session:
        uses = await session.scalar(select(Coupon.uses).where(Coupon.id == coupon_id))
        rows = await session.scalar(
            select(func.count())
            .select_from(CouponRedemption)
            .where(CouponRedemption.coupon_id == coupon_id, CouponRedemption.status == "redeemed")
        )
    return int(uses or 0), int(rows or 0)


async def attempt(carts: CartClient, code: str, user_id: uuid.UUID) -> str:
    try:
        await carts.redeem_coupon(code, user_id, uuid.uuid4(), 10_000, "USD")
    except DomainError as exc:
        return exc.code
    return "ok"


async def test_fifty_concurrent_redemptions_of_a_five_use_coupon(container):
    coupon = await new_coupon(container, max_uses=5)
    carts = container.client(CartClient, "order")

    results = await asyncio.gather(*(attempt(carts, coupon.code, uuid.uuid4()) for _ in range(50)))

    assert results.count("ok") == 5
    assert results.count("COUPON_EXHAUSTED") == 45
    assert await state(container, coupon.id) == (5, 5)


async def test_concurrent_redemptions_by_one_user_respect_the_per_user_limit(container):
    coupon = await new_coupon(container, max_uses_per_user=2)
    carts = container.client(CartClient, "order")
    user_id = uuid.uuid4()

    results = await asyncio.gather(*(attempt(carts, coupon.code, user_id) for _ in range(20)))

    assert results.count("ok") == 2
    assert results.count("COUPON_USER_LIMIT") == 18
    # The refused attempts gave their counted use back (their transaction rolled back).
    assert await state(container, coupon.id) == (2, 2)
    # Another user is not affected.
    assert await attempt(carts, coupon.code, uuid.uuid4()) == "ok"


async def test_redeem_is_idempotent_per_order_and_release_gives_the_use_back_once(container):
    coupon = await new_coupon(container, type="fixed", value="15", currency="USD", max_uses=1)
    carts = container.client(CartClient, "order")
    user_id, order_id = uuid.uuid4(), uuid.uuid4()

    first = await carts.redeem_coupon(coupon.code.lower(), user_id, order_id, 10_000, "USD")
    assert (first.discount_amount, first.discount, first.status) == (1500, "15.00", "redeemed")
    again = await carts.redeem_coupon(coupon.code, user_id, order_id, 10_000, "USD")
    assert again.id == first.id
    assert await state(container, coupon.id) == (1, 1)
    assert await attempt(carts, coupon.code, uuid.uuid4()) == "COUPON_EXHAUSTED"

    # Ten concurrent compensations for the same order: one gives the use back.
    released = await asyncio.gather(*(carts.release_coupon(order_id) for _ in range(10)))
    assert released.count(True) == 1
    assert await carts.release_coupon(order_id) is False
    assert await state(container, coupon.id) == (0, 0)
    # A released order cannot silently redeem again; the use is free for others.
    with pytest.raises(DomainError) as refused:
        await carts.redeem_coupon(coupon.code, user_id, order_id, 10_000, "USD")
    assert (refused.value.status_code, refused.value.code) == (409, "REDEMPTION_CONFLICT")
    assert await attempt(carts, coupon.code, uuid.uuid4()) == "ok"
    assert await carts.release_coupon(uuid.uuid4()) is False  # nothing held: no-op


async def test_redeem_checks_the_rules(container):
    carts = container.client(CartClient, "order")
    minimum = await new_coupon(container, min_subtotal="50", currency="USD")
    with pytest.raises(DomainError) as refused:
        await carts.redeem_coupon(minimum.code, uuid.uuid4(), uuid.uuid4(), 4999, "USD")
    assert (refused.value.status_code, refused.value.code) == (422, "COUPON_MIN_SUBTOTAL")
    assert await attempt(carts, "UNKNOWN-CODE", uuid.uuid4()) == "COUPON_NOT_FOUND"
    assert await state(container, minimum.id) == (0, 0)


async def test_lowering_max_uses_while_the_coupon_is_redeemed(container, monkeypatch):
    """A manager lowers max_uses from 10 to 3 while five checkouts redeem the coupon: the
    edit checks the uses it read against the new limit, so the redemptions wait for it
    (the row is locked) and then three of them fit. Before, the edit checked a stale
    count: the redemptions got in first and the edit failed on the table's check as a
    409 COUPON_CODE_TAKEN (on PostgreSQL; SQLite's write lock, held from the edit's
    first read, always serialised them)."""
    coupon = await new_coupon(container, max_uses=10)
    carts = container.client(CartClient, "order")
    read = asyncio.Event()
    real_get = CouponService.get

    async def slow_get(self: CouponService, coupon_id: uuid.UUID, **kw: Any) -> Coupon:
        found = await real_get(self, coupon_id, **kw)
        if not read.is_set():  # the edit: it pauses between its read and its write
            read.set()
            await asyncio.sleep(0.5)
        return found

    monkeypatch.setattr(CouponService, "get", slow_get)

    async def lower() -> Coupon:
        async with container.db("cart").session() as session:
            return await CouponService(session).update(coupon.id, CouponUpdate(max_uses=3))

    async def redeem() -> list[str]:
        await read.wait()
        return await asyncio.gather(*(attempt(carts, coupon.code, uuid.uuid4()) for _ in range(5)))

    edited, results = await asyncio.gather(lower(), redeem())
    assert edited.max_uses == 3
    assert sorted(results) == ["COUPON_EXHAUSTED"] * 2 + ["ok"] * 3
    assert await state(container, coupon.id) == (3, 3)
