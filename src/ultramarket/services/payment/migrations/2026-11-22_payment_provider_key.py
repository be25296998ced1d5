"""payment provider key

The idempotency key a payment's provider calls are made with, kept on the payment:
derived from the client's Idempotency-Key (not the payment's id), so a retry after a
crash that rolled the payment back asks the provider with the first try's key. Older
rows keep NULL (their key derives from the payment id, as it did).

Revision ID: d7a0ab2b939b
Revises: 5d0c1a9e7b42
Create Date: 2026-11-22 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ultramarket.core.migrations import schema

revision: str = "d7a0ab2b939b"
down_revision: str | None = "5d0c1a9e7b42"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE = "payment"


def upgrade() -> None:
    op.add_column(
        "payment",
        sa.Column("provider_key", sa.String(length=64), nullable=True),
        schema=schema(SERVICE),
    )


def downgrade() -> None:
    op.drop_column("payment", "provider_key", schema=schema(SERVICE))
