"""Tax by region: an address's region is free text ("CA", "US-CA", "California",
"New York", "Greater London"); the cart finds the rate of the region's ISO 3166-2 code
from any of them, and a checkout never refuses an address the user service accepts."""

from __future__ import annotations

from cart_helpers import API, add, configure, make_variant, ok
from tests.shop import ADDRESS, checkout, checkout_body

ADDRESSES = "/api/v1/users/me/addresses"


async def test_a_region_name_or_code_finds_the_region_rate(client, container, drain, make_user):
    configure(container)  # US-CA 7.25%, US 0%
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, price="40.00")
    user = await make_user()
    await add(client, v["variant_id"], 1, headers=user.headers)

    for region in ("CA", "ca", "US-CA", "us-ca", "California", "  california ", "CALIFORNIA"):
        cart = ok(
            await client.get(API, params={"country": "US", "region": region}, headers=user.headers)
        )
        # 7.25% of 40.00 = 2.90
        assert (cart["tax"], cart["tax_amount"]) == ("2.90", 290), region
    # Another state (no rate of its own) falls back to the country's rate.
    for region in ("New York", "NY", "Nowhere Land"):
        cart = ok(
            await client.get(API, params={"country": "US", "region": region}, headers=user.headers)
        )
        assert cart["tax"] == "0.00", region
    # A code of another country is not this country's region.
    cart = ok(
        await client.get(API, params={"country": "DE", "region": "US-CA"}, headers=user.headers)
    )
    assert cart["tax"] == "7.60"  # Germany's 19%


async def test_the_default_address_region_name_sets_the_cart_tax(
    client, container, drain, make_user
):
    configure(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, price="40.00")
    user = await make_user()
    address = {**ADDRESS, "region": "California"}
    ok(await client.post(ADDRESSES, json=address, headers=user.headers), 201)
    await add(client, v["variant_id"], 1, headers=user.headers)

    cart = ok(await client.get(API, headers=user.headers))
    assert (cart["country"], cart["region"]) == ("US", "California")
    assert (cart["tax"], cart["total"]) == ("2.90", "48.89")  # 40.00 + 5.99 + 2.90


async def test_checkout_to_a_free_text_region_is_placed_at_its_rate(
    client, container, drain, make_user
):
    configure(container, tax_rates_bp={"US": 0, "US-CA": 725, "US-NY": 400})
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, price="40.00")
    user = await make_user()
    await add(client, v["variant_id"], 1, headers=user.headers)

    address = {**ADDRESS, "city": "New York", "region": "New York", "postal_code": "10001"}
    order = ok(await checkout(client, user, checkout_body(shipping_address=address)), 201)
    assert order["status"] == "confirmed"
    assert order["tax"] == "1.60"  # 4% of 40.00 (US-NY, found by name)

    # A region the table does not know, longer than a code: the country's rate.
    await add(client, v["variant_id"], 1, headers=user.headers)
    address = {**ADDRESS, "region": "Greater Sacramento Metropolitan Area"}
    order = ok(await checkout(client, user, checkout_body(shipping_address=address)), 201)
    assert order["tax"] == "0.00"
