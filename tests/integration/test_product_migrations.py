"""The product migrations on a database that already holds a catalogue: SKUs that differ
only in case stop the case-insensitive SKU index before anything is built (listed, for
the shop to rename); once they are gone it builds, replacing the exact-case index."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import Connection, insert, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from ultramarket import registry
from ultramarket.core.db import utcnow
from ultramarket.core.migrations import downgrade, upgrade
from ultramarket.services.product.models import Product, ProductVariant

PRODUCT = next(spec for spec in registry.load_all() if spec.name == "product")
BEFORE = "5d8034544eae"  # the revision before the lower(sku) index


async def run_sync(url: str, fn: Any) -> Any:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def prefix(conn: Connection) -> str:
    return "" if conn.dialect.name == "sqlite" else "product."


def add_variants(*skus: str) -> Any:
    """A product with variants of ``skus``, through the models' tables (their types)."""

    def run(conn: Connection) -> None:
        if conn.dialect.name == "sqlite":
            conn = conn.execution_options(schema_translate_map={"product": None})
        now = utcnow()
        product_id = uuid.uuid4()
        conn.execute(
            insert(Product.__table__).values(
                id=product_id, slug=f"p-{product_id.hex[:8]}", name="P", description="",
                status="active", featured=False, attributes={}, images=[], rating=0,
                review_count=0, sales_count=0, min_price_amount=100, currency="USD",
                in_stock=False, created_at=now, updated_at=now,
            )
        )  # fmt: skip
        conn.execute(
            insert(ProductVariant.__table__),
            [
                {
                    "id": uuid.uuid4(),
                    "product_id": product_id,
                    "sku": sku,
                    "options": {},
                    "price_amount": 100,
                    "currency": "USD",
                    "position": position,
                    "available": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for position, sku in enumerate(skus)
            ],
        )

    return run


def sku_indexes(conn: Connection) -> dict[str, bool]:
    schema = None if conn.dialect.name == "sqlite" else "product"
    found = {
        ix["name"]: bool(ix["unique"])
        for ix in inspect(conn).get_indexes("product_variant", schema)
    }
    # SQLite does not reflect an index on an expression: ask it directly.
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'product_variant'"
        )
        found.update({name: found.get(name, True) for (name,) in rows if name.startswith("ix_")})
    return {name: unique for name, unique in found.items() if "sku" in name}


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection")
async def test_case_clashing_skus_stop_the_sku_index_until_renamed(empty_database: str) -> None:
    upgrade(PRODUCT, empty_database, BEFORE)
    await run_sync(empty_database, add_variants("case-1", "OTHER-1"))
    await run_sync(empty_database, add_variants("CASE-1"))

    with pytest.raises(RuntimeError, match="'CASE-1'/'case-1'"):
        upgrade(PRODUCT, empty_database)
    assert await run_sync(empty_database, sku_indexes) == {"ix_product_variant_sku": True}

    def rename(conn: Connection) -> None:
        conn.execute(
            text(f"UPDATE {prefix(conn)}product_variant SET sku = 'CASE-2' WHERE sku = 'CASE-1'")
        )

    await run_sync(empty_database, rename)
    upgrade(PRODUCT, empty_database)
    assert await run_sync(empty_database, sku_indexes) == {"ix_product_variant_sku_lower": True}
    with pytest.raises(Exception, match=r"(?i)unique"):
        await run_sync(empty_database, add_variants("other-1"))

    downgrade(PRODUCT, empty_database, BEFORE)
    assert await run_sync(empty_database, sku_indexes) == {"ix_product_variant_sku": True}
    downgrade(PRODUCT, empty_database)
