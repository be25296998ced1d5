"""Helpers shared by the product API tests (imported by module name; not a test file)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import func, select
from tests.support import assert_error, ok  # noqa: F401 - re-exported for the tests

from ultramarket.core.container import Container

API = "/api/v1/products"
CATEGORIES = "/api/v1/categories"


def variant(**overrides: Any) -> dict[str, Any]:
    body = {
        "sku": f"SKU-{uuid.uuid4().hex[:8]}",
        "options": {"size": "M"},
        "price": "19.99",
        "currency": "USD",
        "weight_grams": 250,
    }
    body.update(overrides)
    return body


def product(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Trail Runner Shoe",
        "description": "Light and grippy.",
        "brand": "Acme",
        "attributes": {"color": "red"},
        "status": "active",
        "featured": False,
        "seo_title": "Trail Runner",
        "seo_description": "A shoe",
        "images": [],
        "variants": [variant()],
    }
    body.update(overrides)
    return body


async def create(client: httpx.AsyncClient, user: Any, **overrides: Any) -> dict[str, Any]:
    return ok(await client.post(API, headers=user.headers, json=product(**overrides)), 201)  # type: ignore[no-any-return]


async def category(
    client: httpx.AsyncClient, user: Any, name: str, parent_id: str | None = None
) -> dict[str, Any]:
    body = {"name": name, "parent_id": parent_id}
    return ok(await client.post(CATEGORIES, headers=user.headers, json=body), 201)  # type: ignore[no-any-return]


async def outbox_types(container: Container) -> list[str]:
    outbox = container.events("product").outbox
    async with container.db("product").read_session() as session:
        rows = await session.scalars(select(outbox.c.event_type).order_by(outbox.c.occurred_at))
        return list(rows.all())


async def outbox_payloads(container: Container, event_type: str) -> list[dict[str, Any]]:
    outbox = container.events("product").outbox
    async with container.db("product").read_session() as session:
        rows = await session.scalars(
            select(outbox.c.payload).where(outbox.c.event_type == event_type)
        )
        return list(rows.all())


async def count(container: Container, table: str) -> int:
    from ultramarket.services.product.models import Base

    t = Base.metadata.tables[f"product.{table}"]
    async with container.db("product").read_session() as session:
        return int((await session.execute(select(func.count()).select_from(t))).scalar_one())
