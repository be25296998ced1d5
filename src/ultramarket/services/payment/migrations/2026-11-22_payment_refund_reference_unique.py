"""payment refund reference unique

A refund the provider made is recorded once: a unique index on ``(payment_id,
provider_ref)`` (references left NULL are all distinct), built online (``CREATE INDEX
CONCURRENTLY`` on PostgreSQL; a failed build's INVALID index is replaced on the next
run). The service answers a retried refund the provider replays with the refund
recorded already; the index is what holds should anything else try.

Refunds recorded twice already cannot be indexed: the upgrade stops before building
anything and lists them. Which record to keep, and what to do about the payment's and
the order's refunded totals that counted both, is for staff to decide (the money
moved once at the provider): not ours to rewrite.

Revision ID: 8a8864f8ce3e
Revises: e46a438cfbc0
Create Date: 2026-11-22 03:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ultramarket.core.migrations import create_index_online, drop_index_online, schema

revision: str = "8a8864f8ce3e"
down_revision: str | None = "e46a438cfbc0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE = "payment"
TABLE = "payment_refund"
INDEX = "ix_payment_refund_payment_id_provider_ref"


def upgrade() -> None:
    refund = sa.table(
        TABLE, sa.column("payment_id"), sa.column("provider_ref"), schema=schema(SERVICE)
    )
    twice = (
        op.get_bind()
        .execute(
            sa.select(refund.c.payment_id, refund.c.provider_ref)
            .where(refund.c.provider_ref.is_not(None))
            .group_by(refund.c.payment_id, refund.c.provider_ref)
            .having(sa.func.count() > 1)
            .order_by(refund.c.payment_id, refund.c.provider_ref)
            .limit(20)
        )
        .all()
    )
    if twice:
        listed = ", ".join(f"payment {payment} refund {ref!r}" for payment, ref in twice)
        raise RuntimeError(
            "payment_refund records one provider refund more than once; settle each (keep "
            f"one record, correct the refunded totals) and run the migration again: {listed}"
        )
    create_index_online(op.f(INDEX), TABLE, ["payment_id", "provider_ref"], SERVICE, unique=True)


def downgrade() -> None:
    drop_index_online(op.f(INDEX), TABLE, SERVICE)
