"""order outbox claim index

The relay claims the oldest unpublished events: a partial index on ``occurred_at`` over
the unpublished rows only serves that in order and stays as small as the backlog
(the old ``(published_at, available_at)`` index had the relay sort every due row).

Revision ID: e1d1efa49a2a
Revises: 331d0c8a5dc0
Create Date: 2026-11-21 16:00:00.000000
"""

from collections.abc import Sequence

from ultramarket.core.migrations import index_outbox_by_age, index_outbox_by_state

revision: str = "e1d1efa49a2a"
down_revision: str | None = "331d0c8a5dc0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE = "order"


def upgrade() -> None:
    index_outbox_by_age(SERVICE)


def downgrade() -> None:
    index_outbox_by_state(SERVICE)
