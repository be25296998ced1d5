from product_helpers import API, category, count, ok, outbox_types

from ultramarket.services.product.demo import seed_catalog
from ultramarket.services.product.importer import import_products

HEADER = "handle,name,brand,category,status,sku,price,compare_at_price,currency,options\n"


async def test_a_bad_row_imports_nothing_and_is_reported(tmp_path, container):
    path = tmp_path / "products.csv"
    path.write_text(
        HEADER
        + "tee,Tee,Acme,,active,TEE-S,10.00,,USD,size=S\n"
        + "tee,Tee,Acme,,active,TEE-M,-3,,USD,size=M\n"
        + "cap,Cap,Acme,nowhere,active,CAP-1,5.00,,USD,\n"
    )
    report = await import_products(container, path)
    assert not report.ok
    assert [(e.line, e.field) for e in report.errors] == [
        (3, "variants.1"),
        (4, "category"),
    ]
    assert await count(container, "product") == 0
    assert await outbox_types(container) == []


async def test_a_good_file_imports_everything(tmp_path, client, container, make_user):
    manager = await make_user("MANAGER")
    await category(client, manager, "Shirts")
    csv_path = tmp_path / "products.csv"
    csv_path.write_text(
        HEADER
        + "tee,Tee,Acme,shirts,active,TEE-S,10.00,12.00,USD,size=S\n"
        + "tee,Tee,Acme,shirts,active,TEE-M,11.00,,USD,size=M\n"
        + "cap,Cap,Acme,,active,CAP-1,5.00,,USD,\n"
    )
    report = await import_products(container, csv_path)
    assert report.ok, report.errors
    assert (report.rows, report.created) == (3, 2)
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text(
        '{"name": "Mug", "status": "active", "category": "shirts",'
        ' "variants": [{"sku": "MUG-1", "price": "7.50", "currency": "USD"}]}\n'
    )
    assert (await import_products(container, jsonl)).created == 1
    assert await count(container, "product") == 3
    assert await count(container, "product_variant") == 4
    listed = ok(await client.get(API, params={"category": "shirts", "sort": "price"}))
    assert [p["name"] for p in listed] == ["Mug", "Tee"]
    assert (await outbox_types(container)).count("product.created.v1") == 3


async def test_demo_catalog_is_deterministic(container, client):
    ids = await seed_catalog(container, count=40)
    assert len(ids) == 40
    tree = ok(await client.get("/api/v1/categories"))
    assert len(tree) == 8
    assert all(c["children"] for c in tree)
    body = (await client.get(API, params={"limit": 5})).json()
    assert body["meta"]["total"] > 30
