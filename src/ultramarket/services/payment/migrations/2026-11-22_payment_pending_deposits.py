"""payment pending deposits

A wallet deposit whose card charge went unanswered is kept ``processing`` with what
asking the provider again takes (the provider, its token and key, the reference it
answered, the client's Idempotency-Key), for the retry, the sweeper (found by status
and age) and the provider's webhook to settle. Existing attempts are all settled.

Revision ID: e46a438cfbc0
Revises: d7a0ab2b939b
Create Date: 2026-11-22 02:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ultramarket.core.migrations import schema

revision: str = "e46a438cfbc0"
down_revision: str | None = "d7a0ab2b939b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE = "payment"
TABLE = "deposit_attempt"
COLUMNS = (
    ("provider", 16),
    ("provider_ref", 200),
    ("provider_token", 200),
    ("provider_key", 64),
    ("idempotency_key", 200),
)


def upgrade() -> None:
    SCHEMA = schema(SERVICE)
    for name, length in COLUMNS:
        op.add_column(
            TABLE, sa.Column(name, sa.String(length=length), nullable=True), schema=SCHEMA
        )
    op.create_index(
        op.f(f"ix_{TABLE}_status_created_at"),
        TABLE,
        ["status", "created_at"],
        unique=False,
        schema=SCHEMA,
    )


def downgrade() -> None:
    SCHEMA = schema(SERVICE)
    op.drop_index(op.f(f"ix_{TABLE}_status_created_at"), table_name=TABLE, schema=SCHEMA)
    for name, _ in reversed(COLUMNS):
        op.drop_column(TABLE, name, schema=SCHEMA)
