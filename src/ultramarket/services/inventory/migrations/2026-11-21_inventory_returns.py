"""inventory reservation returns (restock of sold units)

Revision ID: 9ce40bbba5aa
Revises: 70b6faa073db
Create Date: 2026-11-21 07:36:20.987877
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import ultramarket.core.db
from ultramarket.core.migrations import qualified, schema

revision: str = "9ce40bbba5aa"
down_revision: str | None = "70b6faa073db"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE = "inventory"


def upgrade() -> None:
    SCHEMA = schema(SERVICE)
    op.create_table(
        "reservation_return",
        sa.Column("reservation_id", sa.Uuid(), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column(
            "lines",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("created_at", ultramarket.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            [qualified("inventory", "reservation.id")],
            name=op.f("fk_reservation_return_reservation_id_reservation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservation_return")),
        sa.UniqueConstraint(
            "reservation_id",
            "reference",
            name=op.f("uq_reservation_return_reservation_id_reference"),
        ),
        schema=SCHEMA,
    )
    # Batch: SQLite cannot add a CHECK constraint to a table in place (it rebuilds the
    # table); PostgreSQL gets plain ALTER TABLE statements.
    with op.batch_alter_table("reservation_line", schema=SCHEMA) as batch:
        batch.add_column(sa.Column("returned", sa.Integer(), server_default="0", nullable=False))
        batch.create_check_constraint(
            op.f("ck_reservation_line_returned_not_negative"), "returned >= 0"
        )
        batch.create_check_constraint(
            op.f("ck_reservation_line_returned_within_quantity"), "returned <= quantity"
        )


def downgrade() -> None:
    SCHEMA = schema(SERVICE)
    with op.batch_alter_table("reservation_line", schema=SCHEMA) as batch:
        batch.drop_constraint(op.f("ck_reservation_line_returned_within_quantity"), type_="check")
        batch.drop_constraint(op.f("ck_reservation_line_returned_not_negative"), type_="check")
        batch.drop_column("returned")
    op.drop_table("reservation_return", schema=SCHEMA)
