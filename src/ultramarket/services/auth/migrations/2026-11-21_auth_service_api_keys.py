"""auth service api keys

An API key is no longer a platform service by being an API key: only a key created as
a service key (split mode's ``ULTRAMARKET_SERVICE_API_KEY``) buys service tokens. Keys
that exist already stay what their scopes say; recreate a service's key with
``"service": true``.

Revision ID: 0e88e6a991d2
Revises: 0d179159733b
Create Date: 2026-11-21 20:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ultramarket.core.migrations import schema

revision: str = "0e88e6a991d2"
down_revision: str | None = "0d179159733b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE = "auth"


def upgrade() -> None:
    SCHEMA = schema(SERVICE)
    op.add_column(
        "api_key",
        sa.Column("service", sa.Boolean(), server_default=sa.false(), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    SCHEMA = schema(SERVICE)
    op.drop_column("api_key", "service", schema=SCHEMA)
