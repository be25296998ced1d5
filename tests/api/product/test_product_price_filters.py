"""Price bounds are read in one currency (``?currency=``, else the shop's) and only
products priced in it match: amounts in different currencies are not comparable."""

from __future__ import annotations

from product_helpers import API, create, ok, variant


def names(items: list[dict]) -> list[str]:
    return sorted(p["name"] for p in items)


async def test_price_bounds_apply_in_one_currency(client, make_user):
    manager = await make_user("MANAGER")
    await create(
        client, manager, name="Yen Kettle", variants=[variant(price="3000", currency="JPY")]
    )
    await create(client, manager, name="Dollar Kettle", variants=[variant(price="40.00")])
    await create(
        client, manager, name="Euro Kettle", variants=[variant(price="45.00", currency="EUR")]
    )

    # No currency: the bounds are in the shop's (USD); a JPY 3000 product is neither
    # "at most 50" nor "at least 25", and EUR 45 is not USD 45.
    assert names(ok(await client.get(API, params={"max_price": "50"}))) == ["Dollar Kettle"]
    assert names(ok(await client.get(API, params={"min_price": "25"}))) == ["Dollar Kettle"]
    # In the currency asked for, with its own decimals.
    yen = {"currency": "JPY", "min_price": "2000", "max_price": "3000"}
    assert names(ok(await client.get(API, params=yen))) == ["Yen Kettle"]
    assert ok(await client.get(API, params={"currency": "JPY", "max_price": "50"})) == []
    euro = {"currency": "EUR", "min_price": "44.99"}
    assert names(ok(await client.get(API, params=euro))) == ["Euro Kettle"]
    # No bound: every currency is listed (unless one is asked for).
    assert len(ok(await client.get(API))) == 3
    assert names(ok(await client.get(API, params={"currency": "EUR"}))) == ["Euro Kettle"]


async def test_price_bounds_default_to_the_shops_currency(
    client, make_user, container, monkeypatch
):
    manager = await make_user("MANAGER")
    await create(
        client, manager, name="Yen Kettle", variants=[variant(price="3000", currency="JPY")]
    )
    await create(client, manager, name="Dollar Kettle", variants=[variant(price="40.00")])
    monkeypatch.setattr(container.settings.payments, "default_currency", "JPY")

    assert names(ok(await client.get(API, params={"min_price": "100"}))) == ["Yen Kettle"]
    assert ok(await client.get(API, params={"max_price": "100"})) == []
