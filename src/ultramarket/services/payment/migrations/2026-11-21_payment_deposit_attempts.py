"""payment deposit attempts

Card charges into a wallet, with their outcome, for the fraud rules to count beside
payments.

Revision ID: 5d0c1a9e7b42
Revises: b76fbab766fd
Create Date: 2026-11-21 21:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ultramarket.core.db
from ultramarket.core.migrations import schema

revision: str = "5d0c1a9e7b42"
down_revision: str | None = "b76fbab766fd"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE = "payment"
TABLE = "deposit_attempt"


def upgrade() -> None:
    SCHEMA = schema(SERVICE)
    op.create_table(
        TABLE,
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("created_at", ultramarket.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{TABLE}")),
        schema=SCHEMA,
    )
    for columns in (["user_id", "created_at"], ["fingerprint"], ["ip", "created_at"]):
        op.create_index(
            op.f(f"ix_{TABLE}_{'_'.join(columns)}"), TABLE, columns, unique=False, schema=SCHEMA
        )


def downgrade() -> None:
    op.drop_table(TABLE, schema=schema(SERVICE))
