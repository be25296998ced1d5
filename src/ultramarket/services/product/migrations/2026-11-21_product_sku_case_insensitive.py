"""product sku case-insensitive

SKUs are unique case-insensitively across products ("case-1" and "CASE-1" were two
SKUs on two products, one within a product): a unique index on ``lower(sku)`` takes
the place of the one on ``sku``, built online (``CREATE INDEX CONCURRENTLY`` on
PostgreSQL; a failed build's INVALID index is replaced on the next run).

Existing SKUs that differ only in case cannot be indexed: the upgrade stops before
building anything and lists them, for the shop to rename (a SKU is the merchant's
reference, also held by inventory and past orders: not ours to rewrite).

Revision ID: 6bdb86af0da7
Revises: 5d8034544eae
Create Date: 2026-11-21 20:10:00.000000
"""

from collections.abc import Sequence
from typing import cast

import sqlalchemy as sa
from alembic import op

from ultramarket.core.migrations import create_index_online, drop_index_online, schema

revision: str = "6bdb86af0da7"
down_revision: str | None = "5d8034544eae"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE = "product"
TABLE = "product_variant"


def upgrade() -> None:
    variant = sa.table(TABLE, sa.column("sku"), schema=schema(SERVICE))
    key = sa.func.lower(variant.c.sku)
    clashes = (
        op.get_bind()
        .execute(
            sa.select(sa.func.min(variant.c.sku), sa.func.max(variant.c.sku))
            .group_by(key)
            .having(sa.func.count() > 1)
            .order_by(key)
            .limit(20)
        )
        .all()
    )
    if clashes:
        listed = ", ".join(f"{low!r}/{high!r}" for low, high in clashes)
        raise RuntimeError(
            "product_variant has SKUs that differ only in case; rename one of each pair "
            f"and run the migration again: {listed}"
        )
    # An expression (the helper's annotation says column names; alembic takes both).
    lower_sku = cast(list[str], [sa.text("lower(sku)")])
    create_index_online(
        op.f("ix_product_variant_sku_lower"), TABLE, lower_sku, SERVICE, unique=True
    )
    drop_index_online(op.f("ix_product_variant_sku"), TABLE, SERVICE)


def downgrade() -> None:
    create_index_online(op.f("ix_product_variant_sku"), TABLE, ["sku"], SERVICE, unique=True)
    drop_index_online(op.f("ix_product_variant_sku_lower"), TABLE, SERVICE)
