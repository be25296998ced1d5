"""inventory one open alert per item and kind

Every write that leaves an item at or under its threshold (or at 0) makes sure its
alert is open, idempotently: ``INSERT ... ON CONFLICT DO NOTHING`` against a partial
unique index on ``(item_id, kind)`` over the open alerts, which also holds when two
writes race (the one-statement reservation on PostgreSQL reads no alert first).

Before the index, the alerts are put in line with the items: of several open alerts
of one kind on one item the oldest stays open; an open alert its item no longer
matches (opened late from stale figures) is resolved; and an item that is low or out
of stock with no open alert (created at 0, which opened none) gets one. No events
are written for these: they describe no change of stock.

Revision ID: b7e2c4a91d3f
Revises: 4ebb2dfdcacb
Create Date: 2026-11-21 21:00:00.000000
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from ultramarket.core.db import UTCDateTime
from ultramarket.core.migrations import schema

revision: str = "b7e2c4a91d3f"
down_revision: str | None = "4ebb2dfdcacb"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE = "inventory"
OPEN = sa.text("resolved_at IS NULL")


def upgrade() -> None:
    SCHEMA = schema(SERVICE)
    now = datetime.now(UTC)
    alert = sa.table(
        "stock_alert",
        sa.column("id", sa.Uuid()),
        sa.column("item_id", sa.Uuid()),
        sa.column("variant_id", sa.Uuid()),
        sa.column("sku", sa.String()),
        sa.column("warehouse_id", sa.Uuid()),
        sa.column("kind", sa.String()),
        sa.column("available", sa.Integer()),
        sa.column("threshold", sa.Integer()),
        sa.column("created_at", UTCDateTime()),
        sa.column("resolved_at", UTCDateTime()),
        schema=SCHEMA,
    )
    item = sa.table(
        "stock_item",
        sa.column("id", sa.Uuid()),
        sa.column("variant_id", sa.Uuid()),
        sa.column("sku", sa.String()),
        sa.column("warehouse_id", sa.Uuid()),
        sa.column("on_hand", sa.Integer()),
        sa.column("reserved", sa.Integer()),
        sa.column("low_stock_threshold", sa.Integer()),
        schema=SCHEMA,
    )
    bind = op.get_bind()
    available = item.c.on_hand - item.c.reserved
    level = {"low_stock": item.c.low_stock_threshold, "out_of_stock": sa.literal(0)}

    # Duplicates: the oldest open alert of a kind stays open.
    older = alert.alias("older")
    bind.execute(
        alert.update()
        .where(
            alert.c.resolved_at.is_(None),
            sa.exists().where(
                older.c.item_id == alert.c.item_id,
                older.c.kind == alert.c.kind,
                older.c.resolved_at.is_(None),
                sa.or_(
                    older.c.created_at < alert.c.created_at,
                    sa.and_(older.c.created_at == alert.c.created_at, older.c.id < alert.c.id),
                ),
            ),
        )
        .values(resolved_at=now)
    )
    for kind, threshold in level.items():
        # Stale: the item is no longer low (or out of stock).
        bind.execute(
            alert.update()
            .where(
                alert.c.resolved_at.is_(None),
                alert.c.kind == kind,
                sa.exists().where(item.c.id == alert.c.item_id, available > threshold),
            )
            .values(resolved_at=now)
        )
        # Missing: the item is low (or out of stock) with no open alert of the kind.
        missing = bind.execute(
            sa.select(
                item.c.id,
                item.c.variant_id,
                item.c.sku,
                item.c.warehouse_id,
                available.label("available"),
                item.c.low_stock_threshold,
            ).where(
                available <= threshold,
                ~sa.exists().where(
                    alert.c.item_id == item.c.id,
                    alert.c.kind == kind,
                    alert.c.resolved_at.is_(None),
                ),
            )
        ).all()
        if missing:
            bind.execute(
                alert.insert(),
                [
                    {
                        "id": uuid.uuid4(),
                        "item_id": row.id,
                        "variant_id": row.variant_id,
                        "sku": row.sku,
                        "warehouse_id": row.warehouse_id,
                        "kind": kind,
                        "available": row.available,
                        "threshold": row.low_stock_threshold,
                        "created_at": now,
                        "resolved_at": None,
                    }
                    for row in missing
                ],
            )
    op.create_index(
        op.f("ix_stock_alert_item_id_kind"),
        "stock_alert",
        ["item_id", "kind"],
        unique=True,
        schema=SCHEMA,
        postgresql_where=OPEN,
        sqlite_where=OPEN,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_stock_alert_item_id_kind"), table_name="stock_alert", schema=schema(SERVICE)
    )
