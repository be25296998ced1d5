"""deposit in flight

A wallet deposit's attempt is written (``processing``, its key claimed) and committed
before its card is charged; ``in_flight_until`` says until when the request asking
holds it, as for payments: a retry with the same Idempotency-Key waits for that
request's answer meanwhile, and the sweeper leaves the attempt alone. NULL when no
request is asking (older rows too).

Revision ID: 5d8a3b61f0c4
Revises: 9c4e2f71a6d3
Create Date: 2026-11-22 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ultramarket.core.db import UTCDateTime
from ultramarket.core.migrations import schema

revision: str = "5d8a3b61f0c4"
down_revision: str | None = "9c4e2f71a6d3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE = "payment"


def upgrade() -> None:
    op.add_column(
        "deposit_attempt",
        sa.Column("in_flight_until", UTCDateTime(timezone=True), nullable=True),
        schema=schema(SERVICE),
    )


def downgrade() -> None:
    op.drop_column("deposit_attempt", "in_flight_until", schema=schema(SERVICE))
