"""product stock event order

The stock mirror keeps, per variant, when the stock event its figure came from
occurred (``product_variant.stock_event_at``), and applies only newer events: a retried
older event, or a batch that commits after a newer one, no longer brings back a stale
figure. Nullable, no default: adding it rewrites nothing; a variant's first event sets it.

Revision ID: 5d8034544eae
Revises: 8439fc02003c
Create Date: 2026-11-21 20:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ultramarket.core.db
from ultramarket.core.migrations import schema

revision: str = "5d8034544eae"
down_revision: str | None = "8439fc02003c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE = "product"


def upgrade() -> None:
    op.add_column(
        "product_variant",
        sa.Column("stock_event_at", ultramarket.core.db.UTCDateTime(timezone=True), nullable=True),
        schema=schema(SERVICE),
    )


def downgrade() -> None:
    op.drop_column("product_variant", "stock_event_at", schema=schema(SERVICE))
