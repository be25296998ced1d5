import uuid

from product_helpers import API, CATEGORIES, assert_error, category, create, ok, variant

from ultramarket.core.db import utcnow
from ultramarket.core.events import BatchContext, EventEnvelope
from ultramarket.services.inventory.events import BackInStock, OutOfStock, StockChanged
from ultramarket.services.product.handlers import on_stock_events


async def seed(client, manager):
    shoes = await category(client, manager, "Shoes")
    trail = await category(client, manager, "Trail", shoes["id"])
    hats = await category(client, manager, "Hats")
    a = await create(
        client,
        manager,
        name="Alpha Runner",
        brand="Acme",
        category_id=trail["id"],
        featured=True,
        attributes={"color": "red"},
        variants=[variant(price="50.00"), variant(price="70.00")],
    )
    b = await create(
        client,
        manager,
        name="Beta Walker",
        brand="Zeta",
        category_id=shoes["id"],
        attributes={"color": "blue"},
        variants=[variant(price="30.00")],
    )
    c = await create(
        client,
        manager,
        name="Cap Classic",
        brand="Acme",
        category_id=hats["id"],
        attributes={},
        variants=[variant(price="10.00", compare_at_price="20.00")],
    )
    return {"shoes": shoes, "trail": trail, "hats": hats, "a": a, "b": b, "c": c}


def names(items):
    return [p["name"] for p in items]


async def test_filters_and_sorts(client, make_user):
    manager = await make_user("MANAGER")
    s = await seed(client, manager)

    response = await client.get(API, params={"sort": "price", "limit": 2})
    body = response.json()
    assert names(body["data"]) == ["Cap Classic", "Beta Walker"]
    assert body["meta"] == {"page": 1, "limit": 2, "total": 3, "pages": 2}
    page2 = (await client.get(API, params={"sort": "price", "limit": 2, "page": 2})).json()
    assert names(page2["data"]) == ["Alpha Runner"]

    assert names(ok(await client.get(API, params={"sort": "-price"}))) == [
        "Alpha Runner",
        "Beta Walker",
        "Cap Classic",
    ]
    assert names(ok(await client.get(API, params={"sort": "name"})))[0] == "Alpha Runner"
    assert names(ok(await client.get(API)))[0] == "Cap Classic"  # newest first
    # Category by slug or id includes its descendants.
    assert sorted(names(ok(await client.get(API, params={"category": "shoes"})))) == [
        "Alpha Runner",
        "Beta Walker",
    ]
    assert names(ok(await client.get(API, params={"category": s["trail"]["id"]}))) == [
        "Alpha Runner"
    ]
    assert sorted(names(ok(await client.get(API, params={"brand": "Acme"})))) == [
        "Alpha Runner",
        "Cap Classic",
    ]
    between = ok(await client.get(API, params={"min_price": "20", "max_price": "40"}))
    assert names(between) == ["Beta Walker"]
    assert names(ok(await client.get(API, params={"featured": "true"}))) == ["Alpha Runner"]
    assert names(ok(await client.get(API, params={"q": "walk"}))) == ["Beta Walker"]
    assert names(ok(await client.get(API, params={"attr.color": "red"}))) == ["Alpha Runner"]
    assert ok(await client.get(API, params={"min_rating": 4})) == []
    assert_error(await client.get(API, params={"sort": "bogus"}), 422, "VALIDATION_ERROR")
    assert_error(await client.get(API, params={"category": "nope"}), 404, "CATEGORY_NOT_FOUND")

    in_category = (
        await client.get(f"{CATEGORIES}/shoes/products", params={"sort": "price"})
    ).json()
    assert names(in_category["data"]) == ["Beta Walker", "Alpha Runner"]
    assert in_category["meta"]["total"] == 2

    featured = ok(await client.get(f"{API}/featured"))
    assert names(featured) == ["Alpha Runner"]
    assert names(ok(await client.get(f"{API}/new-arrivals")))[0] == "Cap Classic"
    cap = ok(await client.get(f"{API}/{s['c']['id']}"))
    assert cap["variants"][0]["discount_percent"] == 50


