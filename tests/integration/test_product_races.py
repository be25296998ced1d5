"""Concurrent catalogue writes (real concurrency: requests gathered on one database).

A delay injected after a read widens the window between a check and its write, so the
requests overlap every time; the locks and retries under test are the real ones. On
SQLite writers queue on the database lock, so these races are PostgreSQL's."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from tests.support import assert_error, ok

from ultramarket.core.container import Container
from ultramarket.core.db import utcnow
from ultramarket.core.events import BatchContext, EventEnvelope
from ultramarket.services.inventory.events import StockChanged
from ultramarket.services.product.handlers import on_stock_events
from ultramarket.services.product.models import Product, ProductVariant
from ultramarket.services.product.service import CategoryService, ProductService

API = "/api/v1/products"
CATEGORIES = "/api/v1/categories"


def variant(price: str) -> dict[str, Any]:
    return {"sku": f"SKU-{uuid.uuid4().hex[:8]}", "price": price, "currency": "USD"}


def slowed(monkeypatch: pytest.MonkeyPatch, cls: type, name: str, seconds: float) -> None:
    """``cls.name`` answers as before, ``seconds`` later (the caller's transaction open)."""
    real = getattr(cls, name)

    async def slow(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = await real(self, *args, **kwargs)
        await asyncio.sleep(seconds)
        return result

    monkeypatch.setattr(cls, name, slow)


async def stored(container: Container, product_id: str) -> tuple[Product, list[ProductVariant]]:
    async with container.db("product").read_session() as session:
        product = await session.get_one(Product, uuid.UUID(product_id))
        variants = await ProductService(session).variants(product.id)
        return product, variants


async def test_overlapping_variant_edits_keep_the_product_price(
    client: httpx.AsyncClient, container: Container, make_user: Any, monkeypatch: Any
) -> None:
    manager = await make_user("MANAGER")
    body = {"name": "Kettle", "status": "active", "variants": [variant("10.00"), variant("20.00")]}
    created = ok(await client.post(API, headers=manager.headers, json=body), 201)
    v1, v2 = ({"id": v["id"], "sku": v["sku"]} for v in created["variants"])
    slowed(monkeypatch, ProductService, "variants", 0.4)

    # Each edit changes one variant's price and repeats the other's as it read it.
    first = {"variants": [{**v1, "price": "30.00"}, {**v2, "price": "20.00"}]}
    second = {"variants": [{**v1, "price": "10.00"}, {**v2, "price": "40.00"}]}
    responses = await asyncio.gather(
        client.patch(f"{API}/{created['id']}", headers=manager.headers, json=first),
        client.patch(f"{API}/{created['id']}", headers=manager.headers, json=second),
    )
    monkeypatch.undo()

    assert [r.status_code for r in responses] == [200, 200]
    product, variants = await stored(container, created["id"])
    # Whichever edit came last, the product shows its variants' cheapest price.
    assert product.min_price_amount == min(v.price_amount for v in variants)
    assert {v.price_amount for v in variants} in ({3000, 2000}, {1000, 4000})


async def test_an_edit_racing_a_stock_event_keeps_in_stock(
    client: httpx.AsyncClient, container: Container, make_user: Any, monkeypatch: Any
) -> None:
    manager = await make_user("MANAGER")
    body = {"name": "Kettle", "status": "active", "variants": [variant("10.00"), variant("20.00")]}
    created = ok(await client.post(API, headers=manager.headers, json=body), 201)
    a, b = (uuid.UUID(v["id"]) for v in created["variants"])
    t0 = utcnow()

    async def stock(variant_id: uuid.UUID, available: int, seconds: int) -> None:
        event = StockChanged(
            item_id=uuid.uuid4(), variant_id=variant_id, sku="X", warehouse_id=uuid.uuid4(),
            on_hand=available, reserved=0, available=available, variant_available=available,
            reason="test",
        )  # fmt: skip
        envelope = EventEnvelope(
            id=uuid.uuid4(), type=event.type, source="inventory",
            occurred_at=t0 + timedelta(seconds=seconds), data=event.model_dump(mode="json"),
        )  # fmt: skip
        async with container.db("product").session() as session:
            await on_stock_events(BatchContext([envelope], session, container))

    await stock(a, 5, 1)  # in stock through a; b has none
    slowed(monkeypatch, ProductService, "variants", 0.5)

    async def b_restocked_meanwhile() -> None:
        await asyncio.sleep(0.15)  # the edit has read the variants (a 5, b 0)
        await stock(b, 7, 2)

    # The edit drops a: by what it read, the product is out of stock.
    only_b = {"variants": [{"id": str(b), "sku": created["variants"][1]["sku"], "price": "20.00"}]}
    edit = client.patch(f"{API}/{created['id']}", headers=manager.headers, json=only_b)
    response, _ = await asyncio.gather(edit, b_restocked_meanwhile())
    monkeypatch.undo()

    assert response.status_code == 200, response.text
    product, variants = await stored(container, created["id"])
    assert [(v.id, v.available) for v in variants] == [(b, 7)]
    assert product.in_stock is True  # b sells


async def test_concurrent_creates_of_one_name_get_their_own_slugs(
    client: httpx.AsyncClient, container: Container, make_user: Any, monkeypatch: Any
) -> None:
    manager = await make_user("MANAGER")
    slowed(monkeypatch, ProductService, "_slug_free", 0.3)

    def body(**extra: Any) -> dict[str, Any]:
        return {"name": "Same Name", "variants": [variant("1.00")], **extra}

    responses = await asyncio.gather(
        *(client.post(API, headers=manager.headers, json=body()) for _ in range(3))
    )
    # The client chose no slug: each gets a free one, none a 409.
    slugs = sorted(ok(r, 201)["slug"] for r in responses)
    assert slugs == ["same-name", "same-name-2", "same-name-3"]

    # A slug the client chose stays theirs to choose: the loser is told.
    responses = await asyncio.gather(
        *(client.post(API, headers=manager.headers, json=body(slug="chosen")) for _ in range(2))
    )
    assert sorted(r.status_code for r in responses) == [201, 409]
    assert_error(next(r for r in responses if r.status_code == 409), 409, "SLUG_TAKEN")


async def test_concurrent_categories_of_one_name_get_their_own_slugs(
    client: httpx.AsyncClient, container: Container, make_user: Any, monkeypatch: Any
) -> None:
    manager = await make_user("MANAGER")
    slowed(monkeypatch, CategoryService, "_unique_slug", 0.3)

    responses = await asyncio.gather(
        *(
            client.post(CATEGORIES, headers=manager.headers, json={"name": "Shoes"})
            for _ in range(2)
        )
    )
    assert sorted(ok(r, 201)["slug"] for r in responses) == ["shoes", "shoes-2"]

    chosen = {"name": "Boots", "slug": "boots"}
    responses = await asyncio.gather(
        *(client.post(CATEGORIES, headers=manager.headers, json=chosen) for _ in range(2))
    )
    assert sorted(r.status_code for r in responses) == [201, 409]
    assert_error(next(r for r in responses if r.status_code == 409), 409, "SLUG_TAKEN")

    # Two renames to one slug: one wins, the other is a 409 (not a 500).
    hats = ok(await client.post(CATEGORIES, headers=manager.headers, json={"name": "Hats"}), 201)
    caps = ok(await client.post(CATEGORIES, headers=manager.headers, json={"name": "Caps"}), 201)
    responses = await asyncio.gather(
        *(
            client.patch(
                f"{CATEGORIES}/{c['id']}", headers=manager.headers, json={"slug": "headwear"}
            )
            for c in (hats, caps)
        )
    )
    assert sorted(r.status_code for r in responses) == [200, 409]
    assert_error(next(r for r in responses if r.status_code == 409), 409, "SLUG_TAKEN")
