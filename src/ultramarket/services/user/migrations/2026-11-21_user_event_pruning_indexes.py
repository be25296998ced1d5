"""user event pruning indexes

Pruning deletes published outbox rows and processed inbox rows older than the retention:
indexes on ``published_at`` (published rows only) and ``processed_at`` let it find them
without reading the whole tables.

Revision ID: 314c311fc8a5
Revises: 8a534a2046d8
Create Date: 2026-11-21 18:30:00.000000
"""

from collections.abc import Sequence

from ultramarket.core.migrations import drop_event_pruning_indexes, index_events_for_pruning

revision: str = "314c311fc8a5"
down_revision: str | None = "8a534a2046d8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE = "user"


def upgrade() -> None:
    index_events_for_pruning(SERVICE)


def downgrade() -> None:
    drop_event_pruning_indexes(SERVICE)
