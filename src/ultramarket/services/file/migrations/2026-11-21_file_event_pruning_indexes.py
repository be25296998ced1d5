"""file event pruning indexes

Pruning deletes published outbox rows and processed inbox rows older than the retention:
indexes on ``published_at`` (published rows only) and ``processed_at`` let it find them
without reading the whole tables.

Revision ID: 0c369648c34b
Revises: d34598bc8003
Create Date: 2026-11-21 18:30:00.000000
"""

from collections.abc import Sequence

from ultramarket.core.migrations import drop_event_pruning_indexes, index_events_for_pruning

revision: str = "0c369648c34b"
down_revision: str | None = "d34598bc8003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE = "file"


def upgrade() -> None:
    index_events_for_pruning(SERVICE)


def downgrade() -> None:
    drop_event_pruning_indexes(SERVICE)
