from user_helpers import API, address, assert_error, new_id, ok

from ultramarket.services.user.client import UserClient

ADDRESSES = f"{API}/me/addresses"


def defaults(book):
    shipping = [a["id"] for a in book if a["is_default_shipping"]]
    billing = [a["id"] for a in book if a["is_default_billing"]]
    return shipping, billing


async def test_first_address_is_the_default_of_both_kinds(client, make_user):
    user = await make_user()
    assert ok(await client.get(ADDRESSES, headers=user.headers)) == []

    first = ok(await client.post(ADDRESSES, headers=user.headers, json=address()), 201)
    assert first["is_default_shipping"] is True
    assert first["is_default_billing"] is True
    assert first["user_id"] == user.id
    for field, value in address().items():
        assert first[field] == value

    second = ok(await client.post(ADDRESSES, headers=user.headers, json=address(city="Leeds")), 201)
    assert (second["is_default_shipping"], second["is_default_billing"]) == (False, False)
    book = ok(await client.get(ADDRESSES, headers=user.headers))
    assert [a["id"] for a in book] == [first["id"], second["id"]]


async def test_setting_a_default_clears_the_previous_one(client, make_user):
    user = await make_user()
    first = ok(await client.post(ADDRESSES, headers=user.headers, json=address()), 201)
    second = ok(
        await client.post(
            ADDRESSES,
            headers=user.headers,
            json=address(city="Paris", country="FR", is_default_shipping=True),
        ),
        201,
    )
    assert second["is_default_shipping"] is True
    book = ok(await client.get(ADDRESSES, headers=user.headers))
    assert defaults(book) == ([second["id"]], [first["id"]])

    # PUT with the billing flag moves billing; omitting shipping leaves it as it is.
    updated = ok(
        await client.put(
            f"{ADDRESSES}/{first['id']}",
            headers=user.headers,
            json=address(line1="1 New Street", is_default_billing=True),
        )
    )
    assert updated["line1"] == "1 New Street"
    assert (updated["is_default_shipping"], updated["is_default_billing"]) == (False, True)
    ok(
        await client.put(
            f"{ADDRESSES}/{second['id']}",
            headers=user.headers,
            json=address(city="Paris", country="FR", is_default_billing=True),
        )
    )
    book = ok(await client.get(ADDRESSES, headers=user.headers))
    assert defaults(book) == ([second["id"]], [second["id"]])

    ok(
        await client.put(
            f"{ADDRESSES}/{first['id']}",
            headers=user.headers,
            json=address(is_default_shipping=True),
        )
    )
    book = ok(await client.get(ADDRESSES, headers=user.headers))
    assert defaults(book) == ([first["id"]], [second["id"]])


async def test_deleting_a_default_promotes_the_newest_remaining(client, make_user):
    user = await make_user()
    first = ok(await client.post(ADDRESSES, headers=user.headers, json=address()), 201)
    second = ok(await client.post(ADDRESSES, headers=user.headers, json=address(city="York")), 201)
    third = ok(await client.post(ADDRESSES, headers=user.headers, json=address(city="Bath")), 201)

    remaining = ok(await client.delete(f"{ADDRESSES}/{first['id']}", headers=user.headers))
    assert [a["id"] for a in remaining] == [second["id"], third["id"]]
    assert defaults(remaining) == ([third["id"]], [third["id"]])

    remaining = ok(await client.delete(f"{ADDRESSES}/{second['id']}", headers=user.headers))
    assert defaults(remaining) == ([third["id"]], [third["id"]])
    assert_error(
        await client.delete(f"{ADDRESSES}/{second['id']}", headers=user.headers),
        404,
        "ADDRESS_NOT_FOUND",
    )


async def test_addresses_are_private(client, make_user):
    owner = await make_user()
    other = await make_user()
    mine = ok(await client.post(ADDRESSES, headers=owner.headers, json=address()), 201)

    assert ok(await client.get(ADDRESSES, headers=other.headers)) == []
    assert_error(
        await client.put(
            f"{ADDRESSES}/{mine['id']}", headers=other.headers, json=address(city="Stolen")
        ),
        404,
        "ADDRESS_NOT_FOUND",
    )
    assert_error(
        await client.delete(f"{ADDRESSES}/{mine['id']}", headers=other.headers),
        404,
        "ADDRESS_NOT_FOUND",
    )
    assert_error(
        await client.get(f"{API}/{owner.id}/addresses/default", headers=other.headers),
        403,
        "FORBIDDEN",
    )
    book = ok(await client.get(ADDRESSES, headers=owner.headers))
    assert [a["city"] for a in book] == ["London"]
    assert_error(
        await client.put(f"{ADDRESSES}/{new_id()}", headers=owner.headers, json=address()),
        404,
        "ADDRESS_NOT_FOUND",
    )


async def test_address_validation(client, make_user):
    user = await make_user()
    for bad in (
        {"country": "XX"},
        {"country": "GBR"},
        {"country": "1"},
        {"line1": ""},
        {"postal_code": "<script>"},
        {"phone": "nope"},
    ):
        error = assert_error(
            await client.post(ADDRESSES, headers=user.headers, json=address(**bad)),
            422,
            "VALIDATION_ERROR",
        )
        assert error["details"]
    body = address()
    del body["city"]
    assert_error(
        await client.post(ADDRESSES, headers=user.headers, json=body), 422, "VALIDATION_ERROR"
    )
    assert_error(
        await client.post(ADDRESSES, headers=user.headers, json=address(user_id=new_id())),
        422,
        "VALIDATION_ERROR",
    )
    created = ok(
        await client.post(ADDRESSES, headers=user.headers, json=address(country="de")), 201
    )
    assert created["country"] == "DE"


async def test_address_book_is_capped(client, make_user):
    user = await make_user()
    for i in range(20):
        ok(await client.post(ADDRESSES, headers=user.headers, json=address(line1=f"{i} Road")), 201)
    assert_error(
        await client.post(ADDRESSES, headers=user.headers, json=address()),
        409,
        "ADDRESS_LIMIT_REACHED",
    )
    assert len(ok(await client.get(ADDRESSES, headers=user.headers))) == 20


async def test_default_address_for_other_services(client, container, make_user):
    user = await make_user()
    users = container.client(UserClient, "order")
    assert await users.get_default_address(user.id, "shipping") is None

    first = ok(await client.post(ADDRESSES, headers=user.headers, json=address()), 201)
    second = ok(
        await client.post(
            ADDRESSES,
            headers=user.headers,
            json=address(city="Oslo", country="NO", is_default_billing=True),
        ),
        201,
    )
    shipping = await users.get_default_address(user.id, "shipping")
    billing = await users.get_default_address(user.id, "billing")
    assert str(shipping.id) == first["id"]
    assert str(billing.id) == second["id"]
    assert billing.country == "NO"

    own = ok(
        await client.get(
            f"{API}/{user.id}/addresses/default", params={"kind": "billing"}, headers=user.headers
        )
    )
    assert own["id"] == second["id"]
    assert_error(
        await client.get(
            f"{API}/{user.id}/addresses/default", params={"kind": "gift"}, headers=user.headers
        ),
        422,
        "VALIDATION_ERROR",
    )
