"""payment in flight

A payment is written (``processing``, its key claimed) and committed before its
provider is asked; ``in_flight_until`` says until when the request asking holds it: a
retry with the same Idempotency-Key waits for that request's answer meanwhile, and the
sweeper leaves the payment alone. NULL when no request is asking (older rows too).

Revision ID: 9c4e2f71a6d3
Revises: 3f6b0e2c9d17
Create Date: 2026-11-22 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ultramarket.core.db import UTCDateTime
from ultramarket.core.migrations import schema

revision: str = "9c4e2f71a6d3"
down_revision: str | None = "3f6b0e2c9d17"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE = "payment"


def upgrade() -> None:
    op.add_column(
        "payment",
        sa.Column("in_flight_until", UTCDateTime(timezone=True), nullable=True),
        schema=schema(SERVICE),
    )


def downgrade() -> None:
    op.drop_column("payment", "in_flight_until", schema=schema(SERVICE))
