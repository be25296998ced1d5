"""Coupons: managed by MANAGER+, validated when applied to a cart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cart_helpers import (
    API,
    COUPONS,
    TOKEN,
    add,
    assert_error,
    configure,
    make_coupon,
    make_variant,
    ok,
)


async def test_coupon_crud_by_manager(client, container, make_user):
    manager = await make_user(role="MANAGER")
    created = await make_coupon(
        client,
        manager,
        code="Summer-10",
        type="percentage",
        value="12.5",
        min_subtotal="30",
        currency="USD",
        max_uses=100,
        max_uses_per_user=2,
        ends_at=(datetime.now(UTC) + timedelta(days=30)).isoformat(),
    )
    assert (created["code"], created["type"], created["value"]) == (
        "Summer-10",
        "percentage",
        "12.50",
    )
    assert (created["min_subtotal"], created["currency"], created["uses"]) == ("30.00", "USD", 0)
    assert (created["max_uses"], created["max_uses_per_user"], created["active"]) == (100, 2, True)

    # Codes are unique case-insensitively.
    response = await client.post(
        COUPONS, headers=manager.headers, json={"code": "SUMMER-10", "type": "free_shipping"}
    )
    assert_error(response, 409, "COUPON_CODE_TAKEN")

    page = await client.get(COUPONS, headers=manager.headers, params={"code": "summer"})
    assert page.status_code == 200
    body = page.json()
    assert [c["id"] for c in body["data"]] == [created["id"]]
    assert body["meta"]["total"] == 1

    updated = ok(
        await client.put(
            f"{COUPONS}/{created['id']}",
            headers=manager.headers,
            json={"value": "15", "max_uses": None, "active": False},
        )
    )
    assert (updated["value"], updated["max_uses"], updated["active"]) == ("15.00", None, False)
    assert updated["min_subtotal"] == "30.00"  # untouched fields stay

    response = await client.delete(f"{COUPONS}/{created['id']}", headers=manager.headers)
    assert response.status_code == 204
    assert_error(
        await client.get(f"{COUPONS}/{created['id']}", headers=manager.headers),
        404,
        "COUPON_NOT_FOUND",
    )
    # A deleted coupon's code can be used again.
    await make_coupon(client, manager, code="summer-10", type="free_shipping", value=None)


async def test_coupon_input_is_validated(client, container, make_user):
    manager = await make_user(role="MANAGER")
    bad = [
        {"code": "X1X", "type": "percentage", "value": "101"},
        {"code": "X2X", "type": "percentage", "value": "10.005"},
        {"code": "X3X", "type": "percentage"},
        {"code": "X4X", "type": "fixed", "value": "5"},  # no currency
        {"code": "X5X", "type": "fixed", "value": "5.001", "currency": "USD"},
        {"code": "X6X", "type": "free_shipping", "min_subtotal": "10"},  # no currency
        {"code": "X7X", "type": "bogus", "value": "5"},
        {"code": "no spaces", "type": "free_shipping"},
        {
            "code": "X8X",
            "type": "free_shipping",
            "starts_at": "2030-01-02T00:00:00Z",
            "ends_at": "2030-01-01T00:00:00Z",
        },
    ]
    for body in bad:
        response = await client.post(COUPONS, headers=manager.headers, json=body)
        assert_error(response, 422, "VALIDATION_ERROR")


async def test_customers_cannot_manage_coupons(client, container, make_user):
    customer = await make_user()
    assert_error(await client.get(COUPONS, headers=customer.headers), 403, "FORBIDDEN")
    response = await client.post(
        COUPONS, headers=customer.headers, json={"code": "FREE", "type": "free_shipping"}
    )
    assert_error(response, 403, "FORBIDDEN")
    assert_error(await client.get(COUPONS), 401, "UNAUTHENTICATED")
    # And the service-only endpoints refuse users.
    response = await client.post(
        f"{API}/internal/coupons/release",
        headers=customer.headers,
        json={"order_id": "00000000-0000-4000-8000-000000000009"},
    )
    assert_error(response, 403, "FORBIDDEN")


async def test_applying_checks_window_minimum_currency_and_limits(
    client, container, drain, make_user
):
    configure(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, price="10.00")
    now = datetime.now(UTC)

    async def apply(code: str, headers: dict[str, str]) -> object:
        return await client.post(f"{API}/coupon", json={"code": code}, headers=headers)

    # No cart yet.
    response = await apply("WHATEVER", {})
    assert_error(response, 422, "CART_EMPTY")
    cart = await add(client, v["variant_id"], 2)  # subtotal 20.00
    guest = {TOKEN: cart["token"]}

    assert_error(await apply("NOPE-NOPE", guest), 404, "COUPON_NOT_FOUND")
    expired = await make_coupon(client, manager, ends_at=(now - timedelta(minutes=1)).isoformat())
    assert_error(await apply(expired["code"], guest), 422, "COUPON_EXPIRED")
    future = await make_coupon(client, manager, starts_at=(now + timedelta(days=1)).isoformat())
    assert_error(await apply(future["code"], guest), 422, "COUPON_NOT_STARTED")
    minimum = await make_coupon(client, manager, min_subtotal="25", currency="USD")
    error = assert_error(await apply(minimum["code"], guest), 422, "COUPON_MIN_SUBTOTAL")
    assert error["details"][0]["min_subtotal"] == "25.00"
    euros = await make_coupon(client, manager, type="fixed", value="5", currency="EUR")
    assert_error(await apply(euros["code"], guest), 422, "COUPON_CURRENCY_MISMATCH")
    inactive = await make_coupon(client, manager, active=False)
    assert_error(await apply(inactive["code"], guest), 422, "COUPON_INACTIVE")

    # Meeting the minimum makes it apply; dropping below it later shows it invalid.
    await add(client, v["variant_id"], 1, headers=guest)  # 30.00
    cart = ok(await apply(minimum["code"], guest))
    assert cart["coupon"]["valid"] is True
    assert cart["discount"] == "3.00"
    line_id = cart["items"][0]["id"]
    cart = ok(await client.put(f"{API}/items/{line_id}", json={"quantity": 1}, headers=guest))
    assert cart["coupon"]["valid"] is False
    assert cart["coupon"]["reason"] == "COUPON_MIN_SUBTOTAL"
    assert cart["discount"] == "0.00"


async def test_applying_a_used_up_coupon_is_409(client, container, drain, make_user):
    from ultramarket.services.cart.client import CartClient

    configure(container)
    manager = await make_user(role="MANAGER")
    user = await make_user()
    v = await make_variant(client, container, drain, manager, price="10.00")
    await add(client, v["variant_id"], 1, headers=user.headers)
    once = await make_coupon(client, manager, max_uses=1)
    per_user = await make_coupon(client, manager, max_uses_per_user=1)

    carts = container.client(CartClient, "order")
    import uuid

    await carts.redeem_coupon(once["code"], uuid.uuid4(), uuid.uuid4(), 1000, "USD")
    await carts.redeem_coupon(per_user["code"], uuid.UUID(user.id), uuid.uuid4(), 1000, "USD")

    response = await client.post(f"{API}/coupon", json={"code": once["code"]}, headers=user.headers)
    assert_error(response, 409, "COUPON_EXHAUSTED")
    response = await client.post(
        f"{API}/coupon", json={"code": per_user["code"]}, headers=user.headers
    )
    assert_error(response, 409, "COUPON_USER_LIMIT")
