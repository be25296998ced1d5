"""Bulk-load a benchmark catalogue into a migrated UltraMarket PostgreSQL database.

    .venv/bin/python bench/catalog.py postgresql://postgres@127.0.0.1:5432/um_bench \
        [--products 100000] [--variants 3]

Writes straight into ``product.category``, ``product.product``,
``product.product_variant`` and ``inventory.stock_item`` with asyncpg COPY (the API or
the ORM would take many minutes for 100,000 products), filling every NOT NULL column
and the denormalised columns the listing reads (the product's cheapest
``min_price_amount``/``currency``/``in_stock``, the variants' ``available`` mirror, the
category ``path``/``depth``), then ANALYZE. Deterministic for a given ``--seed``.

The category tree: ``ROOTS`` roots x ``MIDS`` mid-level x ``LEAVES`` leaves; products are
spread evenly over the leaves, so a mid-level category (``cat-r0-m0``) holds
``products / (ROOTS * MIDS)`` products over ``LEAVES + 1`` category ids (itself and its
leaves) and a leaf (``cat-r0-m0-l0``) ``products / (ROOTS * MIDS * LEAVES)``.

Every product is ``active`` with slug ``bench-product-<n>`` and variants with SKU
``BENCH-<n>-<v>``; each variant has one stock item in the default warehouse.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

ROOTS, MIDS, LEAVES = 5, 5, 8
DEFAULT_WAREHOUSE_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")  # from the migration
BRANDS = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell")
COLOURS = ("red", "green", "blue")


def product_slug(n: int) -> str:
    return f"bench-product-{n}"


def mid_slug(r: int, m: int) -> str:
    return f"cat-r{r}-m{m}"


def leaf_slug(r: int, m: int, leaf: int) -> str:
    return f"cat-r{r}-m{m}-l{leaf}"


@dataclass
class Catalog:
    products: int = 0
    variants: int = 0
    categories: int = 0
    seconds: float = 0.0
    # For the load scripts: every stock item id (in product order) and the slugs.
    item_ids: list[uuid.UUID] = field(default_factory=list)
    mid_category: str = mid_slug(0, 0)
    mid_category_products: int = 0
    leaf_category: str = leaf_slug(0, 0, 0)
    leaf_category_products: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "products": self.products,
            "variants": self.variants,
            "stock_items": len(self.item_ids),
            "categories": self.categories,
            "seconds": round(self.seconds, 1),
            "mid_category": self.mid_category,
            "mid_category_products": self.mid_category_products,
            "leaf_category": self.leaf_category,
            "leaf_category_products": self.leaf_category_products,
        }


async def load_catalog(
    dsn: str, products: int = 100_000, variants: int = 3, seed: int = 1
) -> Catalog:
    started = time.monotonic()
    rnd = random.Random(seed)
    now = datetime.now(UTC)
    cat = Catalog()

    categories: list[tuple[Any, ...]] = []
    leaves: list[uuid.UUID] = []
    for r in range(ROOTS):
        rid = uuid.uuid4()
        rpath = f"/{rid}/"
        categories.append((rid, f"Root {r}", f"cat-r{r}", None, None, rpath, 0, r, now, now))
        for m in range(MIDS):
            mid = uuid.uuid4()
            mpath = f"{rpath}{mid}/"
            categories.append(
                (mid, f"Mid {r}.{m}", mid_slug(r, m), None, rid, mpath, 1, m, now, now)
            )
            for leaf in range(LEAVES):
                lid = uuid.uuid4()
                categories.append(
                    (lid, f"Leaf {r}.{m}.{leaf}", leaf_slug(r, m, leaf), None, mid,
                     f"{mpath}{lid}/", 2, leaf, now, now)
                )  # fmt: skip
                leaves.append(lid)
    cat.categories = len(categories)

    product_rows: list[tuple[Any, ...]] = []
    variant_rows: list[tuple[Any, ...]] = []
    item_rows: list[tuple[Any, ...]] = []
    per_leaf: dict[uuid.UUID, int] = {}
    empty_list = "[]"
    for n in range(products):
        pid = uuid.uuid4()
        leaf_id = leaves[n % len(leaves)]
        per_leaf[leaf_id] = per_leaf.get(leaf_id, 0) + 1
        created = now - timedelta(seconds=n)
        prices = [rnd.randrange(100, 500_000) for _ in range(variants)]
        stock = [rnd.randrange(0, 100) for _ in range(variants)]
        cheapest = min(range(variants), key=lambda i: prices[i])
        for v in range(variants):
            vid = uuid.uuid4()
            sku = f"BENCH-{n}-{v}"
            options = json.dumps({"colour": COLOURS[v % len(COLOURS)]})
            compare_at = prices[v] + 1000 if v == 0 else None
            variant_rows.append(
                (vid, pid, sku, options, prices[v], compare_at, "USD", 250, None, v,
                 stock[v], created, created)
            )  # fmt: skip
            iid = uuid.uuid4()
            item_rows.append(
                (iid, vid, sku, DEFAULT_WAREHOUSE_ID, stock[v], 0, 5, created, created)
            )
            cat.item_ids.append(iid)
        attributes = json.dumps({"colour": COLOURS[n % len(COLOURS)], "material": "cotton"})
        product_rows.append(
            (pid, product_slug(n), f"Bench product {n}", f"Description of bench product {n}.",
             BRANDS[n % len(BRANDS)], leaf_id, None, "active", n % 50 == 0, attributes,
             empty_list, None, None, round(rnd.uniform(0, 5), 2), rnd.randrange(0, 500),
             rnd.randrange(0, 10_000), prices[cheapest], "USD", any(s > 0 for s in stock),
             created, created)
        )  # fmt: skip
    cat.products, cat.variants = len(product_rows), len(variant_rows)
    cat.leaf_category_products = per_leaf[leaves[0]]
    cat.mid_category_products = sum(per_leaf[lid] for lid in leaves[:LEAVES])

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "category", schema_name="product", records=categories,
                columns=["id", "name", "slug", "description", "parent_id", "path", "depth",
                         "position", "created_at", "updated_at"],
            )  # fmt: skip
            await conn.copy_records_to_table(
                "product", schema_name="product", records=product_rows,
                columns=["id", "slug", "name", "description", "brand", "category_id",
                         "vendor_id", "status", "featured", "attributes", "images", "seo_title",
                         "seo_description", "rating", "review_count", "sales_count",
                         "min_price_amount", "currency", "in_stock", "created_at",
                         "updated_at"],
            )  # fmt: skip
            await conn.copy_records_to_table(
                "product_variant", schema_name="product", records=variant_rows,
                columns=["id", "product_id", "sku", "options", "price_amount",
                         "compare_at_amount", "currency", "weight_grams", "barcode", "position",
                         "available", "created_at", "updated_at"],
            )  # fmt: skip
            await conn.copy_records_to_table(
                "stock_item", schema_name="inventory", records=item_rows,
                columns=["id", "variant_id", "sku", "warehouse_id", "on_hand", "reserved",
                         "low_stock_threshold", "created_at", "updated_at"],
            )  # fmt: skip
        for table in ("product.category", "product.product", "product.product_variant",
                      "inventory.stock_item"):  # fmt: skip
            await conn.execute(f"VACUUM ANALYZE {table}")
    finally:
        await conn.close()
    cat.seconds = time.monotonic() - started
    return cat


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dsn", help="plain postgresql:// DSN of a migrated database")
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--variants", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    cat = asyncio.run(load_catalog(args.dsn, args.products, args.variants, args.seed))
    print(json.dumps(cat.summary(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