async def test_best_sellers_follow_recorded_sales(client, make_user, container):
    from ultramarket.services.product.service import ProductService

    manager = await make_user("MANAGER")
    s = await seed(client, manager)
    async with container.db("product").session() as session:
        changed = await ProductService(session).record_sales(
            {
                uuid.UUID(s["b"]["variants"][0]["id"]): 5,
                uuid.UUID(s["a"]["variants"][0]["id"]): 2,
                uuid.UUID(s["a"]["variants"][1]["id"]): 1,
            }
        )
    assert changed == 2
    await container.cache.invalidate_prefix("product")
    best = ok(await client.get(f"{API}/best-sellers"))
    assert names(best) == ["Beta Walker", "Alpha Runner", "Cap Classic"]
    assert [p["sales_count"] for p in best] == [5, 3, 0]


async def stock_event(container, kind, variant_id, available):
    event = kind(
        item_id=uuid.uuid4(),
        variant_id=variant_id,
        sku="X",
        warehouse_id=uuid.uuid4(),
        on_hand=available,
        reserved=0,
        available=available,
        variant_available=available,
        **({"reason": "restock"} if kind is StockChanged else {}),
    )
    envelope = EventEnvelope(
        id=uuid.uuid4(),
        type=kind.type,
        source="inventory",
        occurred_at=utcnow(),
        data=event.model_dump(mode="json"),
    )
    async with container.db("product").session() as session:
        await on_stock_events(BatchContext([envelope], session, container))


async def test_inventory_events_update_availability_and_in_stock(client, make_user, container):
    manager = await make_user("MANAGER")
    s = await seed(client, manager)
    variant_id = s["a"]["variants"][1]["id"]
    assert ok(await client.get(API, params={"in_stock": "true"})) == []
    before = ok(await client.get(f"{API}/{s['a']['id']}"))  # now cached
    assert before["in_stock"] is False

    await stock_event(container, StockChanged, uuid.UUID(variant_id), 7)
    after = ok(await client.get(f"{API}/{s['a']['id']}"))
    assert after["in_stock"] is True
    assert [v["available"] for v in after["variants"]] == [0, 7]
    assert names(ok(await client.get(API, params={"in_stock": "true"}))) == ["Alpha Runner"]
    assert len(ok(await client.get(API, params={"in_stock": "false"}))) == 2

    await stock_event(container, OutOfStock, uuid.UUID(variant_id), 0)
    assert ok(await client.get(API, params={"in_stock": "true"})) == []
    await stock_event(container, BackInStock, uuid.UUID(variant_id), 3)
    assert ok(await client.get(f"{API}/{s['a']['id']}"))["variants"][1]["available"] == 3


async def test_availability_endpoint(client, make_user):
    manager = await make_user("MANAGER")
    s = await seed(client, manager)
    data = ok(await client.get(f"{API}/{s['a']['slug']}/availability"))
    assert data["product_id"] == s["a"]["id"]
    assert data["source"] in {"inventory", "mirror"}
    assert [v["variant_id"] for v in data["variants"]] == [v["id"] for v in s["a"]["variants"]]
    assert all(v["available"] >= 0 for v in data["variants"])
    assert_error(await client.get(f"{API}/nope/availability"), 404, "PRODUCT_NOT_FOUND")


async def test_variant_lookup_for_services(client, make_user, container):
    from ultramarket.services.product.client import ProductClient

    manager = await make_user("MANAGER")
    customer = await make_user()
    s = await seed(client, manager)
    ids = [v["id"] for v in s["a"]["variants"]]
    body = {"variant_ids": [*ids, str(uuid.uuid4())]}
    found = ok(await client.post(f"{API}/variants/lookup", headers=manager.headers, json=body))
    assert sorted(v["id"] for v in found) == sorted(ids)
    assert {v["price_amount"] for v in found} == {5000, 7000}
    assert found[0]["name"] == "Alpha Runner"
    assert found[0]["status"] == "active"
    response = await client.post(f"{API}/variants/lookup", headers=customer.headers, json=body)
    assert_error(response, 403, "FORBIDDEN")

    variants = await container.client(ProductClient, "cart").get_variants([uuid.UUID(ids[0])])
    assert [v.sku for v in variants] == [s["a"]["variants"][0]["sku"]]
