"""payment resume fields

Revision ID: 04276d2134c2
Revises: 7eb2c6df5c0a
Create Date: 2026-11-21 09:26:23.688881
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ultramarket.core.migrations import schema

revision: str = "04276d2134c2"
down_revision: str | None = "7eb2c6df5c0a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE = "payment"


def upgrade() -> None:
    SCHEMA = schema(SERVICE)
    op.add_column(
        "payment", sa.Column("provider_token", sa.String(length=200), nullable=True), schema=SCHEMA
    )
    op.add_column(
        "payment",
        sa.Column("capture", sa.Boolean(), server_default=sa.true(), nullable=False),
        schema=SCHEMA,
    )
    op.add_column(
        "payment", sa.Column("idempotency_key", sa.String(length=200), nullable=True), schema=SCHEMA
    )


def downgrade() -> None:
    SCHEMA = schema(SERVICE)
    op.drop_column("payment", "idempotency_key", schema=SCHEMA)
    op.drop_column("payment", "capture", schema=SCHEMA)
    op.drop_column("payment", "provider_token", schema=SCHEMA)
