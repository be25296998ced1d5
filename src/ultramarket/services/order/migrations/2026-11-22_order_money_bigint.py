"""order money columns 64-bit

A product's price is a BIGINT; the order's copies of money were 32-bit INTEGERs, so a
checkout past 21,474,836.47 (a UZS price of 25,000,000.00 is 2.5e9 minor units) was a
500 on PostgreSQL. An order's amounts, its lines' amounts and a refund's amount become
BIGINT. (SQLite's INTEGER is 64-bit already; batch mode rebuilds the tables there so
the declared types match the models.)

Revision ID: 73522559b49d
Revises: c9936f2dc8ab
Create Date: 2026-11-22 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from ultramarket.core.migrations import retype_columns

revision: str = "73522559b49d"
down_revision: str | None = "c9936f2dc8ab"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE = "order"

# (table, column, nullable)
COLUMNS = (
    ("orders", "subtotal_amount", False),
    ("orders", "discount_amount", False),
    ("orders", "shipping_amount", False),
    ("orders", "tax_amount", False),
    ("orders", "total_amount", False),
    ("orders", "paid_amount", False),
    ("orders", "refunded_amount", False),
    ("order_item", "unit_price_amount", False),
    ("order_item", "subtotal_amount", False),
    ("order_item", "discount_amount", False),
    ("order_item", "tax_amount", False),
    ("order_item", "total_amount", False),
    ("order_refund", "amount", False),
)


def upgrade() -> None:
    retype_columns(SERVICE, COLUMNS, sa.Integer, sa.BigInteger)


def downgrade() -> None:
    # Fails on PostgreSQL while a stored amount does not fit 32 bits (nothing is cut).
    retype_columns(SERVICE, COLUMNS, sa.BigInteger, sa.Integer)
